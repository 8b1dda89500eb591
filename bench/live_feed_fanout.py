"""The live feed's own cost, in process: `LiveFeed` on an `InMemoryBus`, N device-scope
clients drained by tasks (the router without the sockets), batches of Alink-sized messages.

    python bench/live_feed_fanout.py --clients 200 --devices 1000 --props 50

With ``--scope product`` every client watches the whole product (the worst case: every point
reaches every client). Prints the CPU time (``time.process_time``, so other processes on a shared machine do not
count) per published point with no client, and with N clients each watching one device; the
difference is what fan-out adds per point of ingest. The registry is replaced by a table
lookup (the feed resolves each device once and caches it, so this is the steady state).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Collection

from qiantang.adapters.bus.memory_bus import InMemoryBus
from qiantang.domain.telemetry import Point
from qiantang.ports.bus import BusBatch
from qiantang.services.live_feed import LiveFeed
from qiantang.services.live_feed_client import ClientDropped, LiveClient
from qiantang.services.live_feed_scope import DeviceInfo, LiveScope, ScopeKind, Visibility


class TableDirectory:
    """Every device of enterprise 1, product 1, platform 1."""

    def resolve(self, device_ids: Collection[int]) -> dict[int, DeviceInfo]:
        return {d: DeviceInfo(d, 1, 1, "pk", frozenset({1})) for d in device_ids}


def batches(devices: int, props: int, msgs: int, count: int) -> list[BusBatch]:
    """`count` batches of `msgs` messages from random devices, `props` points each."""
    rng = random.Random(7)
    now = int(time.time() * 1000)
    out = []
    for b in range(count):
        points = []
        for m in range(msgs):
            device = rng.randrange(1, devices + 1)
            ts = now + b * msgs + m
            points.extend(Point(ts, device, f"p{i}", 20.0 + i) for i in range(props))
        out.append(BusBatch(points))
    return out


async def drain(client: LiveClient, counter: list[int]) -> None:
    while True:
        try:
            frames = await client.take()
        except ClientDropped:
            return
        counter[0] += len(frames)


async def run(args: argparse.Namespace, clients: int, work: list[BusBatch]) -> tuple[float, int]:
    bus = InMemoryBus()
    feed = LiveFeed(bus, TableDirectory())
    feed.start()
    visibility = Visibility(frozenset({1}), {})
    counter = [0]
    tasks = []
    for device_id in range(1, clients + 1):
        if args.scope == "product":  # every client sees every device
            scope = LiveScope(ScopeKind.PRODUCT, 1, visibility)
        else:
            scope = LiveScope(ScopeKind.DEVICE, device_id, visibility)
        client = feed.connect(scope)
        tasks.append(asyncio.create_task(drain(client, counter)))
    for batch in work[:5]:  # warm up: resolve the devices once
        bus.publish(batch)
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    cpu0 = time.process_time()
    subscription = bus.subscriptions()[0]
    for batch in work[5:]:
        bus.publish(batch)
        # clients that keep up: the feed and every drain run before the next batch
        while subscription.pending:
            await asyncio.sleep(0)
        for _ in range(2):
            await asyncio.sleep(0)
    while any(c.stats().pending for c in feed.clients()):
        await asyncio.sleep(0)
    dropped = feed.stats().bus_dropped_batches
    assert dropped == 0, f"the feed fell behind the bus: {dropped} batches dropped"
    assert not any(c.stats().sampled for c in feed.clients()), "a client was sampled"
    cpu = time.process_time() - cpu0
    await feed.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return cpu, counter[0]


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--props", type=int, default=50)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--msgs", type=int, default=20, help="messages per bus batch")
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scope", choices=("device", "product"), default="device")
    args = p.parse_args()
    work = batches(args.devices, args.props, args.msgs, args.batches + 5)
    points = args.batches * args.msgs * args.props
    for r in range(1, args.rounds + 1):
        base, _ = asyncio.run(run(args, 0, work))
        with_cpu, frames = asyncio.run(run(args, args.clients, work))
        print(
            f"round {r}: {points:,} points; no client {1e6 * base / points:.3f} us/point; "
            f"{args.clients} clients {1e6 * with_cpu / points:.3f} us/point, "
            f"{frames:,} frames ({1e6 * (with_cpu - base) / max(frames, 1):.1f} us/frame)"
        )


if __name__ == "__main__":
    main()
