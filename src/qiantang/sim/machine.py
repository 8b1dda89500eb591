"""The shape every simulated machine shares: a seeded random source, a simulated clock, the
plant's shift calendar, and events waiting to be posted.

A model is pure: no I/O, no wall clock. `advance(dt_s)` moves its clock and its dynamics
(in sub-steps of at most `MAX_STEP_S`, so one call of an hour and 3,600 calls of a second
reach the same kind of state); `properties()` reads the values a device would post now;
`take_events()` hands over the events raised since the last call. The same seed and the same
sequence of calls give the same values, so a demo run (and a test) repeats.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["MAX_STEP_S", "ShiftCalendar", "SimEvent", "SimMachine", "clamp"]

MAX_STEP_S = 1.0
_DAY_MS = 86_400_000
_CST_OFFSET_MS = 8 * 3_600_000  # China Standard Time, UTC+8 all year


def clamp(value: float, low: float, high: float) -> float:
    """`value` limited to [low, high]."""
    return low if value < low else high if value > high else value


@dataclass(frozen=True, slots=True)
class SimEvent:
    """A thing-model event raised by a machine at simulated time `ts_ms`."""

    identifier: str
    params: dict[str, Any]
    ts_ms: int


@dataclass(frozen=True, slots=True)
class ShiftCalendar:
    """Three shifts a day (三班倒) starting at `first_hour` local time (UTC+8): the machine
    stops for `changeover_min` at each shift change and for `break_min` once per shift, at
    `break_offset_min` into the shift (operators take turns, so the offset differs between
    machines)."""

    first_hour: int = 0
    changeover_min: float = 10.0
    break_min: float = 20.0
    break_offset_min: float = 240.0

    def shift_of(self, ts_ms: int) -> tuple[int, float]:
        """(shift number since the epoch, minutes into that shift) at `ts_ms`."""
        local = ts_ms + _CST_OFFSET_MS - self.first_hour * 3_600_000
        shift, into_ms = divmod(local, _DAY_MS // 3)
        return shift, into_ms / 60_000

    def staffed(self, ts_ms: int) -> bool:
        """Whether the machine is manned at `ts_ms` (not in a changeover or a break)."""
        _, minutes = self.shift_of(ts_ms)
        if minutes < self.changeover_min:
            return False
        start = self.break_offset_min
        return not start <= minutes < start + self.break_min


class SimMachine(ABC):
    """Base of the machine models. Subclasses implement `_step` and `properties`, and list
    their writable properties in `WRITABLE` (identifier -> (low, high), or None for any)."""

    KIND: ClassVar[str] = ""
    WRITABLE: ClassVar[Mapping[str, tuple[float, float] | None]] = {}

    def __init__(self, seed: int, start_ms: int, calendar: ShiftCalendar | None = None) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (a simulation, not cryptography)
        self.now_ms = start_ms
        self.calendar = calendar or ShiftCalendar(break_offset_min=self.rng.uniform(120.0, 420.0))
        self._events: list[SimEvent] = []

    # --- the clock ---------------------------------------------------------------------------
    def advance(self, dt_s: float) -> None:
        """Move the simulated clock by `dt_s` seconds, stepping the dynamics."""
        remaining = max(0.0, dt_s)
        while remaining > 1e-9:
            step = min(MAX_STEP_S, remaining)
            self.now_ms += round(step * 1000)
            self._step(step)
            remaining -= step

    @property
    def staffed(self) -> bool:
        """Whether the shift calendar has the machine manned now."""
        return self.calendar.staffed(self.now_ms)

    @abstractmethod
    def _step(self, dt_s: float) -> None:
        """Advance the dynamics by `dt_s` (at most `MAX_STEP_S`); `now_ms` is already moved."""

    # --- what a device posts -----------------------------------------------------------------
    @abstractmethod
    def properties(self) -> dict[str, Any]:
        """The property values a device posts now (thing-model identifiers and types)."""

    def emit(self, identifier: str, **params: Any) -> None:
        """Queue an event at the current simulated time."""
        self._events.append(SimEvent(identifier, params, self.now_ms))

    def take_events(self) -> list[SimEvent]:
        """The events raised since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    # --- what a device is told ---------------------------------------------------------------
    def set_properties(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a property set; returns what was taken (unknown or out-of-range values are
        left out, as a real controller ignores them)."""
        taken: dict[str, Any] = {}
        for key, value in params.items():
            if key not in self.WRITABLE or isinstance(value, dict | list):
                continue
            bounds = self.WRITABLE[key]
            if bounds is not None and not (
                isinstance(value, int | float) and bounds[0] <= value <= bounds[1]
            ):
                continue
            setattr(self, _attribute(key), value)
            taken[key] = value
        return taken

    def call_service(self, identifier: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Run a thing-model service; None when the machine has no such service."""
        return None


def _attribute(identifier: str) -> str:
    """`feedOverride` -> `feed_override`: the model attribute behind a writable property."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in identifier)
