"""Benchmark of the embedded time-series store (DuckDB), through its public async API.

Run:  python bench/timeseries.py            (in memory; add --file to use a database file)

Data: a fleet of --devices devices x 2 properties x --samples samples spread over the last
24 h, plus one target device at 1 Hz for those 24 h (86,400 points), appended in time order
as ingest would. Prints:

- append throughput (points/s) of all of it through ``append`` (1,000-point lists) and one
  final ``flush``, the longest event-loop stall meanwhile, the process's CPU time (all
  threads, DuckDB's included: a cost that other load on the machine barely moves), and for scale a raw DuckDB Arrow
  ``INSERT`` of the same rows in prebuilt 10k batches (the ceiling);
- the same load with a ``flush()`` after every 10,000 points: the batch layout a steady
  ingest produces, on which the queries then run (free-running appends make batches of up to
  ``max_pending_points``, which cluster a device's rows better and flatter the queries);
- ``downsample`` of the target's 24 h (p50/p99 over --runs runs; target <= 50 ms);
- ``latest`` of the target, ``fleet_latest`` over the whole fleet and ``count_since``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from qiantang.adapters.timeseries import duckdb_sql
from qiantang.adapters.timeseries.duckdb_store import DuckDBTimeSeriesStore
from qiantang.domain.telemetry import Point
from qiantang.ports.timeseries import Bucket

__all__ = ["main"]

DAY_MS = 86_400_000
TARGET = 1_000_000  # the target device's id, apart from the fleet's 1..devices


def make_points(t0: int, devices: int, samples: int) -> list[Point]:
    """Fleet and target points from `t0` on for 24 h, merged in timestamp order."""
    step = DAY_MS // samples
    out: list[Point] = []
    k = 0
    for second in range(86_400):
        ts = t0 + second * 1_000
        while k < samples and t0 + k * step <= ts:
            fts = t0 + k * step
            for d in range(1, devices + 1):
                out.append(Point(fts, d, "temp", 20.0 + (d + k) % 17 * 0.5))
                out.append(Point(fts, d, "pressure", 1.0 + k % 5 * 0.01))
            k += 1
        out.append(Point(ts, TARGET, "temp", 60.0 + (second % 600) / 10))
    return out


def chunks(points: list[Point], size: int) -> Iterator[list[Point]]:
    """`points` in consecutive slices of `size`."""
    for i in range(0, len(points), size):
        yield points[i : i + size]


async def watch_loop(stalls: list[float], stop: asyncio.Event) -> None:
    """Record how late 5 ms sleeps wake up: the event loop's stalls."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        stalls.append(time.perf_counter() - before - 0.005)


async def load(store: DuckDBTimeSeriesStore, points: list[Point], flush_every: int | None) -> str:
    """Append everything through the public API; describe the throughput."""
    stalls: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop(stalls, stop))
    start, cpu_start = time.perf_counter(), time.process_time()
    for i, chunk in enumerate(chunks(points, 1_000), start=1):
        await store.append(chunk)
        if flush_every and i * 1_000 % flush_every == 0:
            await store.flush()
        await asyncio.sleep(0)  # as a real ingest loop would, between messages
    await store.flush()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    stop.set()
    await watcher
    return (
        f"{len(points):,} points in {elapsed:.2f} s = {len(points) / elapsed:,.0f} points/s; "
        f"longest event-loop stall {max(stalls, default=0) * 1e3:.1f} ms; "
        f"process CPU {cpu:.2f} s = {len(points) / cpu:,.0f} points per CPU second"
    )


def bench_raw_duckdb(points: list[Point]) -> None:
    """The ceiling: the same rows as prebuilt Arrow batches of 10k, inserted directly."""
    batches = [duckdb_sql.points_to_arrow(c) for c in chunks(points, 10_000)]
    conn = duckdb.connect()
    for statement in duckdb_sql.SCHEMA:
        conn.execute(statement)
    start = time.perf_counter()
    for batch in batches:
        conn.register("_qt_points", batch)
        conn.execute(duckdb_sql.INSERT_POINTS)
    elapsed = time.perf_counter() - start
    conn.close()
    print(
        f"ceiling: raw DuckDB INSERT of prebuilt 10k Arrow batches (no encoding, no queue): "
        f"{len(points) / elapsed:,.0f} rows/s"
    )


async def timed(label: str, runs: int, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run `call` `runs` times after 3 warm-ups; print p50/p99 in ms; answer its result."""
    for _ in range(3):
        result = await call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = await call()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(f"{label}: p50 {statistics.median(times):.1f} ms, p99 {p99:.1f} ms ({runs} runs)")
    return result


async def bench_downsample(store: DuckDBTimeSeriesStore, t0: int, runs: int, label: str) -> None:
    """Time downsampling the target's 24 h to at most 1,000 and 1,440 points."""
    for max_points in (1_000, 1_440):

        def call(m: int = max_points) -> Awaitable[list[Bucket]]:
            return store.downsample(TARGET, "temp", t0, t0 + DAY_MS, m)

        buckets = await timed(
            f"downsample{label} 24 h of 86,400 points to <= {max_points:,}", runs, call
        )
        width = (buckets[1].ts - buckets[0].ts) // 1_000
        print(f"  -> {len(buckets):,} buckets of {width} s")


async def bench_latest(store: DuckDBTimeSeriesStore, devices: int, runs: int) -> None:
    """Time latest, fleet_latest and count_since."""
    latest = await timed("latest(target device)", runs, lambda: store.latest(TARGET))
    print(f"  -> {len(latest)} property")
    fleet_ids = list(range(1, devices + 1))
    fleet = await timed(
        f"fleet_latest({devices:,} devices, 'temp')",
        runs,
        lambda: store.fleet_latest(fleet_ids, "temp"),
    )
    print(f"  -> {len(fleet):,} devices")
    count = await timed(
        "count_since(1 h ago)", runs, lambda: store.count_since(now_ms() - 3_600_000)
    )
    print(f"  -> {count:,} points")


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


async def run(args: argparse.Namespace) -> None:
    """Generate, ingest, query, print."""
    print(
        f"qiantang bench/timeseries.py: duckdb {duckdb.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{'file-backed' if args.file else 'in-memory'} store"
    )
    t0 = now_ms() // 300_000 * 300_000 - DAY_MS  # whole 5 min, so buckets align with the day
    start = time.perf_counter()
    points = make_points(t0, args.devices, args.samples)
    print(
        f"data: {len(points):,} points ({args.devices:,} devices x 2 properties x "
        f"{args.samples:,} samples over the last 24 h + 86,400 at 1 Hz for one device), "
        f"made in {time.perf_counter() - start:.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        free_path = Path(tmp) / "free.duckdb" if args.file else None
        async with await DuckDBTimeSeriesStore.open(free_path) as store:
            print("append, free-running:", await load(store, points, None))
            await bench_downsample(store, t0, args.runs, " (free-running layout)")
        steady_path = Path(tmp) / "steady.duckdb" if args.file else None
        async with await DuckDBTimeSeriesStore.open(steady_path) as store:
            print("append, awaiting flush() every 10,000:", await load(store, points, 10_000))
            await bench_downsample(store, t0, args.runs, "")
            await bench_latest(store, args.devices, args.runs)
    bench_raw_duckdb(points)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=1_000, help="per device and property")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--file", action="store_true", help="use database files, not memory")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
