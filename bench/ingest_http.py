"""HTTP ingest load for `bench/ingest.py`: worker processes posting bulk JSON
(``POST /ingest/bulk``) or InfluxDB line protocol (``POST /ingest/line?precision=ms``), and
the latency poller that reads samples back through the REST API.

Bodies are built by byte concatenation from per-device templates, so a worker spends its
time on HTTP, not on JSON encoding. Everything talks to 127.0.0.1 only, bounded in count
and time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["HttpResult", "HttpSpec", "PollSpec", "http_worker_main", "poller_main"]

REQUEST_TIMEOUT_S = 120.0
GO_TIMEOUT_S = 300.0


@dataclass
class HttpSpec:
    """One worker's share: `entries` (device, ts) readings of `props` properties each."""

    api: str  # http://127.0.0.1:port/api/v1
    token: str
    product_key: str
    devices: list[str]  # device names this worker writes for
    props: int
    entries_per_device: int
    entries_per_request: int
    fmt: str  # "json" or "line"
    t0_ms: int  # first timestamp; device k's i-th reading is at t0 + i * step_ms
    step_ms: int = 10
    only_prop: str | None = None  # downsample: post only this property


@dataclass
class HttpResult:
    requests: int = 0
    points_sent: int = 0
    accepted: int = 0
    rejected: int = 0
    start_wall: float = 0.0
    end_wall: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _fields(props: int, variant: int) -> list[tuple[str, str]]:
    return [(f"p{i}", f"{20 + (i + variant) % 60}.{(i * 7 + variant) % 10}") for i in range(props)]


def _bodies(spec: HttpSpec) -> Any:
    """Yield (body, content type, points) for every request of this worker, oldest first."""
    props = [(spec.only_prop, "0")] if spec.only_prop else None
    variants = [props or _fields(spec.props, v) for v in range(16)]
    json_props = [
        ("{" + ",".join(f'"{k}":{v}' for k, v in fields) + "}").encode() for fields in variants
    ]
    line_fields = [",".join(f"{k}={v}" for k, v in fields).encode() for fields in variants]
    per_entry = len(variants[0])
    pk = spec.product_key.encode()
    names = [d.encode() for d in spec.devices]
    batch: list[bytes] = []
    total = spec.entries_per_device * len(names)
    n = 0
    for i in range(spec.entries_per_device):
        ts = spec.t0_ms + i * spec.step_ms
        for j, name in enumerate(names):
            v = (i + j) & 15
            if spec.fmt == "json":
                batch.append(
                    b'{"product_key":"%s","device_name":"%s","ts":%d,"properties":%s}'
                    % (pk, name, ts, json_props[v])
                )
            else:
                batch.append(b"%s,device=%s %s %d" % (pk, name, line_fields[v], ts))
            n += 1
            if len(batch) >= spec.entries_per_request or n == total:
                if spec.fmt == "json":
                    yield b"[" + b",".join(batch) + b"]", "application/json", len(batch) * per_entry
                else:
                    yield b"\n".join(batch) + b"\n", "text/plain", len(batch) * per_entry
                batch = []


def http_worker_main(spec: HttpSpec, ready: Any, go: Any, out: Any) -> None:
    """Worker process: wait for `go`, post every body in turn, report."""
    result = HttpResult()
    path = "/ingest/bulk" if spec.fmt == "json" else "/ingest/line?precision=ms"
    bodies = list(_bodies(spec))  # built before the clock starts
    headers = {"Authorization": f"Bearer {spec.token}"}
    with httpx.Client(base_url=spec.api, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        client.get("/me").raise_for_status()  # connection warm
        ready.put(("ready", len(bodies)))
        if not go.wait(GO_TIMEOUT_S):
            result.errors.append("no start signal")
            out.put(result)
            return
        result.start_wall = time.time()
        for body, ctype, points in bodies:
            begin = time.perf_counter()
            try:
                r = client.post(path, content=body, headers={"Content-Type": ctype})
            except httpx.HTTPError as err:
                result.errors.append(repr(err))
                break
            result.latencies_ms.append((time.perf_counter() - begin) * 1e3)
            result.requests += 1
            result.points_sent += points
            if r.status_code != 200:
                if len(result.errors) < 5:
                    result.errors.append(f"{r.status_code}: {r.text[:300]}")
                continue
            answer = r.json()
            result.accepted += int(answer["accepted"])
            result.rejected += int(answer["rejected"])
        result.end_wall = time.time()
    out.put(result)


# --------------------------------------------------------------------------- latency poller


@dataclass
class PollSpec:
    """Poll `device_ids`' property p0 (whose value is the publisher's send time in ms) for
    new points, round robin, at most `rate` requests/s, until `stop` is set or `seconds`."""

    api: str
    token: str
    device_ids: list[int]
    rate: float
    seconds: float
    since_ms: int


def poller_main(spec: PollSpec, ready: Any, stop: Any, out: Any) -> None:
    """Worker process: each new p0 sample became queryable after the previous poll of its
    device started (lower bound) and before this poll's answer arrived (upper bound); its
    latency bounds are those instants minus its value, the send time."""
    latencies: list[float] = []
    lower: list[float] = []
    polls = 0
    errors: list[str] = []
    last = dict.fromkeys(spec.device_ids, spec.since_ms - 1)
    previous = dict.fromkeys(spec.device_ids, 0.0)  # wall ms when its last poll began
    headers = {"Authorization": f"Bearer {spec.token}"}
    poll_ms: list[float] = []
    with httpx.Client(base_url=spec.api, headers=headers, timeout=30) as client:
        client.get("/me").raise_for_status()
        ready.put(("ready", 0))
        deadline = time.monotonic() + spec.seconds
        period = 1.0 / spec.rate
        next_at = time.monotonic()
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            device = spec.device_ids[i % len(spec.device_ids)]
            i += 1
            begin = time.perf_counter()
            begin_wall = time.time() * 1000
            try:
                r = client.get(
                    f"/devices/{device}/telemetry",
                    params={"property": "p0", "start_ms": last[device] + 1, "limit": 1000},
                )
                seen = time.time() * 1000
                r.raise_for_status()
            except httpx.HTTPError as err:
                if len(errors) < 5:
                    errors.append(repr(err))
                time.sleep(period)
                continue
            poll_ms.append((time.perf_counter() - begin) * 1e3)
            polls += 1
            for p in r.json()["points"]:
                sent = float(p["value"])
                latencies.append(seen - sent)
                lower.append(max(0.0, previous[device] - sent))
                last[device] = max(last[device], int(p["ts"]))
            previous[device] = begin_wall
            next_at += period
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.monotonic()
    out.put((latencies, lower, polls, poll_ms, errors))
