"""Evaluating one rule's condition for one device, message by message and tick by tick.

Pure and clock-agnostic: the caller passes `now` (ms). The live engine passes its own
clock; the dry run replays stored data and passes each point's timestamp, calling `tick`
at the moments `deadline` names. The outcome of each step says whether the condition
started holding (`START`), goes on holding on a breaching message (`HOLD`), stopped
(`STOP`) or nothing changed (`NONE`); the engine turns those into alarm raises, repeats
and clears.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from enum import IntEnum

from qiantang.domain.expressions import EvaluationError
from qiantang.domain.rules import ConditionSpec, compare
from qiantang.domain.telemetry import Value

__all__ = ["ConditionEvaluator", "ConditionState", "Outcome"]


class Outcome(IntEnum):
    """What one evaluation step did to the condition."""

    NONE = 0
    START = 1
    HOLD = 2
    STOP = 3


class ConditionState:
    """Per (rule, device) memory: holding or not, pending start, window, previous value."""

    __slots__ = ("active", "last_seen", "prev_ts", "prev_value", "since", "total", "window")

    def __init__(self) -> None:
        self.active = False
        self.since: int | None = None
        self.window: deque[tuple[int, float]] = deque()
        self.total = 0.0
        self.prev_ts: int | None = None
        self.prev_value = 0.0
        self.last_seen: int | None = None


def _number(value: Value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationError(f"{name} is {type(value).__name__}, not a number")
    return float(value)


def _truth(value: Value, text: str) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"{text!r} gave {type(value).__name__}, not true or false")
    return value


class ConditionEvaluator:
    """Steps one rule's condition; one instance per rule, one `ConditionState` per device."""

    __slots__ = ("required", "spec", "timed")

    def __init__(self, spec: ConditionSpec, model_names: frozenset[str]) -> None:
        self.spec = spec
        # a message is evaluated only once every property the condition reads has a value
        self.required = spec.reads & model_names
        self.timed = spec.for_ms > 0 or spec.kind in ("count", "average", "no_data")

    def ready(self, variables: Mapping[str, Value]) -> bool:
        """Whether every property the condition reads has a value."""
        return not self.required.difference(variables)  # a dict: iterates the names only

    @staticmethod
    def _settle(state: ConditionState, holds: bool, breach: bool = True) -> Outcome:
        if holds:
            if state.active:
                return Outcome.HOLD if breach else Outcome.NONE
            state.active = True
            return Outcome.START
        if state.active:
            state.active = False
            return Outcome.STOP
        return Outcome.NONE

    def on_message(
        self, state: ConditionState, now: int, ts: int, variables: Mapping[str, Value]
    ) -> Outcome:
        """A message of the device arrived (its values merged into `variables`)."""
        kind = self.spec.kind
        if kind == "no_data":
            state.last_seen = now
            return self._settle(state, False)
        if kind == "event" or not self.ready(variables):
            return Outcome.NONE
        if kind == "expression":
            return self._expression(state, now, variables)
        if kind == "count":
            return self._count(state, now, variables)
        value = _number(variables[self.spec.watched], self.spec.watched)
        if kind == "average":
            return self._average(state, now, value)
        return self._rate(state, ts, value)

    def on_event(self, state: ConditionState, variables: Mapping[str, Value]) -> Outcome:
        """A matching event arrived; `variables` holds its output over the device's state."""
        expr = self.spec.expression
        if expr is not None and not _truth(expr.evaluate(variables), expr.text):
            return Outcome.NONE
        return self._settle(state, True)

    def _expression(
        self, state: ConditionState, now: int, variables: Mapping[str, Value]
    ) -> Outcome:
        expr = self.spec.expression
        assert expr is not None
        return self.on_truth(state, now, _truth(expr.evaluate(variables), expr.text))

    def on_truth(self, state: ConditionState, now: int, holds: bool) -> Outcome:
        """An expression condition whose value was computed by the caller (the engine
        evaluates a product's expressions as one program)."""
        if not holds:
            state.since = None
            return self._settle(state, False)
        if state.since is None:
            state.since = now
        if now - state.since >= self.spec.for_ms:
            return self._settle(state, True)
        return Outcome.NONE

    def _evict(self, state: ConditionState, now: int) -> None:
        edge = now - self.spec.window_ms
        window = state.window
        while window and window[0][0] <= edge:
            state.total -= window.popleft()[1]

    def _count(self, state: ConditionState, now: int, variables: Mapping[str, Value]) -> Outcome:
        expr = self.spec.expression
        assert expr is not None
        breach = _truth(expr.evaluate(variables), expr.text)
        if breach:
            state.window.append((now, 1.0))
        self._evict(state, now)
        return self._settle(state, len(state.window) >= self.spec.threshold, breach)

    def _mean_holds(self, state: ConditionState) -> bool:
        if not state.window:
            return False
        mean = state.total / len(state.window)
        return compare(mean, self.spec.op, self.spec.threshold)

    def _average(self, state: ConditionState, now: int, value: float) -> Outcome:
        state.window.append((now, value))
        state.total += value
        self._evict(state, now)
        return self._settle(state, self._mean_holds(state))

    def _rate(self, state: ConditionState, ts: int, value: float) -> Outcome:
        prev_ts, prev_value = state.prev_ts, state.prev_value
        state.prev_ts, state.prev_value = ts, value
        if prev_ts is None or ts <= prev_ts:
            return Outcome.NONE
        rate = (value - prev_value) * self.spec.per_ms / (ts - prev_ts)
        return self._settle(state, compare(rate, self.spec.op, self.spec.threshold))

    def deadline(self, state: ConditionState) -> int | None:
        """The next moment a `tick` could change the outcome, if any."""
        spec = self.spec
        if spec.kind == "no_data":
            if state.active or state.last_seen is None:
                return None
            return state.last_seen + spec.timeout_ms
        if spec.kind == "expression":
            if state.active or state.since is None or not spec.for_ms:
                return None
            return state.since + spec.for_ms
        if spec.kind in ("count", "average") and state.window:
            return state.window[0][0] + spec.window_ms
        return None

    def tick(self, state: ConditionState, now: int) -> Outcome:
        """Time passed without a message: durations elapse, windows empty, devices fall
        silent."""
        kind = self.spec.kind
        if kind == "no_data":
            due = state.last_seen is not None and now - state.last_seen >= self.spec.timeout_ms
            return self._settle(state, True) if due and not state.active else Outcome.NONE
        if kind == "expression":
            if state.active or state.since is None or now - state.since < self.spec.for_ms:
                return Outcome.NONE
            return self._settle(state, True)
        if kind in ("count", "average") and state.window:
            self._evict(state, now)
            if kind == "count":
                holds = len(state.window) >= self.spec.threshold
            else:
                holds = self._mean_holds(state)
            return self._settle(state, holds, breach=False)
        return Outcome.NONE
