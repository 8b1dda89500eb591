"""The outbox: durable, ordered, bounded by size and age with an exact dropped count."""

from __future__ import annotations

from pathlib import Path

from qiantang.edge.model import Sample, now_ms
from qiantang.edge.outbox import Outbox, OutboxStats


def samples(start: int, n: int, device: str = "pk/a", ts: int | None = None) -> list[Sample]:
    base = now_ms() if ts is None else ts
    return [Sample(device, "count", base + i, start + i) for i in range(n)]


async def test_rows_stay_until_acknowledged_and_survive_a_restart(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "o.db", max_samples=100, max_age_ms=10**9)
    await box.put(samples(0, 5) + samples(100, 2, device="pk/b"))
    live = await box.live(0, 100)
    assert [r.value for r in live] == [0, 1, 2, 3, 4, 100, 101]
    assert await box.live(live[2].seq, 2) == live[3:5]  # reads remove nothing
    assert await box.backlog_devices(live[-1].seq) == ["pk/a", "pk/b"]
    assert [r.value for r in await box.backlog("pk/a", live[1].seq, live[3].seq, 10)] == [2, 3]
    await box.ack([live[0].seq, live[1].seq])
    await box.reject([live[2].seq])
    assert box.stats_now() == OutboxStats(depth=4, dropped=0, rejected=1)
    await box.close()
    again = await Outbox.open(
        tmp_path / "o.db", max_samples=100, max_age_ms=10**9, synchronous="normal"
    )
    assert [r.value for r in await again.live(0, 100)] == [3, 4, 100, 101]
    assert (again.stats_now().depth, again.stats_now().rejected) == (4, 1)
    assert await again.max_seq() == live[-1].seq
    await again.close()


async def test_the_oldest_go_first_and_are_counted_exactly(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "o.db", max_samples=10, max_age_ms=10**9)
    for start in range(0, 25, 5):
        await box.put(samples(start, 5))
    assert [r.value for r in await box.live(0, 100)] == list(range(15, 25))
    assert (box.stats_now().depth, box.stats_now().dropped) == (10, 15)
    # a row dropped while on its way, then acknowledged, was delivered after all
    first = (await box.live(0, 1))[0]
    await box.put(samples(25, 1))  # pushes `first` out
    assert box.stats_now().dropped == 16
    await box.ack([first.seq])
    assert box.stats_now().dropped == 15
    await box.count_dropped(3)
    assert box.stats_now().dropped == 18
    await box.close()


async def test_samples_past_the_age_bound_are_dropped_and_counted(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "o.db", max_samples=100, max_age_ms=60_000)
    await box.put(samples(0, 3, ts=now_ms() - 120_000) + samples(3, 2))
    assert [r.value for r in await box.live(0, 100)] == [3, 4]
    assert box.stats_now().dropped == 3
    await box.expire()
    assert box.stats_now().dropped == 3
    await box.close()
