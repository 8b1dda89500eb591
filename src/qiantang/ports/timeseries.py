"""The time-series store port: where telemetry points and device events are kept and read.

Every method that touches storage is a coroutine; an adapter must never block the event loop
(the DuckDB adapter runs all database work on its own threads).

Shared semantics, which every adapter honours and `tests/contract/test_timeseries_contract.py`
checks:

- Time ranges are half-open: ``start_ms <= ts < end_ms``, int64 milliseconds since the epoch.
- Writes are buffered. ``append`` / ``append_events`` return once the data is queued; an
  adapter writes a batch when it reaches its size threshold or its age threshold, on
  ``flush()`` and on ``close()``. Reads see written (flushed) data only: call ``flush()``
  first for read-your-writes. Whatever is queued and not yet written is lost if the process
  dies - each adapter documents the size of that window.
- No point is stored twice. Delivery is at least once (a gateway resends a message whose
  reply it lost), so a point may arrive again: a point equal to a stored (or queued) one in
  device, property, ts **and value** is not stored again, so resent data ends with one row
  per ``(device_id, property, ts)``. Two different values at one ``(device_id, property,
  ts)`` are both kept: neither is a copy (a device may send two readings within a
  millisecond, and the platform stamps untimed readings with the millisecond they arrived),
  and an acknowledged reading must not be lost. ``count_since`` counts the points stored.
  (Events are kept as they come.)
- Values round-trip exactly: an int comes back an int (all of int64), a float the same
  float, a bool a bool, text text, a dict or list an equal dict or list.
- ``query_raw`` pages with an opaque keyset cursor (not an offset): rows come ordered by
  ``(ts, property)``, ties broken deterministically by the adapter, and following
  ``next_cursor`` until it is ``None`` yields every stored row of the range exactly once.
- ``downsample`` picks a "nice" bucket width (see `bucket_width_ms`) so the range holds at
  most ``max_points`` buckets; buckets start at multiples of the width since the epoch (UTC).

The pure helpers here (bucket widths, the cursor format, argument checks) are shared by the
adapters so that they answer identically.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import msgspec

from qiantang.domain.errors import InvalidInput, QiantangError
from qiantang.domain.telemetry import EventRecord, Point, Value

__all__ = [
    "MAX_BUCKETS",
    "MAX_PAGE_LIMIT",
    "NICE_BUCKET_WIDTHS_MS",
    "Bucket",
    "Page",
    "RawCursor",
    "Sample",
    "StoreClosedError",
    "TimeSeriesStore",
    "TimeSeriesStoreError",
    "bucket_count",
    "bucket_width_ms",
    "check_limit",
    "check_range",
]

_SECOND = 1_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

#: Bucket widths `downsample` chooses from, smallest first; past the last, whole days.
NICE_BUCKET_WIDTHS_MS: tuple[int, ...] = (
    _SECOND,
    5 * _SECOND,
    10 * _SECOND,
    30 * _SECOND,
    _MINUTE,
    5 * _MINUTE,
    10 * _MINUTE,
    15 * _MINUTE,
    30 * _MINUTE,
    _HOUR,
    3 * _HOUR,
    6 * _HOUR,
    12 * _HOUR,
    _DAY,
    7 * _DAY,
)
#: Largest page `query_raw` and `query_events` return.
MAX_PAGE_LIMIT = 10_000
#: Largest `max_points` `downsample` accepts.
MAX_BUCKETS = 100_000


class TimeSeriesStoreError(QiantangError):
    """The store could not do what was asked (the database failed, a write was dropped)."""


class StoreClosedError(TimeSeriesStoreError):
    """The store was used after `close()`."""


class Sample(NamedTuple):
    """One timestamped value: what `latest` and `fleet_latest` answer, unpackable as
    ``ts, value = sample``."""

    ts: int
    value: Value


class Page(msgspec.Struct, frozen=True):
    """One page of raw points; pass `next_cursor` back for the next page (``None``: done)."""

    points: list[Point]
    next_cursor: str | None


class Bucket(msgspec.Struct, frozen=True):
    """Aggregates of one property over one time bucket ``[ts, ts + width)``.

    `first` and `last` are the values with the smallest and largest timestamp, of any kind.
    `avg`, `min` and `max` cover the numeric (int and float) values only and are ``None``
    where the bucket holds none; `min`/`max` keep an int an int.
    """

    ts: int
    count: int
    first: Value
    last: Value
    avg: float | None = None
    min: int | float | None = None
    max: int | float | None = None


class RawCursor(msgspec.Struct, array_like=True, frozen=True):
    """Where a `query_raw` page ended: the last ``(ts, property)`` returned and how many rows
    with exactly that key were already returned. Serialised as an opaque URL-safe string."""

    ts: int
    property: str
    skip: int

    def encode(self) -> str:
        """The opaque URL-safe form handed to clients."""
        return base64.urlsafe_b64encode(msgspec.json.encode(self)).decode("ascii").rstrip("=")

    @classmethod
    def following(cls, page: Sequence[Point], previous: RawCursor) -> RawCursor:
        """The cursor after a non-empty `page` fetched at `previous`: its last key, and how
        many rows with that key were returned so far (more than this page's when the key
        began on an earlier page)."""
        last = page[-1]
        same = 0
        for point in reversed(page):
            if point.ts != last.ts or point.property != last.property:
                break
            same += 1
        if same == len(page) and (previous.ts, previous.property) == (last.ts, last.property):
            same += previous.skip
        return cls(last.ts, last.property, same)

    @classmethod
    def decode(cls, text: str) -> RawCursor:
        """Parse a cursor made by `encode`; anything else is `InvalidInput` on ``cursor``."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            cursor = msgspec.json.decode(raw, type=cls)
        except (binascii.Error, ValueError, msgspec.DecodeError) as err:
            raise InvalidInput.of(
                "cursor", "invalid_cursor", "not a cursor this store made"
            ) from err
        if cursor.skip < 0:
            raise InvalidInput.of("cursor", "invalid_cursor", "not a cursor this store made")
        return cursor


def check_range(start_ms: int, end_ms: int) -> None:
    """Reject an empty or inverted half-open range."""
    if end_ms <= start_ms:
        raise InvalidInput.of("end_ms", "end_after_start", "end_ms must be greater than start_ms")


def check_limit(limit: int, field: str = "limit", maximum: int = MAX_PAGE_LIMIT) -> None:
    """Reject a page size outside ``1..maximum``."""
    if not 1 <= limit <= maximum:
        raise InvalidInput.of(field, "in_range", f"{field} must be between 1 and {maximum}")


def bucket_count(start_ms: int, end_ms: int, width_ms: int) -> int:
    """How many epoch-aligned buckets of `width_ms` the range ``[start_ms, end_ms)`` touches."""
    return (end_ms - 1) // width_ms - start_ms // width_ms + 1


def bucket_width_ms(start_ms: int, end_ms: int, max_points: int) -> int:
    """The smallest nice width whose epoch-aligned buckets cover ``[start_ms, end_ms)`` in at
    most `max_points` buckets: one of `NICE_BUCKET_WIDTHS_MS`, or past those 7 days doubled
    as often as needed.

    The epoch is a bucket boundary for every width, so a range across it needs at least two
    buckets: with ``max_points=1`` such a range is `InvalidInput`.
    """
    check_range(start_ms, end_ms)
    check_limit(max_points, "max_points", MAX_BUCKETS)
    if max_points == 1 and start_ms < 0 <= end_ms - 1:
        raise InvalidInput.of(
            "max_points", "min_2_across_epoch", "a range across the epoch needs max_points >= 2"
        )
    for width in NICE_BUCKET_WIDTHS_MS:
        if bucket_count(start_ms, end_ms, width) <= max_points:
            return width
    width = NICE_BUCKET_WIDTHS_MS[-1]
    while bucket_count(start_ms, end_ms, width) > max_points:
        width *= 2  # ends: once width > |start_ms| and |end_ms|, one bucket holds the range
    return width


@runtime_checkable
class TimeSeriesStore(Protocol):
    """Telemetry points and device events, written in batches and read by device and time."""

    async def append(self, points: Sequence[Point]) -> None:
        """Queue points for writing; may wait when the adapter's queue is full."""
        ...

    async def append_events(self, events: Sequence[EventRecord]) -> None:
        """Queue device events for writing, like `append`."""
        ...

    async def flush(self) -> None:
        """Write everything queued so far; raise `TimeSeriesStoreError` if a write failed
        since the last flush."""
        ...

    async def close(self) -> None:
        """Flush, then release the store; idempotent. Later calls raise `StoreClosedError`."""
        ...

    async def query_raw(
        self,
        device_id: int,
        property: str | None,
        start_ms: int,
        end_ms: int,
        *,
        limit: int = 1_000,
        cursor: str | None = None,
    ) -> Page:
        """Raw points of one device (one property, or all when `property` is ``None``),
        ordered by ``(ts, property)``, at most `limit` per page."""
        ...

    async def latest(self, device_id: int) -> dict[str, Sample]:
        """The latest value of every property of a device (``{}`` if it has none)."""
        ...

    async def downsample(
        self, device_id: int, property: str, start_ms: int, end_ms: int, max_points: int
    ) -> list[Bucket]:
        """At most `max_points` non-empty buckets of one property, oldest first, the width
        chosen by `bucket_width_ms`."""
        ...

    async def fleet_latest(self, device_ids: Sequence[int], property: str) -> dict[int, Sample]:
        """One property's latest value for each of `device_ids` that has one."""
        ...

    async def apply_retention(self, device_ids: Sequence[int], before_ms: int) -> int:
        """Delete the points and events of `device_ids` older than `before_ms` (one
        enterprise's retention); answer how many rows (points plus events) went."""
        ...

    async def count_since(self, since_ms: int) -> int:
        """How many points were written since `since_ms` (wall-clock write time, not the
        points' own timestamps); cheap enough for a live "points today" indicator."""
        ...

    async def count_points(self, device_ids: Sequence[int], since_ms: int) -> int:
        """How many points of these devices carry a timestamp at or after `since_ms`
        (for per-platform "points today" indicators)."""
        ...

    async def query_events(
        self, device_id: int, start_ms: int, end_ms: int, limit: int = 100
    ) -> list[EventRecord]:
        """The `limit` most recent events of a device in the range, newest first."""
        ...
