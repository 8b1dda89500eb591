"""Contract of the time-series store port, run against every adapter.

To add an adapter (PostgreSQL), add a `Backend` to `BACKENDS`: a factory that opens a store on
the same storage each time it is called (so a reopen reads what an earlier store wrote).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from qiantang.adapters.timeseries.duckdb_store import DuckDBTimeSeriesStore
from qiantang.domain.errors import InvalidInput
from qiantang.domain.telemetry import EventRecord, Point, Value
from qiantang.ports.timeseries import (
    NICE_BUCKET_WIDTHS_MS,
    Bucket,
    StoreClosedError,
    TimeSeriesStore,
    TimeSeriesStoreError,
    bucket_count,
    bucket_width_ms,
)

__all__: list[str] = []

Factory = Callable[..., Awaitable[TimeSeriesStore]]
HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a whole day since the epoch


@dataclass(frozen=True)
class Backend:
    """How to open a store of one adapter; `reopenable`: a second store sees the first's data."""

    make: Factory
    reopenable: bool


def _duckdb_memory(_tmp: Path) -> Backend:
    async def make(**options: Any) -> TimeSeriesStore:
        return await DuckDBTimeSeriesStore.open(None, **options)

    return Backend(make, reopenable=False)


def _duckdb_file(tmp: Path) -> Backend:
    async def make(**options: Any) -> TimeSeriesStore:
        return await DuckDBTimeSeriesStore.open(tmp / "telemetry.duckdb", **options)

    return Backend(make, reopenable=True)


BACKENDS: dict[str, Callable[[Path], Backend]] = {
    "duckdb-memory": _duckdb_memory,
    "duckdb-file": _duckdb_file,
}


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [
        t.name for t in threading.enumerate() if t not in before and t.name.startswith("qiantang")
    ]
    assert not left, f"threads left running: {left}"


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[TimeSeriesStore]:
    opened = await backend.make()
    yield opened
    await opened.close()


def _same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (1, 1.0 and True are three values)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _distinct(points: list[Point]) -> list[Point]:
    """What the store keeps of `points`: one of each (device, property, ts, value)."""
    kept: dict[tuple[int, str, int, str], Point] = {}
    for p in points:
        kept.setdefault((p.device_id, p.property, p.ts, repr(p.value)), p)
    return list(kept.values())


async def _all_pages(
    store: TimeSeriesStore, device_id: int, prop: str | None, start: int, end: int, limit: int
) -> list[Point]:
    points: list[Point] = []
    cursor: str | None = None
    for _ in range(10_000):
        page = await store.query_raw(device_id, prop, start, end, limit=limit, cursor=cursor)
        assert len(page.points) <= limit
        points.extend(page.points)
        if page.next_cursor is None:
            return points
        cursor = page.next_cursor
    raise AssertionError("paging did not end")


async def _wait_for(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


ROUND_TRIP_VALUES: dict[str, Value] = {
    "int": 42,
    "negative_int": -17,
    "zero": 0,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "beyond_int64": 2**70,
    "float": 0.1 + 0.2,
    "negative_float": -273.15,
    "tiny_float": 5e-324,
    "infinity": math.inf,
    "nan": math.nan,
    "float_looking_int": 3.0,
    "bool_true": True,
    "bool_false": False,
    "text": "温度 ok",
    "empty_text": "",
    "enum": 2,
    "date_ms": 1_767_225_600_123,
    "struct": {"lat": 30.25, "lon": 120.17, "ok": True, "tags": ["a", 1], "none": None},
    "empty_struct": {},
    "array": [1, 2.5, "x", False, None, {"k": [1]}],
    "empty_array": [],
    "null": None,
}


async def test_every_value_kind_round_trips(store: TimeSeriesStore) -> None:
    points = [
        Point(T0 + i, 7, prop, value) for i, (prop, value) in enumerate(ROUND_TRIP_VALUES.items())
    ]
    await store.append(points)
    await store.flush()

    page = await store.query_raw(7, None, T0, T0 + HOUR, limit=1_000)
    assert [(p.ts, p.property) for p in page.points] == [(p.ts, p.property) for p in points]
    for got, sent in zip(page.points, points, strict=True):
        assert _same(got.value, sent.value), (sent.property, got.value, sent.value)
    latest = await store.latest(7)
    for prop, value in ROUND_TRIP_VALUES.items():
        assert _same(latest[prop].value, value), prop


async def test_raw_paging_returns_every_point_exactly_once(store: TimeSeriesStore) -> None:
    points = [
        Point(T0 + t * 1_000, 1, p, t * 10 + i) for t in range(60) for i, p in enumerate("abc")
    ]
    points += [Point(T0 + 5_000, 1, "b", 99)] * 5  # resent: stored once
    # same key, other values: other readings, kept, and ties for the cursor
    points += [Point(T0 + 6_000, 1, "a", v) for v in (1.5, "x", None)]
    points += [Point(T0 + t * 1_000, 2, "a", 0) for t in range(60)]  # another device
    sent = points[::-1]
    await store.append(sent)
    await store.flush()
    start, end = T0 + 2_000, T0 + 50_000  # start inclusive, end exclusive

    def key(p: Point) -> tuple[int, str, str]:
        return (p.ts, p.property, repr(p.value))

    for prop in (None, "a"):
        expected = Counter(
            key(p)
            for p in _distinct(sent)
            if p.device_id == 1 and start <= p.ts < end and prop in (None, p.property)
        )
        got = await _all_pages(store, 1, prop, start, end, limit=4)
        assert Counter(key(p) for p in got) == expected
        assert [(p.ts, p.property) for p in got] == sorted((p.ts, p.property) for p in got)


async def test_a_resent_point_is_stored_once_and_other_values_are_kept(
    store: TimeSeriesStore,
) -> None:
    day = 24 * HOUR
    first = [Point(T0 + t, 1, "v", t) for t in range(100)]
    first += [Point(T0 + day + t, 1, "v", t) for t in range(100)]  # a day later: two ranges
    first += [Point(T0 + t, 1, "w", -t) for t in range(10)]  # same times, other property
    first += [Point(T0 + t, 2, "v", -t) for t in range(10)]  # same times, other device
    before = time.time_ns() // 1_000_000
    await store.append(first)
    await store.flush()
    assert await store.count_since(before) == 220

    # resent (as a gateway does after a lost reply), twice in one batch, mixed with new
    # points between and around the stored ranges and at the int64 extremes
    resent = [first[i] for i in (0, 50, 99, 100, 199, *range(200, 210))] * 2
    new = [Point(T0 + 100, 1, "v", 100), Point(T0 + HOUR, 1, "v", "gap")]
    new += [Point(-(2**63), 1, "v", "min"), Point(2**63 - 1, 1, "v", "max")]
    new += [Point(T0 + 300, 1, "v", "once"), Point(T0 + 300, 1, "v", "once")]
    # other values at a stored or a new time are other readings, not copies: kept
    new += [Point(T0 + 50, 1, "v", 50.0), Point(T0 + 200, 1, "v", "a"), Point(T0 + 200, 1, "v", 2)]
    mixed = [p for pair in zip(resent, new + new[:1] * 30, strict=False) for p in pair]
    await store.append(mixed)
    await store.flush()

    stored = await _all_pages(store, 1, "v", -(2**63), 2**63 - 1, limit=1_000)
    rows = Counter((p.ts, repr(p.value)) for p in stored)
    assert set(rows.values()) == {1}
    assert len(stored) == 200 + 4 + 3  # T0+100, the gap, int64 min, T0+300; three others
    at = {ts: sorted(repr(p.value) for p in stored if p.ts == ts) for ts in (T0, T0 + 50)}
    assert at == {T0: ["0"], T0 + 50: ["50", "50.0"]}
    assert await store.count_since(before) == 220 + 8  # with ts 2**63 - 1
    assert await store.count_points([1], T0) == 200 + 3 + 3 + 10 + 1
    (bucket,) = await store.downsample(1, "w", T0, T0 + 10, max_points=1)
    assert (bucket.count, bucket.max) == (10, 0)


async def test_resending_a_batch_spread_over_many_ranges_stores_nothing_twice(
    store: TimeSeriesStore,
) -> None:
    # timestamps in 40 clusters an hour apart: more ranges than one statement checks apart
    points = [Point(T0 + c * HOUR + k, 3, "p", c * 10 + k) for c in range(40) for k in range(5)]
    await store.append(points)
    await store.flush()
    gaps = [Point(T0 + c * HOUR + 1_800_000, 3, "p", -c) for c in range(40)]
    await store.append(points[::-1] + gaps)
    await store.flush()

    stored = await _all_pages(store, 3, "p", T0, T0 + 41 * HOUR, limit=10_000)
    assert sorted((p.ts, p.value) for p in stored) == sorted((p.ts, p.value) for p in points + gaps)


async def test_raw_rejects_bad_arguments(store: TimeSeriesStore) -> None:
    with pytest.raises(InvalidInput) as err:
        await store.query_raw(1, None, T0, T0, limit=10)
    assert err.value.errors[0].field == "end_ms"
    with pytest.raises(InvalidInput) as err:
        await store.query_raw(1, None, T0, T0 + 1, limit=0)
    assert err.value.errors[0].field == "limit"
    with pytest.raises(InvalidInput) as err:
        await store.query_raw(1, None, T0, T0 + 1, cursor="not-a-cursor!")
    assert err.value.errors[0].field == "cursor"


async def test_latest_is_the_newest_value_of_each_property(store: TimeSeriesStore) -> None:
    await store.append([Point(T0 + 500, 1, "temp", 30.5), Point(T0 + 100, 1, "mode", "auto")])
    await store.append([Point(T0 + 200, 1, "temp", 20.0), Point(T0 + 900, 2, "temp", 99.0)])
    await store.append([Point(T0 + 300, 1, "mode", "manual"), Point(T0 + 250, 1, "temp", 25)])
    await store.flush()

    assert await store.latest(1) == {"temp": (T0 + 500, 30.5), "mode": (T0 + 300, "manual")}
    assert await store.latest(404) == {}


async def test_downsample_aggregates_known_data(store: TimeSeriesStore) -> None:
    hour = [Point(T0 + s * 1_000, 1, "n", s) for s in range(3_600)]
    hour += [Point(T0 + s * 1_000, 1, "f", s / 2) for s in range(3_600)]
    hour += [Point(T0 + s * 1_000, 1, "state", f"s{s}") for s in range(3_600)]
    await store.append(hour)
    await store.flush()

    buckets = await store.downsample(1, "n", T0, T0 + HOUR, max_points=100)
    assert len(buckets) == 60  # 3600 s / 100 = 36 s, the next nice width is 1 min
    for b, minute in zip(buckets, range(60), strict=True):
        first = minute * 60
        assert b == Bucket(
            ts=T0 + minute * 60_000,
            count=60,
            first=first,
            last=first + 59,
            avg=first + 29.5,
            min=first,
            max=first + 59,
        )
        assert type(b.min) is int
        assert type(b.max) is int
    floats = await store.downsample(1, "f", T0, T0 + HOUR, max_points=100)
    assert floats[1].avg == pytest.approx(44.75)
    assert floats[1].max == 59.5
    text = await store.downsample(1, "state", T0, T0 + HOUR, max_points=1)
    assert [(b.count, b.first, b.last, b.avg, b.min) for b in text] == [
        (3_600, "s0", "s3599", None, None)
    ]


@pytest.mark.parametrize("max_points", [1, 2, 7, 59, 60, 61, 1_000, 5_000])
async def test_downsample_never_exceeds_max_points(store: TimeSeriesStore, max_points: int) -> None:
    start, end = T0 + 1_234, T0 + HOUR + 1_234  # not aligned to any bucket width
    await store.append([Point(T0 + s * 1_000, 3, "x", s % 7) for s in range(3_602)])
    await store.flush()

    buckets = await store.downsample(3, "x", start, end, max_points=max_points)
    assert 0 < len(buckets) <= max_points
    assert sum(b.count for b in buckets) == 3_600
    assert [b.ts for b in buckets] == sorted({b.ts for b in buckets})


async def test_downsample_merges_int_and_float_values_exactly(store: TimeSeriesStore) -> None:
    await store.append(
        [Point(T0, 1, "p", 2**62), Point(T0 + 1, 1, "p", 1.5), Point(T0 + 2, 1, "p", True)]
    )
    await store.flush()

    (bucket,) = await store.downsample(1, "p", T0, T0 + 1_000, max_points=1)
    assert (bucket.count, bucket.first, bucket.last, bucket.min, bucket.max) == (
        3,
        2**62,
        True,
        1.5,
        2**62,
    )
    assert type(bucket.max) is int


@given(
    start=st.integers(-(10**13), 10**13),
    span=st.integers(1, 10**12),
    max_points=st.integers(1, 100_000),
)
def test_bucket_width_is_the_smallest_nice_width_that_fits(
    start: int, span: int, max_points: int
) -> None:
    assume(not (max_points == 1 and start < 0 < start + span))
    width = bucket_width_ms(start, start + span, max_points)
    assert bucket_count(start, start + span, width) <= max_points
    assert width in NICE_BUCKET_WIDTHS_MS or width % NICE_BUCKET_WIDTHS_MS[-1] == 0
    smaller = [w for w in NICE_BUCKET_WIDTHS_MS if w < width]
    assert all(bucket_count(start, start + span, w) > max_points for w in smaller)


def test_one_bucket_cannot_straddle_the_epoch() -> None:
    with pytest.raises(InvalidInput):
        bucket_width_ms(-1, 1, 1)
    assert bucket_count(-1, 1, bucket_width_ms(-1, 1, 2)) == 2


async def test_fleet_latest_answers_each_device_that_has_the_property(
    store: TimeSeriesStore,
) -> None:
    now = time.time_ns() // 1_000_000
    # devices 1 and 2 report now, 3 and 4 last did long ago: live and silent devices alike
    starts = {1: now - 60_000, 2: now - 5_000, 3: T0, 4: T0 - HOUR}
    await store.append(
        [Point(starts[d] + k, d, "temp", d * 1.5 + k) for d in (1, 2, 3, 4) for k in range(3)]
    )
    await store.append([Point(now, 5, "speed", 1), Point(now + 1, 3, "speed", 2)])
    await store.flush()

    fleet = await store.fleet_latest([1, 2, 3, 4, 5, 99], "temp")
    assert fleet == {d: (starts[d] + 2, d * 1.5 + 2) for d in (1, 2, 3, 4)}
    assert await store.fleet_latest([3], "temp") == {3: (T0 + 2, 6.5)}
    assert await store.fleet_latest([], "temp") == {}


async def test_retention_deletes_only_old_rows_of_the_given_devices(store: TimeSeriesStore) -> None:
    await store.append([Point(T0 + t, d, "v", t) for d in (1, 2, 3) for t in range(100)])
    await store.append_events(
        [EventRecord(T0 + t, d, "alarm", "alert", {}) for d in (1, 3) for t in (10, 60)]
    )
    await store.flush()

    assert await store.apply_retention([1, 2], T0 + 50) == 2 * 50 + 1
    assert await store.apply_retention([1, 2], T0 + 50) == 0
    assert await store.apply_retention([], T0 + 50) == 0
    kept = await _all_pages(store, 1, None, T0, T0 + HOUR, limit=1_000)
    assert [p.ts for p in kept] == [T0 + t for t in range(50, 100)]
    assert len(await _all_pages(store, 3, None, T0, T0 + HOUR, limit=1_000)) == 100
    assert [e.ts for e in await store.query_events(1, T0, T0 + HOUR)] == [T0 + 60]
    assert len(await store.query_events(3, T0, T0 + HOUR)) == 2


async def test_count_since_counts_points_written_since(store: TimeSeriesStore) -> None:
    before = time.time_ns() // 1_000_000
    assert await store.count_since(before) == 0
    await store.append([Point(t, 1, "v", t) for t in range(123)])  # old device timestamps
    await store.flush()

    assert await store.count_since(before) == 123
    assert await store.count_since(before + 60_000) == 0


async def test_count_points_counts_by_device_and_timestamp(store: TimeSeriesStore) -> None:
    await store.append([Point(T0 + i, 1 + i % 3, "v", i) for i in range(90)])
    await store.flush()
    assert await store.count_points([1, 2, 3], T0) == 90
    assert await store.count_points([1], T0) == 30
    assert await store.count_points([1, 2], T0 + 60) == 20
    assert await store.count_points([], T0) == 0
    assert await store.count_points([99], T0) == 0


async def test_events_round_trip_newest_first(store: TimeSeriesStore) -> None:
    events = [
        EventRecord(T0 + i, 4, f"e{i}", "info", {"n": i, "detail": {"x": [1.5]}}) for i in range(5)
    ]
    await store.append_events(events)
    await store.flush()

    assert await store.query_events(4, T0, T0 + 4, limit=3) == events[3::-1][:3]
    assert await store.query_events(4, T0, T0 + HOUR) == events[::-1]
    assert await store.query_events(5, T0, T0 + HOUR) == []


REOPENABLE = sorted(name for name, make in BACKENDS.items() if make(Path(".")).reopenable)


@pytest.mark.parametrize("name", REOPENABLE)
async def test_close_flushes_and_the_data_survives_a_reopen(name: str, tmp_path: Path) -> None:
    backend = BACKENDS[name](tmp_path)
    first = await backend.make(flush_interval_s=3_600)
    await first.append([Point(T0 + i, 1, "v", i) for i in range(10)])
    await first.append_events([EventRecord(T0, 1, "boot", "info", {"v": 1})])
    await first.close()

    second = await backend.make()
    try:
        page = await second.query_raw(1, "v", T0, T0 + HOUR)
        assert [p.value for p in page.points] == list(range(10))
        assert len(await second.query_events(1, T0, T0 + HOUR)) == 1
    finally:
        await second.close()


async def test_points_are_written_by_age_without_a_flush(backend: Backend) -> None:
    store = await backend.make(flush_points=1_000_000, flush_interval_s=0.05)
    try:
        await store.append([Point(T0 + i, 1, "v", i) for i in range(10)])

        async def visible() -> bool:
            return len((await store.query_raw(1, "v", T0, T0 + HOUR)).points) == 10

        await _wait_for(visible)
    finally:
        await store.close()


async def test_points_are_written_by_size_without_a_flush(backend: Backend) -> None:
    store = await backend.make(flush_points=100, flush_interval_s=3_600)
    try:
        await store.append([Point(T0 + i, 1, "v", i) for i in range(150)])

        async def visible() -> bool:
            return len((await store.query_raw(1, "v", T0, T0 + HOUR)).points) == 150

        await _wait_for(visible)
    finally:
        await store.close()


async def test_a_value_that_cannot_be_stored_is_reported_and_its_batch_kept(
    store: TimeSeriesStore,
) -> None:
    unstorable = object()
    await store.append([Point(T0, 1, "v", 1), Point(T0 + 1, 1, "v", unstorable)])  # type: ignore[arg-type]
    await store.append([Point(T0 + 2, 1, "v", 2)])
    with pytest.raises(TimeSeriesStoreError):
        await store.flush()
    await store.flush()  # reported once
    page = await store.query_raw(1, "v", T0, T0 + HOUR)
    assert [(p.ts, p.value) for p in page.points] == [(T0, 1), (T0 + 2, 2)]


async def test_a_closed_store_refuses_work(backend: Backend) -> None:
    store = await backend.make()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        await store.append([Point(T0, 1, "v", 1)])
    with pytest.raises(StoreClosedError):
        await store.latest(1)
