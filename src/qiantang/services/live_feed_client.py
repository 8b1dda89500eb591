"""One live-feed client's outbox: a bounded queue of encoded frames that samples when full.

Back-pressure, in three steps, so a slow client never grows the server's memory without bound:

1. Frames wait in a queue of at most `LiveLimits.queue_frames`.
2. When it is full the client is *sampled*: new telemetry is merged into the latest value per
   (device, property) and state changes into the latest state per device; events and alarms
   are counted as dropped. When the client has read its queue it gets a ``lag`` frame
   (``{"type": "lag", "sampled": n, "dropped": m}``) and then the latest values.
3. A client that stays sampled for `LiveLimits.stall_s`, or whose samples would exceed
   `LiveLimits.sample_keys`, is dropped with a reason (the WebSocket closes with code 4008).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson

from qiantang.domain.errors import QiantangError
from qiantang.domain.telemetry import Value
from qiantang.services.live_feed_scope import DeviceInfo, LiveScope, Sight

__all__ = ["ClientDropped", "ClientStats", "LiveClient", "LiveLimits"]


class ClientDropped(QiantangError):
    """The feed dropped the client (too slow, or the feed closed); the message says why."""


@dataclass(frozen=True, slots=True)
class LiveLimits:
    """Back-pressure bounds of every client."""

    queue_frames: int = 1000
    sample_keys: int = 10_000
    stall_s: float = 30.0
    take_frames: int = 100


@dataclass(slots=True)
class ClientStats:
    """What the feed did for one client (for tests, metrics and the ``lag`` frame)."""

    queued: int = 0
    pending: int = 0
    max_pending: int = 0
    sampled: int = 0
    dropped: int = 0
    sampling: bool = False
    closed_reason: str | None = None


@dataclass(slots=True)
class _Sample:
    """What a sampled client missed: latest values and states, counts."""

    since: float
    values: dict[tuple[int, str], tuple[int, Value]] = field(default_factory=dict)
    states: dict[int, str] = field(default_factory=dict)
    merged: int = 0
    dropped: int = 0

    def keys(self) -> int:
        return len(self.values) + len(self.states)


class LiveClient:
    """A subscriber of the feed: its scope, its outbox and what it may see of each product."""

    def __init__(
        self,
        scope: LiveScope,
        limits: LiveLimits,
        on_drop: Callable[[LiveClient, str], None] | None = None,
    ) -> None:
        self.scope = scope
        self._limits = limits
        self._queue: deque[str] = deque()
        self._sample: _Sample | None = None
        self._sights: dict[int, Sight | None] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._on_drop = on_drop
        self._stats = ClientStats()

    # --- what the client sees --------------------------------------------------------------
    def sight(self, info: DeviceInfo) -> Sight | None:
        """What the client may see of the device's product (memoised per product)."""
        if info.product_id not in self._sights:
            self._sights[info.product_id] = self.scope.visibility.sight(info)
        return self._sights[info.product_id]

    def rescope(self, scope: LiveScope, *, reset: bool) -> None:
        """Switch to `scope` (the feed re-indexes the client); `reset` forgets what was queued
        or sampled for the old scope."""
        self.scope = scope
        self._sights.clear()
        if reset:
            self._queue.clear()
            self._sample = None

    def wants(self, stream: str) -> bool:
        """Whether the client asked for this kind of frame."""
        return stream in self.scope.streams

    @property
    def closed(self) -> bool:
        """Dropped or closed; nothing more will be queued."""
        return self._stats.closed_reason is not None

    def stats(self) -> ClientStats:
        """A copy of the counters, `pending` and `sampling` up to date."""
        s = self._stats
        return ClientStats(
            s.queued,
            len(self._queue),
            s.max_pending,
            s.sampled + (self._sample.merged if self._sample else 0),
            s.dropped + (self._sample.dropped if self._sample else 0),
            self._sample is not None,
            s.closed_reason,
        )

    # --- the feed's side -------------------------------------------------------------------
    def offer_telemetry(
        self, device_id: int, ts: int, values: Mapping[str, Value], text: str
    ) -> None:
        """Queue a telemetry frame, or merge its values into the sample when full."""
        sample = self._sampling()
        if sample is None:
            self._append(text)
            return
        for prop, value in values.items():
            key = (device_id, prop)
            if key in sample.values:
                sample.merged += 1
            sample.values[key] = (ts, value)
        self._check(sample)

    def offer_state(self, device_id: int, text: str) -> None:
        """Queue a state frame, or keep it as the device's latest state when full."""
        sample = self._sampling()
        if sample is None:
            self._append(text)
            return
        if device_id in sample.states:
            sample.merged += 1
        sample.states[device_id] = text
        self._check(sample)

    def offer_other(self, text: str) -> None:
        """Queue an event or alarm frame, or count it as dropped when full."""
        sample = self._sampling()
        if sample is None:
            self._append(text)
            return
        sample.dropped += 1
        self._check(sample)

    def drop(self, reason: str) -> None:
        """Stop the client: free what it holds and wake its reader with `reason`."""
        if self.closed:
            return
        self._stats.closed_reason = reason
        self._queue.clear()
        self._sample = None
        self._wake()
        if self._on_drop is not None:
            self._on_drop(self, reason)

    def _sampling(self) -> _Sample | None:
        if self.closed:
            return _Sample(0.0)  # a scratch sample: frames for a closed client go nowhere
        if self._sample is None and len(self._queue) >= self._limits.queue_frames:
            self._sample = _Sample(time.monotonic())
        return self._sample

    def _append(self, text: str) -> None:
        self._queue.append(text)
        self._stats.queued += 1
        self._stats.max_pending = max(self._stats.max_pending, len(self._queue))
        self._wake()

    def _check(self, sample: _Sample) -> None:
        if self.closed:
            return
        if sample.keys() > self._limits.sample_keys:
            self.drop(f"too slow: more than {self._limits.sample_keys} values behind")
        elif time.monotonic() - sample.since > self._limits.stall_s:
            self.drop(f"too slow: behind for more than {self._limits.stall_s:g} s")

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- the sender's side -----------------------------------------------------------------
    async def take(self) -> list[str]:
        """The next frames to send (waits for some). Raises `ClientDropped` once dropped."""
        while not self._queue and self._sample is None and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.closed:
            raise ClientDropped(self._stats.closed_reason or "closed")
        if self._queue:
            n = min(len(self._queue), self._limits.take_frames)
            return [self._queue.popleft() for _ in range(n)]
        return self._flush_sample()

    def _flush_sample(self) -> list[str]:
        sample, self._sample = self._sample, None
        if sample is None:
            return []
        self._stats.sampled += sample.merged
        self._stats.dropped += sample.dropped
        notice = {"type": "lag", "sampled": sample.merged, "dropped": sample.dropped}
        frames = [orjson.dumps(notice).decode()]
        grouped: dict[tuple[int, int], dict[str, Value]] = {}
        for (device_id, prop), (ts, value) in sample.values.items():
            grouped.setdefault((device_id, ts), {})[prop] = value
        for (device_id, ts), values in grouped.items():
            frame = {"type": "telemetry", "device_id": device_id, "ts": ts, "values": values}
            frames.append(orjson.dumps(frame).decode())
        frames.extend(sample.states.values())
        return frames
