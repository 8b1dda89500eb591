"""In-memory device state the embedded platform keeps: online/offline, last seen, and each
device's message log (the last N uplink messages with their outcome).

Both live in the process; a restart starts with every device offline and empty logs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DeviceStates", "LogEntry", "MessageLog", "StateRecord"]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One uplink message as the platform judged it."""

    ts: int
    topic: str
    code: int
    outcome: str
    reason: str
    size: int


class MessageLog:
    """The last `capacity` messages of each device."""

    def __init__(self, capacity: int = 100) -> None:
        self.capacity = capacity
        self._logs: dict[int, deque[LogEntry]] = {}

    def add(self, device_id: int, entry: LogEntry) -> None:
        """Record a message (the oldest falls off past capacity)."""
        log = self._logs.get(device_id)
        if log is None:
            log = self._logs[device_id] = deque(maxlen=self.capacity)
        log.append(entry)

    def entries(self, device_id: int) -> list[LogEntry]:
        """Newest first."""
        return list(reversed(self._logs.get(device_id, ())))


@dataclass(slots=True)
class StateRecord:
    """A device's connection state."""

    online: bool = False
    since_ms: int = 0
    last_seen_ms: int = 0


class DeviceStates:
    """Online/offline and last seen per device.

    `listener`, when set, is called with ``(device_id, now_ms, online)`` on every change (the
    composition root points it at the bus)."""

    def __init__(self) -> None:
        self._states: dict[int, StateRecord] = {}
        self.listener: Callable[[int, int, bool], None] | None = None

    def connected(self, device_id: int, now_ms: int, online: bool) -> bool:
        """Record a connect or disconnect; returns whether the state changed."""
        record = self._states.setdefault(device_id, StateRecord())
        changed = record.online != online
        if changed:
            record.online, record.since_ms = online, now_ms
        record.last_seen_ms = max(record.last_seen_ms, now_ms)
        if changed and self.listener is not None:
            self.listener(device_id, now_ms, online)
        return changed

    def seen(self, device_id: int, now_ms: int) -> None:
        """A message arrived from the device."""
        record = self._states.get(device_id)
        if record is None:
            record = self._states[device_id] = StateRecord()
        record.last_seen_ms = now_ms

    def get(self, device_id: int) -> StateRecord:
        """The device's state (offline and never seen if unknown)."""
        return self._states.get(device_id) or StateRecord()

    def online_ids(self) -> set[int]:
        """Devices online now."""
        return {d for d, r in self._states.items() if r.online}
