"""Outbox figures for docs/edge.md: commit throughput and latency, and the drain cycle.

Run: ``python -m bench.edge_outbox`` (it prints, it asserts nothing).

- put: batches of `batch` samples committed one transaction each, as the gateway's writer
  does (it commits every 20 ms or 2000 samples); per-commit latency p50/p99.
- drain: read 200 rows, acknowledge them, repeat, as the forwarder does per message.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from qiantang.edge.model import Sample, now_ms
from qiantang.edge.outbox import Outbox


async def put(path: Path, synchronous: str, batch: int, total: int) -> tuple[float, float, float]:
    box = await Outbox.open(
        path, max_samples=10_000_000, max_age_ms=10**10, synchronous=synchronous
    )
    latencies = []
    base = now_ms()
    start = time.perf_counter()
    for i in range(0, total, batch):
        rows = [Sample("pk/dev-1", f"p{j % 20}", base + i + j, float(i + j)) for j in range(batch)]
        t0 = time.perf_counter()
        await box.put(rows)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    await box.close()
    q = statistics.quantiles(latencies, n=100)
    return total / elapsed, q[49] * 1000, q[98] * 1000


async def drain(path: Path, per_message: int) -> float:
    box = await Outbox.open(path, max_samples=10_000_000, max_age_ms=10**10, synchronous="full")
    total = box.stats_now().depth
    start = time.perf_counter()
    after = 0
    while rows := await box.live(after, per_message):
        after = rows[-1].seq
        await box.ack([r.seq for r in rows])
    elapsed = time.perf_counter() - start
    await box.close()
    return total / elapsed


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for synchronous in ("full", "normal"):
            for batch in (10, 100, 1000):
                path = Path(folder) / f"{synchronous}-{batch}.db"
                rate, p50, p99 = await put(
                    path, synchronous, batch, 50_000 if batch > 10 else 5_000
                )
                print(
                    f"put  synchronous={synchronous:6} batch={batch:5}: {rate:9,.0f} samples/s,"
                    f" commit p50 {p50:6.2f} ms p99 {p99:6.2f} ms"
                )
        rate = await drain(Path(folder) / "full-1000.db", 200)
        print(f"drain read+ack 200 rows a message: {rate:9,.0f} samples/s")


if __name__ == "__main__":
    asyncio.run(main())
