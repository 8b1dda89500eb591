"""No point stored twice in the DuckDB store, without an index.

Delivery is at least once (a gateway resends what it saw no reply for), so a point may come
again: a point equal to a stored one in device, property, ts **and value** is not stored
again. Every resend is such a copy, so a gateway's data ends with one row per (device,
property, ts). Two *different* values at one (device, property, ts) are both kept: the
platform stamps a reading that carries no time with the millisecond it arrived, and two
messages of one device can arrive within a millisecond (`tests/integration/
test_durability.py` sends them so); dropping either would lose an acknowledged reading.

`insert_new_points` inserts a batch with one statement that drops the batch's own copies
(``DISTINCT``, left out when a cheap check finds no (device, property, ts) twice in the
batch, the usual case) and anti-joins the rest against the stored rows of the batch's
timestamp ranges. The stored side is read only within those ranges: the batch's distinct
timestamps are cut at their largest gaps (wider than `MIN_CUT_GAP_MS`) into at most
`MAX_TS_RANGES` ranges, so a batch that mixes live data with an old backlog reads two short
stretches, not everything between them, and DuckDB skips every row group whose ``ts`` zone
map misses them. The check is exact (every stored row in those ranges takes part), and it
is race-free because one writer thread runs every insert.

Why no unique index: with one, ``INSERT OR IGNORE`` appended 0.54 M rows/s where a plain
insert did 3.0 M and this anti-join 2.1 M (same data, one run; see docs/performance.md),
and an index would grow with the table in memory.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

__all__ = ["MAX_TS_RANGES", "MIN_CUT_GAP_MS", "insert_new_points", "new_points_insert", "ts_ranges"]

#: Most timestamp ranges one batch's anti-join reads (see `new_points_insert`).
MAX_TS_RANGES = 8
# {batch} is the batch itself when its keys are distinct, else its distinct rows.
_INSERT_NEW = """INSERT INTO telemetry
    SELECT b.ts, b.device_id, b.property, b.kind, b.num, b.i64, b.txt
    FROM {batch} AS b
    ANTI JOIN (SELECT * FROM telemetry WHERE {ranges}) AS t
      ON t.ts = b.ts AND t.device_id = b.device_id AND t.property = b.property
        AND t.kind = b.kind AND t.num IS NOT DISTINCT FROM b.num
        AND t.i64 IS NOT DISTINCT FROM b.i64 AND t.txt IS NOT DISTINCT FROM b.txt
    ORDER BY b.device_id"""
_DISTINCT_ROWS = "(SELECT DISTINCT * FROM _qt_points)"


def _statements(batch: str) -> tuple[str, ...]:
    # one statement per number of ranges; the ranges themselves are bound parameters
    return tuple(
        _INSERT_NEW.format(
            batch=batch,
            ranges=" OR ".join(f"(ts >= $lo{i} AND ts <= $hi{i})" for i in range(n)),
        )
        for n in range(1, MAX_TS_RANGES + 1)
    )


_INSERT_AS_IS_BY_RANGES = _statements("_qt_points")
_INSERT_DISTINCT_BY_RANGES = _statements(_DISTINCT_ROWS)
#: A gap between a batch's timestamps narrower than this does not start a new range.
MIN_CUT_GAP_MS = 10_000


def ts_ranges(ts: Any, max_ranges: int) -> list[tuple[int, int]]:
    """Closed ranges, ascending, covering every timestamp of the Arrow array `ts`: cut at
    its largest gaps, at most `max_ranges` of them (a gap up to `MIN_CUT_GAP_MS` is never
    cut)."""
    unique = pc.unique(ts)
    if len(unique) == 0:
        return []
    unique = unique.take(pc.sort_indices(unique))
    # gaps as doubles: exact enough to rank them, and no int64 overflow at the extremes
    gaps = pc.fill_null(pc.pairwise_diff(pc.cast(unique, pa.float64(), safe=False)), 0.0)
    widest = pc.select_k_unstable(gaps, max_ranges - 1, sort_keys=[("dummy", "descending")])
    cuts = sorted(i for i in widest.to_pylist() if gaps[i].as_py() > MIN_CUT_GAP_MS)
    bounds = unique.to_pylist()
    ranges, start = [], 0
    for cut in cuts:
        ranges.append((bounds[start], bounds[cut - 1]))
        start = cut
    ranges.append((bounds[start], bounds[-1]))
    return ranges


def _keys_distinct(table: Any) -> bool:
    """Whether no two rows of `table` share a key: a wrapping int64 mix of the key's
    columns has as many distinct values as rows (a collision only costs the slow path)."""
    props = pc.dictionary_encode(table.column("property")).combine_chunks().indices
    mixed = pc.multiply(table.column("ts"), 1_000_003)
    mixed = pc.add(mixed, pc.cast(table.column("device_id"), pa.int64()))
    mixed = pc.add(pc.multiply(mixed, 1_000_033), pc.cast(props, pa.int64()))
    return bool(pc.count_distinct(mixed).as_py() == table.num_rows)


def new_points_insert(table: Any) -> tuple[str, dict[str, int]] | None:
    """How to insert the `points_to_arrow` table `table` (registered as ``_qt_points``)
    without storing any point twice: the statement and its parameters; ``None`` for an
    empty table. The statement answers the number of rows inserted."""
    if table.num_rows == 0:
        return None
    ranges = ts_ranges(table.column("ts"), MAX_TS_RANGES)
    params: dict[str, int] = {}
    for i, (lo, hi) in enumerate(ranges):
        params[f"lo{i}"], params[f"hi{i}"] = lo, hi
    statements = _INSERT_AS_IS_BY_RANGES if _keys_distinct(table) else _INSERT_DISTINCT_BY_RANGES
    return statements[len(ranges) - 1], params


def insert_new_points(cursor: Any, table: Any) -> int:
    """On the DuckDB `cursor`, in its open transaction, insert the rows of the
    `points_to_arrow` table `table` whose key is not stored yet; answer how many."""
    insert = new_points_insert(table)
    if insert is None:
        return 0
    statement, params = insert
    cursor.register("_qt_points", table)
    return int(cursor.execute(statement, params).fetchall()[0][0])
