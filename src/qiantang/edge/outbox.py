"""The store-and-forward outbox: a durable local queue of samples in SQLite (WAL).

Contract (after thingsboard-gateway's ``put / get_pack / ack``):

- `put` commits samples before anything is sent; with ``synchronous=full`` (the default) a
  committed sample survives a power cut, with ``normal`` it survives a crash of the process.
- Reads never remove anything: `live` and `backlog` return rows in sequence order; a row
  leaves only by `ack` (the platform acknowledged it), `reject` (the platform refused it:
  it will never be accepted, so it is counted and dropped) or the bounds.
- Bounds: at most `max_samples` rows and none older than `max_age_ms` (by sample time).
  Past either bound the oldest rows go first, and every one is counted in ``dropped``.
  A dropped row that was already on its way and is acknowledged later is taken back out
  of ``dropped``, so the count is exactly the samples the platform never acknowledged.

All SQLite work runs on one worker thread, so the event loop never waits on a disk sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

import msgspec

from qiantang.edge.errors import EdgeError
from qiantang.edge.model import Raw, Sample, now_ms

__all__ = ["Outbox", "OutboxStats", "Row"]

T = TypeVar("T")
_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder()
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS samples (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    property TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_device ON samples (device, seq);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped', 0), ('rejected', 0);
"""


@dataclass(frozen=True, slots=True)
class Row:
    """A queued sample and its sequence number (the order it was taken in)."""

    seq: int
    device: str
    property: str
    ts: int
    value: Raw


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Depth (rows waiting), dropped and rejected counts (since the file was created)."""

    depth: int
    dropped: int
    rejected: int


class Outbox:
    """The queue. Open with `Outbox.open`; every method is a coroutine but `stats_now`."""

    def __init__(self, path: Path, max_samples: int, max_age_ms: int, synchronous: str) -> None:
        self.path = path
        self.max_samples = max_samples
        self.max_age_ms = max_age_ms
        self._synchronous = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._depth = 0
        self._counters = {"dropped": 0, "rejected": 0}

    @classmethod
    async def open(
        cls, path: Path, max_samples: int, max_age_ms: int, synchronous: str = "full"
    ) -> Outbox:
        """Open (creating if needed) the outbox file."""
        box = cls(path, max_samples, max_age_ms, synchronous)
        await box._run(box._open)
        return box

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        except sqlite3.Error as err:
            raise EdgeError(f"outbox {self.path}: {err}") from err

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self._synchronous == 'full' else 'NORMAL'}")
        db.executescript(_SCHEMA)
        self._depth = db.execute("SELECT count(*) FROM samples").fetchone()[0]
        self._counters.update(db.execute("SELECT name, value FROM counters").fetchall())
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        """The connection (worker thread only)."""
        assert self._db is not None, "outbox is closed"
        return self._db

    async def close(self) -> None:
        """Close the file and the worker thread."""
        if self._db is not None:
            await self._run(self.db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    def stats_now(self) -> OutboxStats:
        """The counts as last committed (no I/O)."""
        return OutboxStats(self._depth, self._counters["dropped"], self._counters["rejected"])

    # --- writing ----------------------------------------------------------------------------
    async def put(self, samples: Sequence[Sample]) -> None:
        """Commit samples (one transaction), then enforce the bounds."""
        encode = _encoder.encode
        rows = [(s.device, s.property, s.ts, encode(s.value).decode()) for s in samples]
        await self._run(lambda: self._put(rows))

    def _put(self, rows: list[tuple[str, str, int, str]]) -> None:
        db = self.db
        with _transaction(db):
            db.executemany(
                "INSERT INTO samples (device, property, ts, value) VALUES (?, ?, ?, ?)", rows
            )
            self._depth += len(rows)
            self._enforce(db)

    def _enforce(self, db: sqlite3.Connection) -> None:
        dropped = db.execute("DELETE FROM samples WHERE ts < ?", (now_ms() - self.max_age_ms,))
        over = self._depth - dropped.rowcount - self.max_samples
        count = dropped.rowcount
        if over > 0:
            cut = db.execute(
                "DELETE FROM samples WHERE seq IN (SELECT seq FROM samples ORDER BY seq LIMIT ?)",
                (over,),
            )
            count += cut.rowcount
        if count:
            self._count(db, "dropped", count)
            self._depth -= count

    def _count(self, db: sqlite3.Connection, name: str, n: int) -> None:
        db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (n, name))
        self._counters[name] += n

    async def count_dropped(self, n: int) -> None:
        """Count samples lost before they reached the outbox (its writer fell behind)."""
        await self._run(lambda: self._count(self.db, "dropped", n))

    async def expire(self) -> None:
        """Drop what has grown too old while nothing was put."""
        await self._run(lambda: self._expire())

    def _expire(self) -> None:
        with _transaction(self.db):
            self._enforce(self.db)

    async def ack(self, seqs: Sequence[int]) -> None:
        """The platform acknowledged these rows: remove them."""
        await self._run(lambda: self._remove(seqs, None))

    async def reject(self, seqs: Sequence[int]) -> None:
        """The platform refused these rows for good: remove and count them."""
        await self._run(lambda: self._remove(seqs, "rejected"))

    def _remove(self, seqs: Sequence[int], counter: str | None) -> None:
        db = self.db
        with _transaction(db):
            gone = 0
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                gone += db.execute(f"DELETE FROM samples WHERE seq IN ({marks})", chunk).rowcount  # noqa: S608
            self._depth -= gone
            if counter is not None and gone:
                self._count(db, counter, gone)
            if counter is None and gone < len(seqs):  # dropped while on the way, yet delivered
                self._count(db, "dropped", gone - len(seqs))

    # --- reading ----------------------------------------------------------------------------
    async def max_seq(self) -> int:
        """The newest sequence number (0 when empty)."""
        return await self._run(
            lambda: int(self.db.execute("SELECT coalesce(max(seq), 0) FROM samples").fetchone()[0])
        )

    async def live(self, after: int, limit: int) -> list[Row]:
        """Rows after `after`, oldest first."""
        sql = (
            "SELECT seq, device, property, ts, value FROM samples"
            " WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        return await self._run(lambda: _rows(self.db.execute(sql, (after, limit))))

    async def backlog_devices(self, upto: int) -> list[str]:
        """Devices with rows up to `upto`, in order of their oldest row."""
        sql = "SELECT device FROM samples WHERE seq <= ? GROUP BY device ORDER BY min(seq)"
        return await self._run(lambda: [r[0] for r in self.db.execute(sql, (upto,))])

    async def backlog(self, device: str, after: int, upto: int, limit: int) -> list[Row]:
        """One device's rows in ``(after, upto]``, oldest first."""
        sql = (
            "SELECT seq, device, property, ts, value FROM samples"
            " WHERE device = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
        )
        return await self._run(lambda: _rows(self.db.execute(sql, (device, after, upto, limit))))


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    return [Row(seq, dev, prop, ts, _decode(value)) for seq, dev, prop, ts, value in cursor]


def _decode(value: str) -> Raw:
    try:
        decoded: Raw = _decoder.decode(value)
    except msgspec.DecodeError:  # NaN or Infinity, written by an earlier version
        decoded = json.loads(value)
    return decoded


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN ... COMMIT, or ROLLBACK on error (the connection is in autocommit mode)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
