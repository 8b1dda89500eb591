"""The telemetry bus port: what the data path accepted, fanned out to the platform's consumers.

`IngestCore` publishes every batch it hands to the store (points and events that passed the
thing model) and `DeviceStates` publishes every online/offline change. Consumers - the rule
engine, the live WebSocket feed, indicators - each hold a `Subscription` of their own.

Shared semantics, which every adapter honours and `tests/contract/test_bus_contract.py` checks:

- `publish` never blocks and never fails because a consumer is slow: each subscription has a
  bounded buffer of batches, and when it is full the *oldest* batch is dropped and counted in
  `Subscription.dropped_batches` / `dropped_points`. A consumer that must not lose data keeps
  up or sizes its buffer; the store does not depend on the bus (it is written first).
- Batches reach every subscription in publish order; a subscription sees only what was
  published after it was opened.
- Batches are shared, read-only: a consumer must not mutate the lists it receives.
- `publish` is called from the event loop that consumers await on (the embedded adapter is
  not thread-safe; a scale-out adapter may relax that).
- `close()` on a subscription, or on the bus, makes a waiting `get()` raise `BusClosed` once the
  buffered batches are drained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

from qiantang.domain.errors import QiantangError
from qiantang.domain.telemetry import EventRecord, Point

__all__ = ["BusBatch", "BusClosed", "StateChange", "Subscription", "TelemetryBus"]


class BusClosed(QiantangError):
    """The subscription (or the whole bus) was closed and nothing is left to read."""


class StateChange(msgspec.Struct, frozen=True):
    """A device went online or offline at `ts` (ms)."""

    ts: int
    device_id: int
    online: bool


class BusBatch(msgspec.Struct, frozen=True):
    """One published batch: accepted points and events, and connection changes."""

    points: Sequence[Point] = ()
    events: Sequence[EventRecord] = ()
    states: Sequence[StateChange] = ()

    def size(self) -> int:
        """How many items the batch carries (what a drop counts)."""
        return len(self.points) + len(self.events) + len(self.states)


@runtime_checkable
class Subscription(Protocol):
    """One consumer's view of the bus."""

    name: str

    @property
    def dropped_batches(self) -> int:
        """Batches dropped because this subscription's buffer was full."""
        ...

    @property
    def dropped_points(self) -> int:
        """Items (points, events, state changes) in the dropped batches."""
        ...

    @property
    def pending(self) -> int:
        """Batches buffered and not read yet."""
        ...

    async def get(self) -> BusBatch:
        """The next batch; waits for one. Raises `BusClosed` once closed and drained."""
        ...

    def get_nowait(self) -> BusBatch | None:
        """The next buffered batch, or ``None`` when the buffer is empty."""
        ...

    def close(self) -> None:
        """Stop receiving; the bus forgets this subscription."""
        ...


@runtime_checkable
class TelemetryBus(Protocol):
    """Fan-out of accepted data to the platform's consumers."""

    def publish(self, batch: BusBatch) -> None:
        """Hand `batch` to every open subscription (never blocks)."""
        ...

    def subscribe(self, name: str, capacity: int = 1024) -> Subscription:
        """Open a subscription buffering at most `capacity` batches (oldest dropped first)."""
        ...

    def subscriptions(self) -> Sequence[Subscription]:
        """The open subscriptions (for health and metrics)."""
        ...

    def close(self) -> None:
        """Close every subscription."""
        ...
