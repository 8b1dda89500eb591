"""Contract of the telemetry bus port, run against every adapter.

To add an adapter (NATS JetStream), add its factory to `BUSES`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from qiantang.adapters.bus.memory_bus import InMemoryBus
from qiantang.domain.errors import InvalidInput
from qiantang.domain.telemetry import EventRecord, Point
from qiantang.ports.bus import BusBatch, BusClosed, StateChange, TelemetryBus

BUSES: dict[str, Callable[[], TelemetryBus]] = {"memory": InMemoryBus}


@pytest.fixture(params=sorted(BUSES))
def bus(request: pytest.FixtureRequest) -> TelemetryBus:
    made = BUSES[request.param]()
    assert isinstance(made, TelemetryBus)
    return made


def _batch(n: int, ts: int = 0) -> BusBatch:
    return BusBatch([Point(ts + i, 1, "temperature", float(i)) for i in range(n)])


async def test_every_subscription_gets_every_batch_in_order(bus: TelemetryBus) -> None:
    a, b = bus.subscribe("rules"), bus.subscribe("live")
    batches = [_batch(3, ts) for ts in (0, 10, 20)]
    for batch in batches:
        bus.publish(batch)
    assert [await a.get() for _ in batches] == batches
    assert [await b.get() for _ in batches] == batches
    assert a.get_nowait() is None


async def test_a_subscription_sees_only_what_came_after_it(bus: TelemetryBus) -> None:
    bus.publish(_batch(1, 0))
    late = bus.subscribe("late")
    bus.publish(_batch(1, 5))
    assert (await late.get()).points[0].ts == 5
    assert late.pending == 0


async def test_a_waiting_reader_wakes_on_publish(bus: TelemetryBus) -> None:
    sub = bus.subscribe("waiter")
    reader = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not reader.done()
    event = EventRecord(7, 1, "overheat", "alert", {"t": 91.5})
    state = StateChange(8, 1, online=False)
    bus.publish(BusBatch(events=[event], states=[state]))
    got = await asyncio.wait_for(reader, 5)
    assert got.events == [event] and got.states == [state] and got.size() == 2


async def test_a_full_buffer_drops_the_oldest_and_counts_it(bus: TelemetryBus) -> None:
    slow = bus.subscribe("slow", capacity=2)
    fast = bus.subscribe("fast", capacity=10)
    for ts in range(5):
        bus.publish(_batch(4, ts * 100))
    assert slow.dropped_batches == 3 and slow.dropped_points == 12
    assert [(await slow.get()).points[0].ts for _ in range(2)] == [300, 400]
    assert fast.dropped_batches == 0 and fast.pending == 5


async def test_close_drains_then_raises(bus: TelemetryBus) -> None:
    sub = bus.subscribe("closing")
    bus.publish(_batch(1))
    sub.close()
    bus.publish(_batch(1, 50))  # after close: not received
    assert (await sub.get()).points[0].ts == 0
    with pytest.raises(BusClosed):
        await sub.get()
    assert sub not in bus.subscriptions()


async def test_closing_the_bus_wakes_every_reader(bus: TelemetryBus) -> None:
    subs = [bus.subscribe(f"s{i}") for i in range(3)]
    readers = [asyncio.create_task(s.get()) for s in subs]
    await asyncio.sleep(0)
    bus.close()
    for reader in readers:
        with pytest.raises(BusClosed):
            await asyncio.wait_for(reader, 5)
    assert list(bus.subscriptions()) == []


def test_capacity_must_be_positive(bus: TelemetryBus) -> None:
    with pytest.raises(InvalidInput) as err:
        bus.subscribe("none", capacity=0)
    assert err.value.errors[0].field == "capacity"
