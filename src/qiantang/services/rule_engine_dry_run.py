"""Dry run: replay stored data through a rule and report when it would have fired.

The same `ConditionEvaluator` as the live engine runs over each device's stored points
(grouped into messages by timestamp) and events, in time order, with the data's own
timestamps as the clock; time-dependent conditions (``for``, windows, no-data) are stepped
at the exact moments their deadlines fall. Nothing is raised, stored or sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qiantang.domain.expressions import EvaluationError
from qiantang.domain.rules_eval import ConditionEvaluator, ConditionState, Outcome
from qiantang.domain.telemetry import EventRecord, Value
from qiantang.domain.thingmodel import ThingModel
from qiantang.ports.timeseries import TimeSeriesStore
from qiantang.services.rule_engine_rules import CompiledRule, RuleDef, compile_rule

__all__ = ["DryRun", "Moment", "dry_run"]

MAX_POINTS = 200_000
MAX_MOMENTS = 1_000
MAX_EVENTS = 1_000


@dataclass(frozen=True, slots=True)
class Moment:
    """A moment the rule would have raised, cleared or fired on a device."""

    device_id: int
    ts: int
    transition: str
    values: Mapping[str, Value]


@dataclass(slots=True)
class DryRun:
    """What a dry run found; `truncated` when a limit stopped it early."""

    moments: list[Moment] = field(default_factory=list)
    points: int = 0
    events: int = 0
    truncated: bool = False
    error: str = ""


_Item = tuple[int, int, Any]  # (ts, order, message values or event)


async def _timeline(
    store: TimeSeriesStore, device_id: int, start_ms: int, end_ms: int, budget: int, events: bool
) -> tuple[list[_Item], int, bool]:
    items: list[_Item] = []
    cursor: str | None = None
    read = 0
    message: dict[str, Value] = {}
    message_ts: int | None = None
    while read < budget:
        page = await store.query_raw(
            device_id, None, start_ms, end_ms, limit=min(10_000, budget - read), cursor=cursor
        )
        for p in page.points:
            if p.ts != message_ts:
                if message_ts is not None:
                    items.append((message_ts, 0, message))
                message, message_ts = {}, p.ts
            message[p.property] = p.value
        read += len(page.points)
        cursor = page.next_cursor
        if cursor is None:
            break
    if message_ts is not None:
        items.append((message_ts, 0, message))
    if events:
        found = await store.query_events(device_id, start_ms, end_ms, limit=MAX_EVENTS)
        items.extend((e.ts, 1, e) for e in found)
    items.sort(key=lambda item: (item[0], item[1]))
    return items, read, cursor is not None


class _Replay:
    """One device's replay."""

    def __init__(self, rule: CompiledRule, device_id: int, attributes: dict[str, Value]) -> None:
        self.rule = rule
        self.evaluator: ConditionEvaluator = rule.evaluator
        self.device_id = device_id
        self.state = ConditionState()
        self.latest: dict[str, Value] = {"device": attributes}
        self.moments: list[Moment] = []

    def _record(self, outcome: Outcome, ts: int, variables: Mapping[str, Value]) -> None:
        has_alarm = self.rule.spec.alarm is not None
        if outcome is Outcome.START:
            transition = "raise" if has_alarm else "fire"
        elif outcome is Outcome.HOLD and not has_alarm:
            transition = "fire"
        elif outcome is Outcome.STOP and has_alarm:
            transition = "clear"
        else:
            return
        values = self.rule.kept_values(variables)
        self.moments.append(Moment(self.device_id, ts, transition, values))

    def until(self, ts: int) -> None:
        """Step the deadlines falling at or before `ts`."""
        for _ in range(100_000):
            due = self.evaluator.deadline(self.state)
            if due is None or due > ts:
                return
            self._record(self.evaluator.tick(self.state, due), due, self.latest)

    def message(self, ts: int, values: dict[str, Value]) -> None:
        self.until(ts)
        self.latest.update(values)
        if self.rule.spec.condition.kind == "no_data" or not self.rule.reads.isdisjoint(values):
            outcome = self.evaluator.on_message(self.state, ts, ts, self.latest)
            self._record(outcome, ts, self.latest)

    def event(self, event: EventRecord) -> None:
        self.until(event.ts)
        cond = self.rule.spec.condition
        if cond.kind == "no_data":
            outcome = self.evaluator.on_message(self.state, event.ts, event.ts, {})
            self._record(outcome, event.ts, {})
            return
        if cond.kind != "event":
            return
        if cond.event_identifier not in ("", event.identifier):
            return
        if cond.event_type not in ("", event.event_type):
            return
        variables: dict[str, Value] = {**self.latest, **event.output}
        variables["event"] = {"identifier": event.identifier, "type": event.event_type}
        self._record(self.evaluator.on_event(self.state, variables), event.ts, variables)
        if self.rule.spec.alarm is not None:
            self.state.active = False  # each event is a moment of its own in a dry run


async def dry_run(
    store: TimeSeriesStore,
    definition: RuleDef,
    model: ThingModel,
    devices: Mapping[int, dict[str, Value]],
    start_ms: int,
    end_ms: int,
) -> DryRun:
    """Replay `[start_ms, end_ms)` of `devices` (id -> attributes) through the rule."""
    rule = compile_rule(definition, model)  # raises InvalidInput for a broken definition
    result = DryRun()
    wants_events = rule.spec.condition.kind in ("event", "no_data")
    for device_id, attributes in devices.items():
        budget = MAX_POINTS - result.points
        items, read, cut = await _timeline(store, device_id, start_ms, end_ms, budget, wants_events)
        result.points += read
        result.truncated |= cut
        replay = _Replay(compile_rule(definition, model), device_id, dict(attributes))
        try:
            for ts, order, item in items:
                if order == 0:
                    replay.message(ts, item)
                else:
                    result.events += 1
                    replay.event(item)
            replay.until(end_ms - 1)
        except EvaluationError as err:
            result.error = f"device {device_id}: {err}"
        result.moments.extend(replay.moments)
        if result.points >= MAX_POINTS or len(result.moments) >= MAX_MOMENTS:
            result.truncated = True
        if result.error or result.truncated:
            break
    result.moments.sort(key=lambda m: (m.ts, m.device_id))
    del result.moments[MAX_MOMENTS:]
    return result
