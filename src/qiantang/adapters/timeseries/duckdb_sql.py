"""Schema, SQL and column encoding of the DuckDB time-series store.

One narrow table holds every point; a value is spread over four columns so that every data
type of the thing model round-trips exactly and numbers stay aggregatable in SQL:

=========  ===========================================================================
``kind``   UTINYINT tag, `ValueKind`: the type, and for a bool or null the value itself
``num``    DOUBLE: float values (NaN, infinities and -0.0 included)
``i64``    BIGINT: int values (int, enum, date as ms), exact over all of int64
``txt``    VARCHAR: text values as they are; dicts, lists and ints beyond int64 as JSON
           text (msgspec; ``kind`` = JSON)
=========  ===========================================================================

A bool is ``kind`` TRUE or FALSE and a null ``kind`` NULL, with all three value columns
NULL; a column a value does not use is NULL, which DuckDB stores as little more than a
validity mask. ``num`` and ``i64`` hold only numbers, so SQL aggregates them unfiltered.
Raw reads return values bit for bit; reads through ``arg_max``/``arg_min`` over the value
row (latest values, a bucket's first and last) get -0.0 back as 0.0, which DuckDB
normalises there (the two are equal under ``==``).

Each batch is inserted ordered by device, so that a device's rows sit together within the
batch and scans for one device skip most vectors of a busy table.

The table keeps one row per ``(device_id, property, ts)``: the store inserts through
`qiantang.adapters.timeseries.duckdb_dedup`, not `INSERT_POINTS`.

Events go to their own table, the output dict as JSON text. ``ingest_log`` counts written
points per wall-clock second so that `count_since` sums a small table, not the points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]

from qiantang.domain.telemetry import EventRecord, Point, Value
from qiantang.ports.timeseries import Bucket, Sample

__all__ = [
    "COUNT_POINTS",
    "COUNT_SINCE",
    "DELETE_EVENTS",
    "DELETE_POINTS",
    "DOWNSAMPLE",
    "FLEET_LATEST",
    "INSERT_EVENTS",
    "INSERT_POINTS",
    "LATEST",
    "LOG_INGEST",
    "QUERY_EVENTS",
    "RAW_ALL_PROPERTIES",
    "RAW_ONE_PROPERTY",
    "SCHEMA",
    "ValueKind",
    "bucket_from_row",
    "decode_value",
    "encode_lenient",
    "event_from_row",
    "events_to_arrow",
    "points_to_arrow",
    "sample_from_row",
]


class ValueKind(IntEnum):
    """Which column holds a value (the ``kind`` column)."""

    NULL = 0
    FLOAT = 1
    INT = 2
    FALSE = 3
    TRUE = 4
    TEXT = 5
    JSON = 6


SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS telemetry (
        ts BIGINT NOT NULL,
        device_id INTEGER NOT NULL,
        property VARCHAR NOT NULL,
        kind UTINYINT NOT NULL,
        num DOUBLE,
        i64 BIGINT,
        txt VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        ts BIGINT NOT NULL,
        device_id INTEGER NOT NULL,
        identifier VARCHAR NOT NULL,
        event_type VARCHAR NOT NULL,
        output VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ingest_log (
        second_ms BIGINT PRIMARY KEY,
        points BIGINT NOT NULL
    )""",
)

# The Arrow batch is registered on the writer's cursor under this name for one statement.
# INSERT_POINTS appends without deduplication (the benchmark's ceiling, and the shape the
# deduplicating insert of `duckdb_dedup` builds on).
INSERT_POINTS = "INSERT INTO telemetry SELECT * FROM _qt_points ORDER BY device_id"
INSERT_EVENTS = "INSERT INTO events SELECT * FROM _qt_events"
LOG_INGEST = """INSERT INTO ingest_log VALUES ($second_ms, $points)
    ON CONFLICT (second_ms) DO UPDATE SET points = points + excluded.points"""
COUNT_SINCE = "SELECT coalesce(sum(points), 0) FROM ingest_log WHERE second_ms >= $since_ms"
COUNT_POINTS = """SELECT count(*) FROM telemetry
    WHERE ts >= $since_ms AND device_id IN (SELECT unnest($device_ids::INTEGER[]))"""

# Queries are literal strings (no formatting): every input is a bound parameter. A value is
# read back as the row (kind, num, i64, txt), which `decode_value` turns into the original.
#
# Raw pages use a keyset: rows after the cursor key (ts, property), or at it - the first
# $skip of those were returned already, and they sort first. Ties on (ts, property) are
# ordered by the value columns, so only identical rows tie and their order does not matter.
RAW_ONE_PROPERTY = """SELECT ts, property, (kind, num, i64, txt) FROM telemetry
    WHERE device_id = $device_id AND property = $property AND ts >= $start_ms AND ts < $end_ms
      AND (ts > $after_ts OR (ts = $after_ts AND property >= $after_property))
    ORDER BY ts, property, kind, num, i64, txt LIMIT $limit OFFSET $skip"""
RAW_ALL_PROPERTIES = """SELECT ts, property, (kind, num, i64, txt) FROM telemetry
    WHERE device_id = $device_id AND ts >= $start_ms AND ts < $end_ms
      AND (ts > $after_ts OR (ts = $after_ts AND property >= $after_property))
    ORDER BY ts, property, kind, num, i64, txt LIMIT $limit OFFSET $skip"""

LATEST = """SELECT property, max(ts), arg_max((kind, num, i64, txt), ts) FROM telemetry
    WHERE device_id = $device_id GROUP BY property"""
# Latest values sit at the end of a live table, so the fleet query first looks only at rows
# since $recent_ms (row groups before it are skipped by their ts zone maps), then scans
# everything for just the devices it did not find there. Either way each answer is the
# device's true latest value: one found in the window is newer than anything before it.
FLEET_LATEST = """WITH wanted AS (SELECT unnest($device_ids::INTEGER[]) AS device_id),
    recent AS (
        SELECT device_id, max(ts) AS ts, arg_max((kind, num, i64, txt), ts) AS value
        FROM telemetry
        WHERE property = $property AND ts >= $recent_ms
          AND device_id IN (SELECT device_id FROM wanted)
        GROUP BY device_id),
    missing AS (SELECT device_id FROM wanted EXCEPT SELECT device_id FROM recent)
    SELECT device_id, ts, value FROM recent
    UNION ALL
    SELECT device_id, max(ts), arg_max((kind, num, i64, txt), ts) FROM telemetry
    WHERE property = $property AND device_id IN (SELECT device_id FROM missing)
    GROUP BY device_id"""

# Bucket start: ts floored to a multiple of the width (DuckDB's % truncates toward zero,
# hence the double modulo for timestamps before the epoch).
DOWNSAMPLE = """SELECT ts - ((ts % $width) + $width) % $width AS bucket,
        count(*),
        avg(coalesce(num, i64::DOUBLE)),
        min(num), max(num), min(i64), max(i64),
        arg_min((kind, num, i64, txt), ts), arg_max((kind, num, i64, txt), ts)
    FROM telemetry
    WHERE device_id = $device_id AND property = $property AND ts >= $start_ms AND ts < $end_ms
    GROUP BY bucket ORDER BY bucket"""

QUERY_EVENTS = """SELECT ts, device_id, identifier, event_type, output FROM events
    WHERE device_id = $device_id AND ts >= $start_ms AND ts < $end_ms
    ORDER BY ts DESC, identifier, event_type, output LIMIT $limit"""

DELETE_POINTS = """DELETE FROM telemetry
    WHERE ts < $before_ms AND device_id IN (SELECT unnest($device_ids::INTEGER[]))"""
DELETE_EVENTS = """DELETE FROM events
    WHERE ts < $before_ms AND device_id IN (SELECT unnest($device_ids::INTEGER[]))"""

_KIND_OF_TYPE: dict[type, ValueKind] = {
    float: ValueKind.FLOAT,
    int: ValueKind.INT,
    bool: ValueKind.TRUE,  # told apart from FALSE by `_kinds`
    str: ValueKind.TEXT,
    type(None): ValueKind.NULL,
}
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


def _kinds(values: list[Value]) -> list[ValueKind]:
    kind_of = _KIND_OF_TYPE.get
    kinds = [kind_of(type(v), ValueKind.JSON) for v in values]
    if ValueKind.TRUE in kinds:
        true, false = ValueKind.TRUE, ValueKind.FALSE
        kinds = [
            false if k is true and v is False else k for v, k in zip(values, kinds, strict=True)
        ]
    return kinds


def _demote_wide_ints(values: list[Value], kinds: list[ValueKind]) -> None:
    """Ints beyond int64 do not fit the BIGINT column: keep them as JSON text instead."""
    for i, (v, k) in enumerate(zip(values, kinds, strict=True)):
        if k is ValueKind.INT and not _INT64_MIN <= v <= _INT64_MAX:  # type: ignore[operator]
            kinds[i] = ValueKind.JSON


def _column(values: list[Value], kinds: list[ValueKind], wanted: ValueKind) -> list[Any]:
    return [v if k is wanted else None for v, k in zip(values, kinds, strict=True)]


def _int_column(values: list[Value], kinds: list[ValueKind]) -> list[int | None]:
    return _column(values, kinds, ValueKind.INT)


def _txt_column(values: list[Value], kinds: list[ValueKind]) -> list[str | None]:
    out: list[str | None] = []
    for v, k in zip(values, kinds, strict=True):
        if k is ValueKind.TEXT:
            out.append(v)  # type: ignore[arg-type]
        elif k is ValueKind.JSON:
            out.append(_json_encoder.encode(v).decode())
        else:
            out.append(None)
    return out


def _value_columns(values: list[Value], kinds: list[ValueKind]) -> tuple[Any, Any, Any]:
    """The ``num``, ``i64`` and ``txt`` arrays; a column no value uses is all NULL."""
    n = len(values)
    present = set(kinds)
    if present == {ValueKind.FLOAT}:
        return pa.array(values, pa.float64()), pa.nulls(n, pa.int64()), pa.nulls(n, pa.string())
    num = pa.array(_column(values, kinds, ValueKind.FLOAT), pa.float64())
    integer = pa.nulls(n, pa.int64())
    if ValueKind.INT in present:
        try:
            integer = pa.array(_int_column(values, kinds), pa.int64())
        except OverflowError:
            _demote_wide_ints(values, kinds)
            present.add(ValueKind.JSON)
            integer = pa.array(_int_column(values, kinds), pa.int64())
    txt = pa.nulls(n, pa.string())
    if ValueKind.TEXT in present or ValueKind.JSON in present:
        txt = pa.array(_txt_column(values, kinds), pa.string())
    return num, integer, txt


def points_to_arrow(points: Sequence[Point]) -> Any:
    """The points as an Arrow table with the ``telemetry`` columns, built column by column
    (the common all-float batch takes a fast path with no per-value branch)."""
    values = [p.value for p in points]
    kinds = _kinds(values)
    num, integer, txt = _value_columns(values, kinds)
    return pa.table(
        {
            "ts": pa.array([p.ts for p in points], pa.int64()),
            "device_id": pa.array([p.device_id for p in points], pa.int32()),
            "property": pa.array([p.property for p in points], pa.string()),
            "kind": pa.array(kinds, pa.uint8()),
            "num": num,
            "i64": integer,
            "txt": txt,
        }
    )


def events_to_arrow(events: Sequence[EventRecord]) -> Any:
    """The events as an Arrow table with the ``events`` columns (output as JSON text)."""
    return pa.table(
        {
            "ts": pa.array([e.ts for e in events], pa.int64()),
            "device_id": pa.array([e.device_id for e in events], pa.int32()),
            "identifier": pa.array([e.identifier for e in events], pa.string()),
            "event_type": pa.array([e.event_type for e in events], pa.string()),
            "output": pa.array(
                [_json_encoder.encode(e.output).decode() for e in events], pa.string()
            ),
        }
    )


def encode_lenient(
    items: Sequence[Any], encode: Callable[[Sequence[Any]], Any]
) -> tuple[Any, list[tuple[Any, Exception]]]:
    """`encode` the items into one Arrow table; if that fails, encode them one by one to find
    the culprits. Answer the table of those that encode and each one that does not, with why
    (one bad value must not cost its whole batch)."""
    try:
        return encode(items), []
    except Exception:  # any failure here is bad data; find which items
        good: list[Any] = []
        bad: list[tuple[Any, Exception]] = []
        for item in items:
            try:
                encode([item])
            except Exception as err:
                bad.append((item, err))
            else:
                good.append(item)
        return encode(good), bad


def decode_value(stored: tuple[int, float | None, int | None, str | None]) -> Value:
    """The original value from its ``(kind, num, i64, txt)`` columns."""
    kind, num, integer, txt = stored
    if kind == ValueKind.FLOAT:
        return num
    if kind == ValueKind.INT:
        return integer
    if kind == ValueKind.TRUE or kind == ValueKind.FALSE:
        return kind == ValueKind.TRUE
    if kind == ValueKind.TEXT:
        return txt
    if kind == ValueKind.JSON and txt is not None:
        decoded: Value = _json_decoder.decode(txt)
        return decoded
    return None


def sample_from_row(row: tuple[Any, ...]) -> tuple[Any, Sample]:
    """``(key, Sample)`` from a ``LATEST`` / ``FLEET_LATEST`` row."""
    key, ts, stored = row
    return key, Sample(ts, decode_value(stored))


def _pick(a: int | float | None, b: int | float | None, choose: Any) -> int | float | None:
    if a is None:
        return b
    if b is None:
        return a
    picked: int | float = choose(a, b)
    return picked


def bucket_from_row(row: tuple[Any, ...]) -> Bucket:
    """A `Bucket` from a ``DOWNSAMPLE`` row (float and int extremes merged exactly)."""
    ts, count, avg, fmin, fmax, imin, imax, first, last = row
    return Bucket(
        ts=ts,
        count=count,
        first=decode_value(first),
        last=decode_value(last),
        avg=avg,
        min=_pick(fmin, imin, min),
        max=_pick(fmax, imax, max),
    )


def event_from_row(row: tuple[Any, ...]) -> EventRecord:
    """An `EventRecord` from a ``QUERY_EVENTS`` row."""
    ts, device_id, identifier, event_type, output = row
    return EventRecord(ts, device_id, identifier, event_type, _json_decoder.decode(output))
