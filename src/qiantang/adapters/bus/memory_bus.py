"""The embedded telemetry bus: in-process fan-out with a bounded buffer per subscription.

Publishing appends a reference to the batch to each subscription's deque (no copy, no task
switch), so its cost grows with the number of subscriptions, not with the batch size.
"""

from __future__ import annotations

import asyncio
from collections import deque

from qiantang.domain.errors import FieldError, InvalidInput
from qiantang.ports.bus import BusBatch, BusClosed

__all__ = ["InMemoryBus", "InMemorySubscription"]


class InMemorySubscription:
    """A bounded buffer of batches; the oldest is dropped when a new one does not fit."""

    def __init__(self, bus: InMemoryBus, name: str, capacity: int) -> None:
        self.name = name
        self._bus = bus
        self._buffer: deque[BusBatch] = deque()
        self._capacity = capacity
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._dropped_batches = 0
        self._dropped_points = 0

    @property
    def dropped_batches(self) -> int:
        """Batches dropped because the buffer was full."""
        return self._dropped_batches

    @property
    def dropped_points(self) -> int:
        """Items in the dropped batches."""
        return self._dropped_points

    @property
    def pending(self) -> int:
        """Batches buffered and not read yet."""
        return len(self._buffer)

    def offer(self, batch: BusBatch) -> None:
        """Buffer `batch`, dropping the oldest one if full; wake a waiting reader."""
        if self._closed:
            return
        if len(self._buffer) >= self._capacity:
            oldest = self._buffer.popleft()
            self._dropped_batches += 1
            self._dropped_points += oldest.size()
        self._buffer.append(batch)
        self._wake()

    async def get(self) -> BusBatch:
        """The next batch; waits for one. Raises `BusClosed` once closed and drained."""
        while not self._buffer:
            if self._closed:
                raise BusClosed(f"subscription {self.name!r} is closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()

    def get_nowait(self) -> BusBatch | None:
        """The next buffered batch, or ``None``."""
        return self._buffer.popleft() if self._buffer else None

    def close(self) -> None:
        """Stop receiving; a waiting `get` raises `BusClosed` after the buffer drains."""
        if not self._closed:
            self._closed = True
            self._bus.forget(self)
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class InMemoryBus:
    """The `TelemetryBus` of the embedded deployment."""

    def __init__(self) -> None:
        self._subscriptions: list[InMemorySubscription] = []

    def publish(self, batch: BusBatch) -> None:
        """Hand `batch` to every open subscription."""
        for subscription in self._subscriptions:
            subscription.offer(batch)

    def subscribe(self, name: str, capacity: int = 1024) -> InMemorySubscription:
        """Open a subscription buffering at most `capacity` batches."""
        if capacity < 1:
            rule = FieldError("capacity", "min", "a subscription buffers at least 1 batch")
            raise InvalidInput(rule)
        subscription = InMemorySubscription(self, name, capacity)
        self._subscriptions = [*self._subscriptions, subscription]
        return subscription

    def subscriptions(self) -> list[InMemorySubscription]:
        """The open subscriptions."""
        return list(self._subscriptions)

    def forget(self, subscription: InMemorySubscription) -> None:
        """Drop a closed subscription (called by `InMemorySubscription.close`)."""
        self._subscriptions = [s for s in self._subscriptions if s is not subscription]

    def close(self) -> None:
        """Close every subscription."""
        for subscription in list(self._subscriptions):
            subscription.close()
