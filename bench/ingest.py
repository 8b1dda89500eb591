"""Ingest benchmark of the embedded platform: HTTP bulk, MQTT sustained / single-property
(against a bare amqtt relay measured in the same run), publish->queryable latency,
downsampled reads and 10,000 idle device connections.

    python bench/ingest.py --all                       # every scenario, ~8-10 min
    python bench/ingest.py http-bulk mqtt-single        # some of them
    python bench/ingest.py mqtt-sustained --devices 1000 --props 50 --seconds 60
    python bench/ingest.py latency --profile /tmp/prof  # py-spy the server meanwhile

Each scenario starts its own ``qiantang serve`` (fresh temp data dir, loopback ports, the
per-device rate limit raised) unless ``--target http://127.0.0.1:PORT --mqtt-port P
--api-key OPERATOR_KEY [--server-pid PID]`` names a running one. Devices are registered
through the REST API; MQTT load comes from several worker processes, each holding hundreds
or thousands of real MQTT connections (one per device, Alink-signed CONNECT, QoS 1 with a
bounded in-flight window per connection; see ``bench/ingest_mqtt.py``).

"Stored" always means queryable through the API: points are counted with
``GET /platforms/{base}/indicators`` (``own.points_today``, a count over the store), samples
are read back with ``GET /devices/{id}/telemetry``, buckets with ``.../telemetry/buckets``;
after a scenario the server is stopped and its DuckDB file counted as a cross-check.

Scenarios and what they print (targets: a 2-core machine, embedded mode):

- ``http-bulk``: ``POST /ingest/bulk`` (JSON) then ``POST /ingest/line`` (line protocol),
  --http-workers processes, --bulk-batch points per request; points/s accepted (HTTP 200)
  and stored. Target >= 250,000 points/s stored.
- ``mqtt-sustained``: --devices devices x --props properties per message, paced at
  --rate-points points/s for --seconds; points/s and messages/s accepted (PUBACKed) and
  stored, how far storing lags behind publishing, the backlog's drain time. PASS on the
  steady stored rate (least-squares slope of the stored count from 5 s to the end).
  Target >= 100,000 points/s for 60 s (1,000 devices x 50 properties).
- ``mqtt-single``: one property per message, --single-messages messages sent as fast as
  the publishers' windows allow, first through a bare amqtt broker relaying to one plain
  subscriber, then into the platform: same publisher code, devices and client ids. Both
  rates are end to end: messages / (last delivered to the subscriber, or last stored and
  queryable - start). Target >= 50 % of the relay's messages/s.
- ``latency``: half the sustained load; one probe device (among the --devices) posts
  --probe-rate messages/s, and a poller reads it back with ``GET /devices/{id}/telemetry``
  --poll-rate times a second. Every message's p0 is its send time (ms), so each sample's
  latency lies between (the previous poll's start - p0) and (the poll that saw it - p0):
  p50/p99 of both bounds; PASS on the upper one. Target p99 <= 1 s.
- ``downsample``: 86,400 1 Hz points of one device over the last 24 h (plus a background
  fleet at 1/min) via HTTP bulk, then the buckets query (max_points=1000) timed --runs times
  through the API. Target <= 1,000 buckets in <= 50 ms (p99).
- ``connections``: --connections devices registered, connected (Alink-signed) from
  --conn-procs processes and held idle; server RSS, before and with them all connected, and
  the server's own count of online devices. Target <= 1 GiB.

Every scenario also prints the server's CPU and peak RSS, the publishers' CPU, how busy the
whole machine was, and what other processes used (a shared machine: ``--quiet-wait S``
waits up to S seconds for them to go quiet before each scenario). ``--profile DIR`` runs
py-spy on the server during each scenario and prints where the time went (see
``bench/ingest_profile.py``); ``--server-gc-stats`` / ``--server-gc-threshold`` run the
server under a launcher that logs the cyclic GC's cost or changes its thresholds (an
experiment hook: src/ is untouched). To bench another source tree (a snapshot of a commit),
set PYTHONPATH to its ``src``: the server and every worker inherit it.

Every loop is bounded in count and time; everything stays on 127.0.0.1; the open-file soft
limit is raised to the hard limit in every bench process and in the server it starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from ingest_http import HttpResult, HttpSpec, PollSpec, http_worker_main, poller_main
from ingest_mqtt import CTX, PubResult, PubSpec, publisher_main, relay_broker_main, subscriber_main
from ingest_profile import cpu_by_thread_name, thread_cpu
from ingest_profile import load as load_profile
from ingest_server import (
    Fleet,
    ForeignCpu,
    Profiler,
    Sampler,
    ServerHandle,
    free_port,
    machine_load,
    now_ms,
    raise_nofile,
    register_fleet,
    start_server,
    stored_points,
    target_server,
)

SINGLE_MAX_S = 180.0  # mqtt-single: publishing stops after this long whatever the count
SCENARIOS = ("http-bulk", "mqtt-sustained", "mqtt-single", "latency", "downsample", "connections")
DAY_MS = 86_400_000
MIB = 1024 * 1024


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    scenario: str
    metric: str
    value: float | None
    unit: str = ""
    target: str = ""
    ok: bool | None = None  # None: informational

    def status(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")

    def shown(self) -> str:
        v = self.value
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        if abs(v) >= 100 or v == int(v):
            return f"{v:,.0f}"
        return f"{v:,.2f}"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loads: dict[str, str] = field(default_factory=dict)

    def add(self, *rows: Row) -> None:
        for row in rows:
            self.rows.append(row)
            print(
                f"  {row.metric:<52} {row.shown():>12} {row.unit:<9} "
                f"{row.target:<14} {row.status()}",
                flush=True,
            )

    def table(self) -> str:
        head = f"| scenario | metric | value | unit | target | result |\n|{'---|' * 6}"
        lines = [head]
        for r in self.rows:
            lines.append(
                f"| {r.scenario} | {r.metric} | {r.shown()} | {r.unit} | {r.target} | "
                f"{r.status()} |"
            )
        return "\n".join(lines)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`; NaN if there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --------------------------------------------------------------------------- plumbing


@contextlib.contextmanager
def server_for(args: argparse.Namespace, report: Report, scenario: str) -> Iterator[ServerHandle]:
    """A fresh server for one scenario (or the targeted one); afterwards, the points in its
    DuckDB file, counted once it has stopped."""
    if args.target:
        yield target_server(args.target, args.mqtt_port, args.api_key, args.server_pid)
        return
    server = start_server(gc_threshold=args.server_gc_threshold, gc_stats=args.server_gc_stats)
    print(f"  server pid {server.pid} on {server.url}, MQTT {server.mqtt_port}", flush=True)
    try:
        yield server
    finally:
        server.stop()
        report.loads[scenario] = machine_load()
        db = server.data_dir / "telemetry.duckdb" if server.data_dir else None
        if db is not None and db.exists() and args.count_file:
            try:
                import duckdb

                with duckdb.connect(str(db), read_only=True) as conn:
                    row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
                count = int(row[0]) if row else 0
                report.add(Row(scenario, "points in the DuckDB file after stop", count, "points"))
            except Exception as err:  # a cross-check only
                print(f"  (could not count the DuckDB file: {err})")
        if args.verbose:
            print(server.tail_log(20))
        if args.server_gc_stats and server.log_path and server.log_path.exists():
            stats = [
                ln
                for ln in server.log_path.read_text(errors="replace").splitlines()
                if ln.startswith(("gc-stats", "gc-types", "gc-sizes", "gc-full"))
            ]
            for ln in stats[-8:]:
                print(f"  server {ln}")
        server.cleanup()


class StoredWatch:
    """Polls the stored-point count of the server every `period_s` on a thread."""

    def __init__(self, server: ServerHandle, enterprise_id: int, period_s: float) -> None:
        self.server = server
        self.enterprise_id = enterprise_id
        self.period_s = period_s
        self.samples: list[tuple[float, int]] = []  # (wall time, count)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._client = server.client()

    def count(self) -> int:
        return stored_points(self.server, self._client, self.enterprise_id)

    def __enter__(self) -> StoredWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self._client.close()

    def _run(self) -> None:
        deadline = time.monotonic() + 3_600
        client = self.server.client()
        with client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    n = stored_points(self.server, client, self.enterprise_id)
                    self.samples.append((time.time(), n))
                self._stop.wait(self.period_s)

    def at(self, wall: float) -> float:
        """The count at `wall`, interpolated between samples."""
        before = [s for s in self.samples if s[0] <= wall]
        after = [s for s in self.samples if s[0] >= wall]
        if not before:
            return float(after[0][1]) if after else float("nan")
        if not after:
            return float(before[-1][1])
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (wall - t0) / (t1 - t0)


def wait_stored(
    watch: StoredWatch, target: int, timeout_s: float, step_s: float = 0.1
) -> tuple[int, float]:
    """Poll until `target` points are counted or `timeout_s` passes: (count, when the count
    reached `target`, interpolated between the last two polls - NaN if it never did)."""
    deadline = time.monotonic() + timeout_s
    n, prev = -1, None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            n, now = watch.count(), time.time()
            if n >= target:
                if prev is None or n <= prev[1]:
                    return n, now
                t0, n0 = prev
                return n, t0 + (target - n0) / (n - n0) * (now - t0)
            prev = (now, n)
        time.sleep(step_s)
    return n, float("nan")


class Workers:
    """Worker processes that report ready, wait for `go`, then put one result each."""

    def __init__(self, target: Callable[..., None], specs: list[Any]) -> None:
        self.ready: Any = CTX.Queue()
        self.out: Any = CTX.Queue()
        self.go = CTX.Event()
        self.stop = CTX.Event()
        self.procs = [
            CTX.Process(target=target, args=(s, self.ready, self.go, self.out), daemon=True)
            for s in specs
        ]

    def start(self, timeout_s: float = 300.0) -> list[Any]:
        for p in self.procs:
            p.start()
        infos = []
        deadline = time.monotonic() + timeout_s
        for _ in self.procs:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                infos.append(self.ready.get(timeout=remaining))
            except queue.Empty:
                self.kill()
                raise RuntimeError("workers did not get ready in time") from None
        return infos

    def results(self, timeout_s: float) -> list[Any]:
        got = []
        deadline = time.monotonic() + timeout_s
        for _ in self.procs:
            try:
                got.append(self.out.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                break
        return got

    def kill(self) -> None:
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)


def split(items: list[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


@contextlib.contextmanager
def profiled(
    args: argparse.Namespace, server: ServerHandle, label: str, delay_s: float = 0.0
) -> Iterator[None]:
    """With --profile DIR: py-spy the server for --profile-seconds (after `delay_s`), and
    print where the time went, with the CPU of each thread kind."""
    if not args.profile or server.pid is None:
        yield
        return
    box: dict[str, Any] = {}

    def run() -> None:
        time.sleep(delay_s)
        before = thread_cpu(server.pid or 0)
        prof = Profiler(
            server, Path(args.profile), label, args.profile_seconds, rate=args.profile_rate
        )
        prof.start()
        box["path"] = prof.wait()
        box["cpu"] = (before, thread_cpu(server.pid or 0))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(delay_s + args.profile_seconds + 90)
        path = box.get("path")
        if path is not None:
            prof = load_profile(path)
            before, after = box["cpu"]
            cpu = cpu_by_thread_name(before, after, prof.tids)
            summary = prof.report(args.profile_top, cpu)
            (Path(args.profile) / f"{label}-summary.txt").write_text(summary + "\n")
            print(f"  --- profile of the server ({path}) ---")
            print("  " + summary.replace("\n", "\n  "))


# --------------------------------------------------------------------------- http-bulk


def scenario_http_bulk(args: argparse.Namespace, report: Report) -> None:
    name = "http-bulk"
    with server_for(args, report, name) as server:
        fleet = register_fleet(server, "bulk", args.devices, args.props)
        print(f"  registered {len(fleet.devices)} devices in {fleet.register_s:.1f} s")
        entries = math.ceil(args.bulk_points / args.props / len(fleet.devices))
        per_request = max(1, args.bulk_batch // args.props)
        with StoredWatch(server, fleet.enterprise_id, 1.0) as watch:
            for k, fmt in enumerate(("json", "line")):
                base = watch.count()
                t0 = now_ms() + k * 3_600_000  # each format its own hour: no duplicates
                specs = [
                    HttpSpec(
                        server.api,
                        fleet.token,
                        fleet.product_key,
                        [d[1] for d in part],
                        args.props,
                        entries,
                        per_request,
                        fmt,
                        t0,
                    )
                    for part in split(fleet.devices, args.http_workers)
                ]
                _run_http(args, report, server, watch, specs, base, f"{name}/{fmt}")


def _run_http(
    args: argparse.Namespace,
    report: Report,
    server: ServerHandle,
    watch: StoredWatch,
    specs: list[HttpSpec],
    base: int,
    label: str,
) -> None:
    workers = Workers(http_worker_main, specs)
    workers.start()
    with Sampler(server) as sampler, profiled(args, server, label.replace("/", "-"), 1.0):
        t_go = time.time()
        workers.go.set()
        results: list[HttpResult] = workers.results(600)
        workers.kill()
        sent_end = max((r.end_wall for r in results), default=float("nan"))
        accepted = sum(r.accepted for r in results)
        stored, t_stored = wait_stored(watch, base + accepted, 120)
    stored -= base
    rejected = sum(r.rejected for r in results)
    for r in results:
        for err in r.errors[:3]:
            print(f"  worker error: {err}")
    lat = [x for r in results for x in r.latencies_ms]
    send_s = sent_end - t_go
    store_s = t_stored - t_go
    cpu = _cpu(sampler, t_go, sent_end)
    report.add(
        Row(label, "points accepted (HTTP 200)", accepted, "points"),
        Row(label, "points rejected", rejected, "points", "0", rejected == 0),
        Row(label, "points/s accepted", accepted / send_s if send_s > 0 else None, "points/s"),
        Row(
            label,
            "points/s stored and queryable",
            stored / store_s if store_s > 0 else None,
            "points/s",
            ">= 250,000",
            bool(store_s > 0 and stored / store_s >= 250_000),
        ),
        Row(label, "request latency p50", pct(lat, 0.5), "ms"),
        Row(label, "request latency p99", pct(lat, 0.99), "ms"),
        Row(label, "server CPU while sending", cpu * 100, "% of 1 core"),
        Row(label, "machine CPU busy while sending", sampler.machine_busy(t_go, sent_end), "%"),
        Row(label, "server RSS peak", sampler.peak_rss() / MIB, "MiB"),
    )


def _cpu(sampler: Sampler, t0_wall: float, t1_wall: float) -> float:
    """Server CPU share between two wall times (the sampler keeps monotonic stamps)."""
    offset = time.monotonic() - time.time()
    return sampler.cpu_share(t0_wall + offset, t1_wall + offset)


# --------------------------------------------------------------------------- MQTT helpers


def pub_specs(
    args: argparse.Namespace,
    port: int,
    fleet: Fleet,
    devices: list[tuple[int, str, str]],
    procs: int,
    *,
    props: int,
    rate: float,
    seconds: float,
    count: int = 0,
) -> list[PubSpec]:
    parts = split(devices, procs)
    return [
        PubSpec(
            port=port,
            product_key=fleet.product_key,
            devices=[(d[1], d[2]) for d in part],
            props=props,
            qos=args.qos,
            window=args.window,
            rate=rate * len(part) / len(devices) if rate else 0.0,
            seconds=seconds,
            count=count // len(parts),
        )
        for part in parts
    ]


def start_publishers(specs: list[PubSpec]) -> tuple[Workers, int, int, float]:
    workers = Workers(publisher_main, specs)
    begin = time.monotonic()
    infos = workers.start()
    connected = sum(i[1] for i in infos)
    failed = sum(i[2] for i in infos)
    return workers, connected, failed, time.monotonic() - begin


def sum_results(results: list[PubResult]) -> PubResult:
    total = PubResult()
    for r in results:
        total.connected += r.connected
        total.connect_failed += r.connect_failed
        total.published += r.published
        total.acked += r.acked
        total.behind += r.behind
        total.cpu_s += r.cpu_s
        total.errors += r.errors
    total.start_wall = min((r.start_wall for r in results), default=float("nan"))
    total.end_wall = max((r.end_wall for r in results), default=float("nan"))
    total.drained_wall = max((r.drained_wall for r in results), default=float("nan"))
    return total


# --------------------------------------------------------------------------- mqtt-sustained


def scenario_mqtt_sustained(args: argparse.Namespace, report: Report) -> None:
    name = "mqtt-sustained"
    with server_for(args, report, name) as server:
        fleet = register_fleet(server, "sus", args.devices, args.props)
        print(f"  registered {len(fleet.devices)} devices in {fleet.register_s:.1f} s")
        rate = args.rate_points / args.props
        specs = pub_specs(
            args,
            server.mqtt_port,
            fleet,
            fleet.devices,
            args.publishers,
            props=args.props,
            rate=rate,
            seconds=args.seconds,
        )
        workers, connected, failed, took = start_publishers(specs)
        print(f"  {connected} devices connected ({failed} failed) in {took:.1f} s")
        with StoredWatch(server, fleet.enterprise_id, 2.0) as watch, Sampler(server) as sampler:
            base = watch.count()
            with profiled(args, server, name, min(10.0, args.seconds / 4)):
                t_go = time.time()
                workers.go.set()
                results = workers.results(args.seconds + 120)
            workers.kill()
            total = sum_results(results)
            points = total.acked * args.props
            stored_all, t_all = wait_stored(watch, base + points, 60, 0.25)
            end = total.end_wall
        _mqtt_rows(report, name, args, total, t_go, end, watch, base, stored_all, t_all, sampler)
        warm = min(5.0, args.seconds / 4)
        steady = slope([(t, n) for t, n in watch.samples if t_go + warm <= t <= end])
        sent_rate = total.published * args.props / max(end - t_go, 1e-9)

        def lag(fraction: float) -> float:
            """Seconds of publishing not yet stored at `fraction` of the run."""
            t = t_go + fraction * (end - t_go)
            return (sent_rate * (t - t_go) - (watch.at(t) - base)) / sent_rate

        lags = ", ".join(f"{lag(f):.2f}" for f in (0.25, 0.5, 0.75, 1.0))
        print(f"  stored lag behind publishing at 25/50/75/100 % of the run: {lags} s")
        report.add(
            Row(name, "stored lag behind publishing at 50 % of the run", lag(0.5), "s"),
            Row(name, "stored lag behind publishing at the end", lag(1.0), "s"),
            Row(
                name,
                "points/s stored, whole run (to 1 s after the end)",
                (watch.at(end + 1.0) - base) / (end + 1.0 - t_go),
                "points/s",
            ),
            Row(
                name,
                f"points/s stored, steady (slope from {warm:.0f} s to the end)",
                steady,
                "points/s",
                f">= {args.rate_points:,.0f}",
                steady >= args.rate_points,
            ),
        )


def slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of count over time (points/s); NaN with fewer than 3 samples."""
    if len(samples) < 3:
        return float("nan")
    ts = [t for t, _ in samples]
    ns = [float(n) for _, n in samples]
    mt, mn = sum(ts) / len(ts), sum(ns) / len(ns)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (n - mn) for t, n in zip(ts, ns, strict=True)) / den if den else math.nan


def _mqtt_rows(
    report: Report,
    name: str,
    args: argparse.Namespace,
    total: PubResult,
    t_go: float,
    end: float,
    watch: StoredWatch,
    base: int,
    stored_all: int,
    t_all: float,
    sampler: Sampler,
) -> None:
    props = args.props if name != "mqtt-single" else 1
    seconds = end - t_go
    for err in total.errors[:3]:
        print(f"  publisher error: {err}")
    report.add(
        Row(
            name,
            "devices connected",
            total.connected,
            "",
            f"{total.connected + total.connect_failed:,}",
            total.connect_failed == 0,
        ),
        Row(name, "messages published", total.published, "msgs"),
        Row(name, "messages behind (all windows full)", total.behind, "msgs"),
        Row(name, "messages/s accepted (PUBACK)", total.acked / seconds, "msgs/s"),
        Row(name, "points/s accepted (PUBACK)", total.acked * props / seconds, "points/s"),
        Row(
            name,
            "points stored / points accepted",
            (stored_all - base) / max(1, total.acked * props) * 100,
            "%",
            "100 %",
            stored_all - base >= total.acked * props,
        ),
        Row(name, "backlog stored after the last publish", t_all - end, "s"),
        Row(name, "server CPU while publishing", _cpu(sampler, t_go, end) * 100, "% of 1 core"),
        Row(name, "publisher processes' CPU", total.cpu_s / seconds * 100, "% of 1 core"),
        Row(name, "machine CPU busy while publishing", sampler.machine_busy(t_go, end), "%"),
        Row(name, "server RSS peak", sampler.peak_rss() / MIB, "MiB"),
    )


# --------------------------------------------------------------------------- latency


def scenario_latency(args: argparse.Namespace, report: Report) -> None:
    name = "latency"
    with server_for(args, report, name) as server:
        fleet = register_fleet(server, "lat", args.devices, args.props)
        print(f"  registered {len(fleet.devices)} devices in {fleet.register_s:.1f} s")
        rate = args.rate_points / args.props / 2  # half the sustained load, in messages/s
        probe, rest = fleet.devices[:1], fleet.devices[1:]
        specs = pub_specs(
            args,
            server.mqtt_port,
            fleet,
            rest,
            args.publishers,
            props=args.props,
            rate=rate - args.probe_rate,
            seconds=args.latency_seconds,
        )
        specs += pub_specs(
            args,
            server.mqtt_port,
            fleet,
            probe,
            1,
            props=args.props,
            rate=args.probe_rate,
            seconds=args.latency_seconds,
        )
        workers, connected, failed, took = start_publishers(specs)
        print(f"  {connected} devices connected ({failed} failed) in {took:.1f} s")
        poll = PollSpec(
            server.api,
            fleet.token,
            [probe[0][0]],
            args.poll_rate,
            args.latency_seconds + 30,
            now_ms(),
        )
        poller = Workers(poller_main, [poll])
        poller.start()
        with StoredWatch(server, fleet.enterprise_id, 2.0) as watch, Sampler(server) as sampler:
            base = watch.count()
            with profiled(args, server, name, min(5.0, args.latency_seconds / 4)):
                t_go = time.time()
                workers.go.set()
                results = workers.results(args.latency_seconds + 120)
            workers.kill()
            total = sum_results(results)
            stored_all, t_all = wait_stored(watch, base + total.acked * args.props, 60, 0.25)
            time.sleep(1.0)  # let the poller see the last samples
            poller.go.set()  # the poller's stop signal
            polled = poller.results(60)
            poller.kill()
        _mqtt_rows(
            report, name, args, total, t_go, total.end_wall, watch, base, stored_all, t_all, sampler
        )
        if not polled:
            report.add(Row(name, "latency poller failed", None))
            return
        upper, lower, polls, poll_ms, errors = polled[0]
        for err in errors[:3]:
            print(f"  poller error: {err}")
        sent = args.probe_rate * args.latency_seconds
        report.add(
            Row(name, "probe samples read back", len(upper), "samples", f"~{sent:,.0f}"),
            Row(name, "probe polls (GET .../telemetry)", polls, "requests"),
            Row(name, "poll request p50", pct(poll_ms, 0.5), "ms"),
            Row(name, "publish->queryable p50 (upper bound)", pct(upper, 0.5), "ms"),
            Row(
                name,
                "publish->queryable p99 (upper bound)",
                pct(upper, 0.99),
                "ms",
                "<= 1,000",
                bool(upper) and pct(upper, 0.99) <= 1000,
            ),
            Row(name, "publish->queryable p50 (lower bound)", pct(lower, 0.5), "ms"),
            Row(name, "publish->queryable p99 (lower bound)", pct(lower, 0.99), "ms"),
            Row(name, "publish->queryable max (upper bound)", max(upper, default=None), "ms"),
        )


# --------------------------------------------------------------------------- mqtt-single


def scenario_mqtt_single(args: argparse.Namespace, report: Report) -> None:
    name = "mqtt-single"
    # (a) the bare relay, with the platform's own fleet names (it checks no credentials)
    fake = Fleet(
        0, 0, "a1BenchRelay", "", [(i, f"DEV-{i:05d}", "x" * 32) for i in range(args.devices)]
    )
    relay_rate, relay_cpu = _relay(args, fake)
    report.add(
        Row(name, "bare amqtt relay: messages/s to the subscriber", relay_rate, "msgs/s"),
        Row(name, "bare amqtt relay: broker CPU", relay_cpu * 100, "% of 1 core"),
    )
    # (b) the platform, same publisher code and device count
    with server_for(args, report, name) as server:
        fleet = register_fleet(server, "single", args.devices, 1)
        print(f"  registered {len(fleet.devices)} devices in {fleet.register_s:.1f} s")
        specs = pub_specs(
            args,
            server.mqtt_port,
            fleet,
            fleet.devices,
            args.publishers,
            props=1,
            rate=0.0,
            seconds=SINGLE_MAX_S,
            count=args.single_messages,
        )
        workers, connected, failed, took = start_publishers(specs)
        print(f"  {connected} devices connected ({failed} failed) in {took:.1f} s")
        with StoredWatch(server, fleet.enterprise_id, 2.0) as watch, Sampler(server) as sampler:
            base = watch.count()
            with profiled(args, server, name, 2.0):
                t_go = time.time()
                workers.go.set()
                results = workers.results(SINGLE_MAX_S + 60)
            workers.kill()
            total = sum_results(results)
            stored_all, t_all = wait_stored(watch, base + total.acked, 120, 0.25)
        _mqtt_rows(
            report, name, args, total, t_go, total.end_wall, watch, base, stored_all, t_all, sampler
        )
        stored_rate = total.acked / (t_all - t_go)  # NaN if they were not all stored
        ratio = stored_rate / relay_rate if relay_rate else float("nan")
        report.add(
            Row(name, "platform: messages/s stored and queryable", stored_rate, "msgs/s"),
            Row(
                name,
                "platform stored msgs/s / relay msgs/s",
                ratio * 100,
                "%",
                ">= 50 %",
                ratio >= 0.5,
            ),
        )


def _relay(args: argparse.Namespace, fleet: Fleet) -> tuple[float, float]:
    """Messages/s a bare amqtt broker relays from our publishers to one subscriber, and the
    broker's CPU share meanwhile."""
    port = free_port()
    ready: Any = CTX.Queue()
    done = CTX.Event()
    sub_out: Any = CTX.Queue()
    per = args.single_messages // min(args.publishers, len(fleet.devices))
    expected = per * min(args.publishers, len(fleet.devices))
    broker = CTX.Process(target=relay_broker_main, args=(port, ready, done), daemon=True)
    broker.start()
    ready.get(timeout=60)
    sub = CTX.Process(
        target=subscriber_main,
        args=(port, "/sys/#", args.qos, expected, ready, done, sub_out),
        daemon=True,
    )
    sub.start()
    ready.get(timeout=60)
    specs = pub_specs(
        args,
        port,
        fleet,
        fleet.devices,
        args.publishers,
        props=1,
        rate=0.0,
        seconds=SINGLE_MAX_S,
        count=args.single_messages,
    )
    workers, connected, failed, took = start_publishers(specs)
    print(f"  relay: {connected} publishers connected ({failed} failed) in {took:.1f} s")
    proc = psutil.Process(broker.pid)
    cpu0 = sum(proc.cpu_times()[:2])
    t_go = time.time()
    workers.go.set()
    results = workers.results(SINGLE_MAX_S + 60)
    workers.kill()
    total = sum_results(results)
    print(
        f"  relay: {total.acked:,} PUBACKed in {total.end_wall - t_go:.1f} s; waiting for the "
        "subscriber to receive them all"
    )
    try:  # the subscriber stops once it has them all (or after 15 s without any)
        count, _first, last = sub_out.get(timeout=SINGLE_MAX_S + 60)
    except queue.Empty:
        count, last = 0, float("nan")
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    done.set()
    sub.join(10)
    broker.join(20)
    for p in (sub, broker):
        if p.is_alive():
            p.terminate()
            p.join(5)
    print(f"  relay: {count:,} delivered to the subscriber in {last - t_go:.1f} s")
    elapsed = last - t_go
    return (count / elapsed if elapsed > 0 else float("nan")), cpu / max(elapsed, 1e-9)


# --------------------------------------------------------------------------- downsample


def scenario_downsample(args: argparse.Namespace, report: Report) -> None:
    name = "downsample"
    with server_for(args, report, name) as server:
        fleet = register_fleet(server, "down", args.downsample_fleet + 1, 1)
        target_id, target_name, _ = fleet.devices[0]
        end = now_ms() // 60_000 * 60_000
        start = end - DAY_MS
        target = HttpSpec(
            server.api,
            fleet.token,
            fleet.product_key,
            [target_name],
            1,
            86_400,
            5_000,
            "json",
            start,
            step_ms=1_000,
            only_prop="p0",
        )
        background = [
            HttpSpec(
                server.api,
                fleet.token,
                fleet.product_key,
                [d[1] for d in part],
                1,
                1_440,
                5_000,
                "json",
                start,
                step_ms=60_000,
                only_prop="p0",
            )
            for part in split(fleet.devices[1:], 2)
        ]
        workers = Workers(http_worker_main, [target, *background])
        workers.start()
        t_go = time.time()
        workers.go.set()
        results = workers.results(600)
        workers.kill()
        accepted = sum(r.accepted for r in results)
        print(f"  {accepted:,} points posted in {time.time() - t_go:.1f} s")
        params = {"property": "p0", "start_ms": start, "end_ms": end, "max_points": 1000}
        url = f"/devices/{target_id}/telemetry/buckets"
        times: list[float] = []
        with server.client(fleet.token) as client:
            deadline = time.monotonic() + 120
            count = 0
            while time.monotonic() < deadline:  # until all 86,400 are queryable
                body = client.get(url, params=params).raise_for_status().json()
                count = sum(b["count"] for b in body["buckets"])
                if count >= 86_400:
                    break
                time.sleep(0.2)
            with Sampler(server) as _s, profiled(args, server, name):
                for _ in range(3):
                    client.get(url, params=params).raise_for_status()
                runs_deadline = time.monotonic() + 300
                for _ in range(args.runs):
                    if time.monotonic() > runs_deadline:
                        break
                    begin = time.perf_counter()
                    body = client.get(url, params=params).raise_for_status().json()
                    times.append((time.perf_counter() - begin) * 1e3)
        buckets = len(body["buckets"])
        report.add(
            Row(
                name, "points of the target in the 24 h", count, "points", "86,400", count == 86_400
            ),
            Row(name, "buckets returned", buckets, "points", "<= 1,000", 0 < buckets <= 1_000),
            Row(name, "bucket width", body["bucket_ms"] / 1000, "s"),
            Row(
                name,
                f"buckets query p50 ({len(times)} runs, HTTP)",
                pct(times, 0.5),
                "ms",
                "<= 50",
                pct(times, 0.5) <= 50,
            ),
            Row(
                name,
                f"buckets query p99 ({len(times)} runs, HTTP)",
                pct(times, 0.99),
                "ms",
                "<= 50",
                pct(times, 0.99) <= 50,
            ),
            Row(name, "background points (fleet at 1/min)", accepted - 86_400, "points"),
        )


# --------------------------------------------------------------------------- connections


def scenario_connections(args: argparse.Namespace, report: Report) -> None:
    name = "connections"
    with server_for(args, report, name) as server:
        fleet = register_fleet(server, "conn", args.connections, 1, workers=16)
        print(f"  registered {len(fleet.devices)} devices in {fleet.register_s:.1f} s")
        time.sleep(2.0)
        rss_before = server.rss_bytes()
        fds_before = server.num_fds()
        specs = [
            PubSpec(
                port=server.mqtt_port,
                product_key=fleet.product_key,
                devices=[(d[1], d[2]) for d in part],
                idle=True,
                hold_s=args.hold,
                keepalive=120,
                connect_concurrency=args.connect_concurrency,
            )
            for part in split(fleet.devices, args.conn_procs)
        ]
        with Sampler(server) as sampler, profiled(args, server, name):
            workers = Workers(publisher_main, specs)
            begin = time.monotonic()
            infos = workers.start(600)
            took = time.monotonic() - begin
            connected = sum(i[1] for i in infos)
            failed = sum(i[2] for i in infos)
            workers.go.set()
            time.sleep(args.settle)
            rss = server.rss_bytes()
            fds = server.num_fds()
            with server.client() as op:
                body = op.get(f"/platforms/{server.base_id}/indicators").raise_for_status().json()
            online = int(body["own"]["devices_online"])
            workers.go.clear()  # idle workers hold while `go` is set
            results = workers.results(args.hold + 60)
            workers.kill()
        errors = [e for r in results for e in r.errors]
        for err in errors[:3]:
            print(f"  connection error: {err}")
        per = (rss - rss_before) / max(connected, 1) / 1024
        report.add(
            Row(
                name,
                "devices connected (bench side)",
                connected,
                "",
                f"{args.connections:,}",
                connected == args.connections and failed == 0,
            ),
            Row(
                name,
                "devices online (server side, indicators)",
                online,
                "",
                f"{args.connections:,}",
                online == args.connections,
            ),
            Row(name, "connect rate", connected / took, "conn/s"),
            Row(name, "server RSS before connecting", rss_before / MIB, "MiB"),
            Row(
                name,
                "server RSS with all connected",
                rss / MIB,
                "MiB",
                "<= 1,024",
                rss <= 1024 * MIB,
            ),
            Row(name, "server RSS per connection", per, "KiB"),
            Row(name, "server RSS peak", sampler.peak_rss() / MIB, "MiB"),
            Row(name, "server open files", fds, "", f"< {fds_before + 20_000:,}"),
        )


# --------------------------------------------------------------------------- main


RUNNERS: dict[str, Callable[[argparse.Namespace, Report], None]] = {
    "http-bulk": scenario_http_bulk,
    "mqtt-sustained": scenario_mqtt_sustained,
    "mqtt-single": scenario_mqtt_single,
    "latency": scenario_latency,
    "downsample": scenario_downsample,
    "connections": scenario_connections,
}


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    free = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        free = subprocess.run(["free", "-h"], capture_output=True, text=True, timeout=10).stdout
    import duckdb

    import qiantang

    return {
        "qiantang": str(Path(qiantang.__file__).parent),
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "free": free.strip(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "load_at_start": machine_load(),
        "nofile": str(raise_nofile()),
    }


def wait_for_quiet(limit_s: float, threshold: float = 0.2) -> None:
    """On a shared machine: wait (at most `limit_s`) until other processes use less than
    `threshold` of a core over 3 s."""
    deadline = time.monotonic() + limit_s
    while True:
        probe = ForeignCpu()
        probe.start()
        time.sleep(3.0)
        share, top = probe.stop()
        if share < threshold:
            return
        if time.monotonic() > deadline:
            print(f"  (machine still busy: other processes at {share:.0%} of a core, {top})")
            return
        print(f"  (waiting for a quiet machine: other processes at {share:.0%}, {top})")
        time.sleep(5.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    p.add_argument("--all", action="store_true", help="run every scenario")
    g = p.add_argument_group("load")
    g.add_argument("--devices", type=int, default=1_000, help="devices (MQTT and HTTP bulk)")
    g.add_argument("--props", type=int, default=50, help="properties per message / entry")
    g.add_argument("--seconds", type=float, default=60.0, help="mqtt-sustained duration")
    g.add_argument("--rate-points", type=float, default=100_000, help="mqtt-sustained points/s")
    g.add_argument("--publishers", type=int, default=2, help="MQTT publisher processes")
    g.add_argument("--window", type=int, default=8, help="QoS 1 in-flight window per device")
    g.add_argument("--qos", type=int, choices=(0, 1), default=1)
    g.add_argument(
        "--single-messages", type=int, default=50_000, help="mqtt-single messages per side"
    )
    g.add_argument("--latency-seconds", type=float, default=30.0, help="latency duration")
    g.add_argument("--probe-rate", type=float, default=50.0, help="latency probe msgs/s")
    g.add_argument("--poll-rate", type=float, default=20.0, help="latency polls/s")
    g.add_argument("--bulk-points", type=int, default=3_000_000, help="per format")
    g.add_argument("--bulk-batch", type=int, default=10_000, help="points per HTTP request")
    g.add_argument("--http-workers", type=int, default=3, help="HTTP worker processes")
    g.add_argument("--downsample-fleet", type=int, default=200, help="background devices")
    g.add_argument("--runs", type=int, default=50, help="downsample queries timed")
    g.add_argument("--connections", type=int, default=10_000)
    g.add_argument("--conn-procs", type=int, default=4, help="connection-holding processes")
    g.add_argument("--connect-concurrency", type=int, default=32, help="per process")
    g.add_argument("--hold", type=float, default=30.0, help="connections: hold at most (s)")
    g.add_argument("--settle", type=float, default=5.0, help="connections: wait before RSS")
    t = p.add_argument_group("target a running server instead of starting one")
    t.add_argument("--target", help="http://127.0.0.1:PORT")
    t.add_argument("--mqtt-port", type=int, default=1883)
    t.add_argument("--api-key", help="an operator's API key")
    t.add_argument("--server-pid", type=int, help="for RSS/CPU/profiles")
    x = p.add_argument_group("experiments (what-ifs without touching src/)")
    x.add_argument(
        "--server-gc-threshold",
        type=lambda v: tuple(int(p) for p in v.split(",")),
        metavar="G0,G1,G2",
        help="run the server with gc.set_threshold(G0, G1, G2)",
    )
    x.add_argument(
        "--server-gc-stats",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "types"],
        help="log the server's GC time (gc.callbacks); 'types': and tracked objects by type",
    )
    o = p.add_argument_group("output")
    o.add_argument("--profile", metavar="DIR", help="py-spy the server during each scenario")
    o.add_argument("--profile-seconds", type=float, default=20.0)
    o.add_argument("--profile-top", type=int, default=25)
    o.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    o.add_argument("--json-out", metavar="FILE", help="also write the figures as JSON")
    o.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="before each scenario wait up to S s for other processes to go quiet",
    )
    o.add_argument("--no-count-file", dest="count_file", action="store_false")
    o.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.all:
        args.scenarios = list(SCENARIOS)
    if not args.scenarios:
        p.error("name at least one scenario, or --all")
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.target and not args.api_key:
        p.error("--target needs --api-key")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"qiantang bench/ingest.py: {info['cpus']} CPUs ({info['cpu_model']}), "
        f"{info['memory']}, Python {info['python']}, DuckDB {info['duckdb']}, "
        f"open files {info['nofile']}, load {info['load_at_start']}\n"
        f"server code: {info['qiantang']} (set PYTHONPATH to bench another source tree)"
    )
    print(f"command: python bench/ingest.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    report = Report()
    began = time.monotonic()
    for scenario in args.scenarios:
        print(f"\n== {scenario} ==", flush=True)
        if args.quiet_wait > 0:
            wait_for_quiet(args.quiet_wait)
        t = time.monotonic()
        foreign = ForeignCpu()
        foreign.start()
        try:
            RUNNERS[scenario](args, report)
        except Exception as err:  # one scenario failing must not lose the others' figures
            import traceback

            traceback.print_exc()
            report.add(Row(scenario, f"FAILED: {err!r}"[:80], None, "", "", False))
        report.loads.setdefault(scenario, machine_load())
        share, top = foreign.stop()
        report.add(
            Row(scenario, "other processes' CPU during the scenario", share * 100, "% of 1 core")
        )
        if top:
            print(f"  (busiest other process: {top})")
        print(f"  ({time.monotonic() - t:.0f} s, load {report.loads[scenario]})", flush=True)
    print(f"\n== summary ({time.monotonic() - began:.0f} s) ==")
    print(report.table())
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {"machine": info, "rows": [asdict(r) for r in report.rows], "loads": report.loads},
                indent=2,
                ensure_ascii=False,
            )
        )
    return 0 if all(r.ok is not False for r in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
