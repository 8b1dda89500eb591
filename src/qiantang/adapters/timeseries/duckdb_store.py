"""The embedded time-series store: DuckDB in the process, one file (or memory).

Threading. DuckDB calls block, so none runs on the event loop:

- one **writer thread** (``qiantang-duckdb-writer``) owns a cursor and does every write:
  it takes the queued points and events, encodes them as Arrow columns and inserts them in
  one transaction, then runs queued write jobs (flush markers, retention deletes) in order;
- a **query pool** (``qiantang-duckdb-query-N``, `query_threads` threads) runs reads, each
  thread borrowing its own cursor (a DuckDB connection is not thread-safe, so each cursor
  is used by one thread at a time; cursors of one database see each other's commits).

A coroutine hands its work to one of those threads and awaits a future, so the loop only
ever waits. DuckDB parallelises each query internally on its own native threads.

Batching and the loss window. ``append`` puts points on an in-memory queue and returns. The
writer writes when the queue holds `flush_points` points, when its oldest entry is
`flush_interval_s` old, on ``flush()`` and on ``close()``. A write commits to DuckDB's
write-ahead log, so a file-backed store keeps every written batch across a crash. What is
queued and not yet written - normally at most `flush_points` points or `flush_interval_s`
of traffic, and never more than `max_pending_points` because ``append`` then waits for a
flush - is lost if the process dies. An in-memory store loses everything when the process
ends. Reads see written data only. A point equal to a stored one (device, property, ts
and value) is not written again (`duckdb_dedup`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb

from qiantang.adapters.timeseries import duckdb_dedup as dedup
from qiantang.adapters.timeseries import duckdb_sql as sql
from qiantang.domain.telemetry import EventRecord, Point
from qiantang.ports.timeseries import (
    Bucket,
    Page,
    RawCursor,
    Sample,
    StoreClosedError,
    TimeSeriesStoreError,
    bucket_width_ms,
    check_limit,
    check_range,
)

__all__ = ["DuckDBTimeSeriesStore"]

logger = logging.getLogger(__name__)

Cursor = duckdb.DuckDBPyConnection
Job = Callable[[Cursor], Any]


class _Writer:
    """The write queue and the thread that drains it into DuckDB."""

    def __init__(self, cursor: Cursor, flush_points: int, flush_interval_s: float) -> None:
        self._cursor = cursor
        self._flush_points = flush_points
        self._interval = flush_interval_s
        self._cond = threading.Condition()
        self._points: list[Point] = []
        self._events: list[EventRecord] = []
        self._jobs: list[tuple[Job, Future[Any]]] = []
        self._oldest: float | None = None  # monotonic time the queue became non-empty
        self._closing = False
        self._failure: TimeSeriesStoreError | None = None
        self._thread = threading.Thread(
            target=self._run, name="qiantang-duckdb-writer", daemon=True
        )
        self._thread.start()

    def put(self, points: Sequence[Point] = (), events: Sequence[EventRecord] = ()) -> int:
        """Queue points and events; answer how many points are now queued."""
        with self._cond:
            if self._closing:
                raise StoreClosedError("the time-series store is closed")
            if self._oldest is None and (points or events):
                self._oldest = time.monotonic()
                self._cond.notify()
            self._points.extend(points)
            self._events.extend(events)
            if len(self._points) + len(self._events) >= self._flush_points:
                self._cond.notify()
            return len(self._points)

    def submit(self, job: Job) -> Future[Any]:
        """Run `job` on the writer thread after everything queued before it is written."""
        future: Future[Any] = Future()
        with self._cond:
            if self._closing:
                raise StoreClosedError("the time-series store is closed")
            self._jobs.append((job, future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        """Write what is queued, then end the thread (blocks; call from a worker thread)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def report_failure(self, _cursor: Cursor) -> None:
        """A job that raises the failure of a write since the last report, if any."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _due(self) -> bool:
        queued = len(self._points) + len(self._events)
        return self._closing or bool(self._jobs) or queued >= self._flush_points

    def _take(self) -> tuple[list[Point], list[EventRecord], list[tuple[Job, Future[Any]]], bool]:
        with self._cond:
            while not self._due():
                if self._oldest is None:
                    self._cond.wait()
                    continue
                remaining = self._oldest + self._interval - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            taken = (self._points, self._events, self._jobs, self._closing)
            self._points, self._events, self._jobs, self._oldest = [], [], [], None
            return taken

    def _run(self) -> None:
        while True:
            points, events, jobs, closing = self._take()
            if points or events:
                self._write(points, events)
            for job, future in jobs:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(job(self._cursor))
                    except BaseException as err:  # handed to the awaiting caller
                        future.set_exception(_translate(err))
            if closing:
                return

    def _write(self, points: list[Point], events: list[EventRecord]) -> None:
        cur = self._cursor
        point_table, bad_points = sql.encode_lenient(points, sql.points_to_arrow)
        event_table, bad_events = sql.encode_lenient(events, sql.events_to_arrow)
        if bad_points or bad_events:
            self._reject(bad_points + bad_events, len(bad_points), len(bad_events))
        try:
            cur.execute("BEGIN TRANSACTION")
            stored = dedup.insert_new_points(cur, point_table)
            cur.register("_qt_events", event_table)
            cur.execute(sql.INSERT_EVENTS)
            second_ms = time.time_ns() // 1_000_000_000 * 1_000
            cur.execute(sql.LOG_INGEST, {"second_ms": second_ms, "points": stored})
            cur.execute("COMMIT")
        except duckdb.Error as err:
            logger.exception("dropped a batch of %s points and %s events", len(points), len(events))
            self._rollback()
            self._failure = TimeSeriesStoreError(
                f"a batch of {len(points)} points and {len(events)} events was not written: {err}"
            )
        finally:
            for view in ("_qt_points", "_qt_events"):
                self._unregister(view)

    def _reject(self, bad: list[tuple[Any, Exception]], points: int, events: int) -> None:
        item, err = bad[0]
        logger.error(
            "rejected %s points and %s events, the first %r: %s", points, events, item, err
        )
        self._failure = TimeSeriesStoreError(
            f"{points} points and {events} events could not be stored, the first because: {err}"
        )

    def _rollback(self) -> None:
        try:
            self._cursor.execute("ROLLBACK")
        except duckdb.Error:
            logger.debug("nothing to roll back")

    def _unregister(self, view: str) -> None:
        try:
            self._cursor.unregister(view)
        except duckdb.Error:
            logger.debug("view %s was not registered", view)


def _translate(err: BaseException) -> BaseException:
    if isinstance(err, duckdb.Error):
        translated = TimeSeriesStoreError(str(err))
        translated.__cause__ = err
        return translated
    return err


class DuckDBTimeSeriesStore:
    """`TimeSeriesStore` on an embedded DuckDB database: `path` is a file, or ``None`` for an
    in-memory database. See the module docstring for threads and the loss window.

    `flush_points` / `flush_interval_s`: a batch is written at this size or this age.
    `max_pending_points`: ``append`` waits for a flush beyond this many queued points.
    `query_threads`: reads that run at once. `recent_window_s`: how far back from now
    ``fleet_latest`` looks first before it scans the whole table for the devices not found.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        flush_points: int = 10_000,
        flush_interval_s: float = 0.25,
        max_pending_points: int = 200_000,
        query_threads: int = 2,
        recent_window_s: float = 3_600,
    ) -> None:
        if flush_points < 1 or flush_interval_s <= 0 or query_threads < 1:
            raise ValueError("flush_points, flush_interval_s and query_threads must be positive")
        self._max_pending = max(max_pending_points, flush_points)
        self._recent_window_ms = int(recent_window_s * 1_000)
        try:
            self._conn = duckdb.connect(":memory:" if path is None else str(path))
            for statement in sql.SCHEMA:
                self._conn.execute(statement)
            cursors = [self._conn.cursor() for _ in range(query_threads + 1)]
        except duckdb.Error as err:
            raise TimeSeriesStoreError(f"cannot open the time-series store: {err}") from err
        self._cursors: queue.SimpleQueue[Cursor] = queue.SimpleQueue()
        self._all_cursors = cursors
        for cursor in cursors[1:]:
            self._cursors.put(cursor)
        self._pool = ThreadPoolExecutor(query_threads, thread_name_prefix="qiantang-duckdb-query")
        self._writer = _Writer(cursors[0], flush_points, flush_interval_s)
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path | None = None, **options: Any) -> DuckDBTimeSeriesStore:
        """Construct the store on a worker thread (opening a file blocks)."""
        return await asyncio.to_thread(cls, path, **options)

    async def __aenter__(self) -> DuckDBTimeSeriesStore:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- writes ---------------------------------------------------------------------------

    async def append(self, points: Sequence[Point]) -> None:
        """Queue points; waits for a flush when `max_pending_points` are queued."""
        if points and self._writer.put(points=points) >= self._max_pending:
            await self.flush()

    async def append_events(self, events: Sequence[EventRecord]) -> None:
        """Queue device events; they are written with the next batch."""
        if events:
            self._writer.put(events=events)

    async def flush(self) -> None:
        """Write everything queued; raise `TimeSeriesStoreError` if a write failed since."""
        await asyncio.wrap_future(self._writer.submit(self._writer.report_failure))

    async def close(self) -> None:
        """Flush, stop the threads and close the database; idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._writer.stop()
        self._pool.shutdown(wait=True)
        for cursor in self._all_cursors:
            cursor.close()
        self._conn.close()

    async def apply_retention(self, device_ids: Sequence[int], before_ms: int) -> int:
        """Delete points and events of `device_ids` older than `before_ms`; rows deleted."""
        if not device_ids:
            return 0
        params = {"device_ids": list(device_ids), "before_ms": before_ms}

        def delete(cur: Cursor) -> int:
            deleted = 0
            for statement in (sql.DELETE_POINTS, sql.DELETE_EVENTS):
                deleted += sum(int(row[0]) for row in cur.execute(statement, params).fetchall())
            return deleted

        result: int = await asyncio.wrap_future(self._writer.submit(delete))
        return result

    # -- reads ----------------------------------------------------------------------------

    async def _read(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        if self._closed:
            raise StoreClosedError("the time-series store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._fetch, query, params)

    def _fetch(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        cursor = self._cursors.get()
        try:
            return cursor.execute(query, params).fetchall()
        except duckdb.Error as err:
            raise TimeSeriesStoreError(str(err)) from err
        finally:
            self._cursors.put(cursor)

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
        """One page of raw points ordered by ``(ts, property)``; keyset cursor paging."""
        check_range(start_ms, end_ms)
        check_limit(limit)
        after = RawCursor.decode(cursor) if cursor else RawCursor(start_ms, "", 0)
        params: dict[str, Any] = {
            "device_id": device_id,
            "start_ms": start_ms,
            "end_ms": end_ms,
            "after_ts": after.ts,
            "after_property": after.property,
            "skip": after.skip,
            "limit": limit + 1,
        }
        if property is None:
            rows = await self._read(sql.RAW_ALL_PROPERTIES, params)
        else:
            rows = await self._read(sql.RAW_ONE_PROPERTY, {**params, "property": property})
        more = len(rows) > limit
        rows = rows[:limit]
        points = [Point(ts, device_id, prop, sql.decode_value(v)) for ts, prop, v in rows]
        return Page(points, RawCursor.following(points, after).encode() if more else None)

    async def latest(self, device_id: int) -> dict[str, Sample]:
        """Latest value of every property of the device (arg_max over its rows)."""
        rows = await self._read(sql.LATEST, {"device_id": device_id})
        return dict(sql.sample_from_row(row) for row in rows)

    async def fleet_latest(self, device_ids: Sequence[int], property: str) -> dict[int, Sample]:
        """Latest value of one property for each device that has one (arg_max, recent rows
        first)."""
        if not device_ids:
            return {}
        recent_ms = time.time_ns() // 1_000_000 - self._recent_window_ms
        params = {"device_ids": list(device_ids), "property": property, "recent_ms": recent_ms}
        rows = await self._read(sql.FLEET_LATEST, params)
        return dict(sql.sample_from_row(row) for row in rows)

    async def downsample(
        self, device_id: int, property: str, start_ms: int, end_ms: int, max_points: int
    ) -> list[Bucket]:
        """Non-empty buckets of a nice width, at most `max_points`, oldest first."""
        width = bucket_width_ms(start_ms, end_ms, max_points)
        params = {
            "device_id": device_id,
            "property": property,
            "start_ms": start_ms,
            "end_ms": end_ms,
            "width": width,
        }
        rows = await self._read(sql.DOWNSAMPLE, params)
        return [sql.bucket_from_row(row) for row in rows]

    async def count_since(self, since_ms: int) -> int:
        """Points written since `since_ms` (wall clock, whole seconds: the second holding
        `since_ms` counts in full)."""
        rows = await self._read(sql.COUNT_SINCE, {"since_ms": since_ms // 1_000 * 1_000})
        return int(rows[0][0])

    async def count_points(self, device_ids: Sequence[int], since_ms: int) -> int:
        """Points of these devices timestamped at or after `since_ms`."""
        if not device_ids:
            return 0
        params = {"device_ids": list(device_ids), "since_ms": since_ms}
        rows = await self._read(sql.COUNT_POINTS, params)
        return int(rows[0][0])

    async def query_events(
        self, device_id: int, start_ms: int, end_ms: int, limit: int = 100
    ) -> list[EventRecord]:
        """The `limit` most recent events of the device in the range, newest first."""
        check_range(start_ms, end_ms)
        check_limit(limit)
        params = {"device_id": device_id, "start_ms": start_ms, "end_ms": end_ms, "limit": limit}
        rows = await self._read(sql.QUERY_EVENTS, params)
        return [sql.event_from_row(row) for row in rows]
