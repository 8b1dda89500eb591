"""Live feed under load: WebSocket clients each watching one device while the platform ingests.

    python bench/live_feed.py                      # defaults below, about 3 minutes
    python bench/live_feed.py --clients 200 --seconds 20 --rate-points 50000

One `qiantang serve` process (fresh temp dir, loopback, rate limit raised; see
`bench/ingest_server.py`) with an enterprise of --devices devices x --props properties.
MQTT load comes from the lean publisher processes of `bench/ingest_mqtt.py` (one Alink
connection per device, QoS 1, window 8); property p0 of every message carries its send time
(ms). A separate process holds the WebSocket clients (`websockets` asyncio client, no
compression), each subscribed with ``{"token", "scope": "device", "id"}`` to one of the first
--clients devices; for every telemetry frame it records ``receive time - p0``: publish ->
received by the WebSocket client, through broker, validation, bus and feed.

Phases, all in the same run and on the same server (so ratios compare; the machine is shared):

1. ``max, no clients``  - publishers as fast as their windows allow: points/s accepted (PUBACK)
2. ``max, N clients``   - the same with the WebSocket clients connected
3. ``half, N clients``  - --rate-points (default 50,000 = half the telemetry issue's 100,000
   MQTT figure): p50 / p99 / max publish -> WebSocket, frames received
4. ``half, 1 client``   - the same rate with one client: the latency without the fan-out

Server CPU comes from psutil. Everything connects to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest import Workers, pct, split, sum_results, wait_for_quiet
from ingest_mqtt import CTX, PubSpec, publisher_main
from ingest_server import (
    Fleet,
    ForeignCpu,
    Profiler,
    Sampler,
    ServerHandle,
    register_fleet,
    start_server,
)

READY_TIMEOUT_S = 120.0


@dataclass
class WsSpec:
    """What the WebSocket worker connects to and for how long at most."""

    url: str
    token: str
    device_ids: list[int]
    max_s: float


@dataclass
class WsResult:
    """What the WebSocket clients received in one phase."""

    connected: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    frames: int = 0
    lag_frames: int = 0
    closed: list[str] = field(default_factory=list)


async def _client(spec: WsSpec, device_id: int, sink: WsResult, started: Any) -> None:
    from websockets.asyncio.client import connect

    async with connect(spec.url, compression=None, open_timeout=30, max_size=2**22) as ws:
        await ws.send(json.dumps({"token": spec.token, "scope": "device", "id": device_id}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "subscribed", ack
        sink.connected += 1
        if not started.done():
            started.set_result(None)
        async for raw in ws:
            now = time.time() * 1000.0
            frame = json.loads(raw)
            if frame["type"] == "telemetry":
                sink.frames += 1
                p0 = frame["values"].get("p0")
                if isinstance(p0, (int, float)):
                    sink.latencies_ms.append(now - p0)
            elif frame["type"] == "lag":
                sink.lag_frames += 1


async def _ws_worker(spec: WsSpec, ready: Any, go: Any, out: Any) -> None:
    sink = WsResult()
    loop = asyncio.get_running_loop()
    tasks = []
    for device_id in spec.device_ids:
        started = loop.create_future()
        tasks.append(asyncio.create_task(_client(spec, device_id, sink, started)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(started), 30)
    ready.put(("ready", sink.connected))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not go.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    sink.latencies_ms.clear()
    sink.frames = sink.lag_frames = 0
    stop_at = time.monotonic() + spec.max_s
    while go.is_set() and time.monotonic() < stop_at:  # the bench clears `go` to stop us
        await asyncio.sleep(0.05)
    for task in tasks:
        if task.done() and task.exception() is not None:
            sink.closed.append(repr(task.exception())[:200])
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.put(sink)


def ws_main(spec: WsSpec, ready: Any, go: Any, out: Any) -> None:
    """Worker process: connect the WebSocket clients, record from `go` until it is cleared."""
    asyncio.run(_ws_worker(spec, ready, go, out))


class WsClients:
    """The WebSocket worker process."""

    def __init__(self, spec: WsSpec) -> None:
        self.ready: Any = CTX.Queue()
        self.out: Any = CTX.Queue()
        self.go = CTX.Event()
        self.proc = CTX.Process(target=ws_main, args=(spec, self.ready, self.go, self.out))
        self.proc.start()
        self.connected = int(self.ready.get(timeout=READY_TIMEOUT_S)[1])

    def start(self) -> None:
        self.go.set()

    def finish(self) -> WsResult:
        self.go.clear()
        try:
            result: WsResult = self.out.get(timeout=60)
        except queue.Empty:
            result = WsResult(closed=["no result from the WebSocket worker"])
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
        return result


def _publishers(
    args: argparse.Namespace, server: ServerHandle, fleet: Fleet, rate: float
) -> Workers:
    parts = split(fleet.devices, args.publishers)
    specs = [
        PubSpec(
            port=server.mqtt_port,
            product_key=fleet.product_key,
            devices=[(d[1], d[2]) for d in part],
            props=args.props,
            window=8,
            rate=rate * len(part) / len(fleet.devices) if rate else 0.0,
            seconds=args.seconds,
        )
        for part in parts
    ]
    return Workers(publisher_main, specs)


def label_file(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label)


def run_phase(
    args: argparse.Namespace,
    server: ServerHandle,
    fleet: Fleet,
    label: str,
    rate_msgs: float,
    clients: int,
) -> dict[str, Any]:
    """One phase: publishers (paced at `rate_msgs` or as fast as possible) and `clients`."""
    if args.quiet_wait:
        wait_for_quiet(args.quiet_wait)
    ws = None
    if clients:
        ids = [d[0] for d in fleet.devices[:clients]]
        ws = WsClients(
            WsSpec(
                server.api.replace("http", "ws", 1) + "/live", fleet.token, ids, args.seconds + 60
            )
        )
    workers = _publishers(args, server, fleet, rate_msgs)
    infos = workers.start()
    connected = sum(i[1] for i in infos)
    others = ForeignCpu()
    with Sampler(server) as sampler:
        others.start()
        if ws is not None:
            ws.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        workers.go.set()
        if args.profile:  # py-spy the server through the middle of the phase
            time.sleep(2.0)
            name = label_file(label)
            prof = Profiler(server, args.profile, name, max(1.0, args.seconds - 4.0))
            prof.start()
            print(f"  profile: {prof.wait()}")
        results = workers.results(args.seconds + 120)
        t1 = time.monotonic()
        foreign, top = others.stop()
        time.sleep(1.0)  # the last frames
        got = ws.finish() if ws is not None else WsResult()
    workers.kill()
    total = sum_results(results)
    duration = max(total.end_wall - total.start_wall, 1e-9)
    cpu_s = sampler.cpu_share(t0, t1) * (t1 - t0)  # server CPU seconds while publishing
    row = {
        "phase": label,
        "devices connected": connected,
        "ws clients": ws.connected if ws is not None else 0,
        "points/s accepted (PUBACK)": total.acked * args.props / duration,
        "msgs behind (paced)": total.behind,
        "server CPU (cores)": sampler.cpu_share(t0, t1),
        "server CPU us/point": 1e6 * cpu_s / max(total.acked * args.props, 1),
        "server RSS peak MiB": sampler.peak_rss() / 2**20,
        "other processes (cores)": foreign,
        "top other process": top,
        "machine busy %": sampler.machine_busy(time.time() - (t1 - t0) - 1.2, time.time()),
        "frames received": got.frames,
        "lag frames": got.lag_frames,
        "p50 publish->ws ms": pct(got.latencies_ms, 0.5) if got.latencies_ms else None,
        "p99 publish->ws ms": pct(got.latencies_ms, 0.99) if got.latencies_ms else None,
        "max publish->ws ms": max(got.latencies_ms, default=None),
        "errors": (total.errors + got.closed)[:3],
    }
    print("  " + json.dumps(row, ensure_ascii=False, default=str))
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1_000)
    p.add_argument("--props", type=int, default=50)
    p.add_argument("--clients", type=int, default=200, help="WebSocket clients, one device each")
    p.add_argument("--seconds", type=float, default=20.0, help="each phase publishes this long")
    p.add_argument("--rate-points", type=float, default=50_000, help="half-load points/s")
    p.add_argument("--publishers", type=int, default=2, help="MQTT publisher processes")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the two max phases")
    p.add_argument("--json-out", type=Path, help="write the rows here")
    p.add_argument("--profile", type=Path, help="py-spy the server in each phase into DIR")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each phase wait at most this "
        "long (s) for other processes to use < 20%% of a core",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import qiantang

    print(f"qiantang from {Path(qiantang.__file__).parent}")
    server = start_server()
    try:
        fleet = register_fleet(server, "live", args.devices, args.props)
        print(f"  registered {len(fleet.devices)} devices in {fleet.register_s:.1f} s")
        half = args.rate_points / args.props
        rows = []
        for r in range(1, args.rounds + 1):  # alternate, so drift on the shared machine shows
            rows.append(run_phase(args, server, fleet, f"max, no clients #{r}", 0.0, 0))
            label = f"max, {args.clients} clients #{r}"
            rows.append(run_phase(args, server, fleet, label, 0.0, args.clients))
        label = f"half, {args.clients} clients"
        rows.append(run_phase(args, server, fleet, label, half, args.clients))
        rows.append(run_phase(args, server, fleet, "half, 1 client", half, 1))
    finally:
        server.cleanup()
    for r in range(args.rounds):
        without, with_ = (rows[2 * r + i] for i in (0, 1))
        ratio = with_["points/s accepted (PUBACK)"] / without["points/s accepted (PUBACK)"]
        cost = with_["server CPU us/point"] / without["server CPU us/point"]
        print(f"round {r + 1}: ingest with/without clients {ratio:.1%}, CPU per point {cost:.1%}")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
