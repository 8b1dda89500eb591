"""The rule engine: one bus subscription, per-device condition state, alarms and actions.

Per batch it groups points into messages (device, timestamp) once, keeps each device's
latest values, and runs only the rules of the device's product (or of the device) that read
one of the message's properties. A timer steps the conditions that depend on time
(``for`` durations, windows, no-data). Alarms go to the `AlarmBook`, which writes them in
batches; actions go to `RuleActions` as background tasks. A rule whose evaluation fails is
taken out of the index, stored with ``enabled = false`` and the reason, and the others go
on. The API tells the engine about rule changes (`rule_changed`, thread-safe); nothing
needs a restart.

Device identity (product, enterprise, name) is loaded from the registry once per device,
in a worker thread, and refreshed after `device_ttl_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.errors import InvalidInput
from qiantang.domain.expressions import EvaluationError
from qiantang.domain.rules_eval import ConditionState, Outcome
from qiantang.domain.telemetry import EventRecord, Value
from qiantang.ports.bus import BusBatch, BusClosed, Subscription
from qiantang.registry.tables import Rule
from qiantang.services.models_cache import ModelCache
from qiantang.services.rule_actions import Firing, RuleActions
from qiantang.services.rule_engine_alarms import AlarmBook, Breach, OpenAlarm
from qiantang.services.rule_engine_devices import DeviceDirectory, DeviceInfo, messages_of
from qiantang.services.rule_engine_rules import CompiledRule, RuleDef, RuleIndex, compile_rule

__all__ = ["RuleEngine"]

log = logging.getLogger(__name__)


def wall_ms() -> int:
    """The engine's clock."""
    return int(time.time() * 1000)


class RuleEngine:
    """Runs every enabled rule over the bus."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        models: ModelCache,
        subscription: Subscription,
        actions: RuleActions | None = None,
        *,
        tick_s: float = 0.1,
        device_ttl_s: float = 60.0,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._sessions = sessions
        self._models = models
        self._subscription = subscription
        self.actions = actions
        self.alarms = AlarmBook(sessions)
        self.index = RuleIndex()
        self._devices = DeviceDirectory(sessions, device_ttl_s)
        self._latest: dict[int, dict[str, Value]] = {}
        self._tick_s, self._clock = tick_s, clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.messages = 0
        self.evaluations = 0

    # --- life --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the alarm book and the enabled rules, then follow the bus and the timer."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.alarms.load)
        rules = await asyncio.to_thread(self._load_rules, None)
        self.index.put_all(rules)
        self._background = [
            asyncio.create_task(self._follow(), name="rule-engine"),
            asyncio.create_task(self._tick_forever(), name="rule-engine-timer"),
            asyncio.create_task(self.alarms.run(), name="alarm-writer"),
        ]
        log.info("rule engine: %d rules, %d open alarms", len(rules), len(self.alarms.open))

    async def close(self) -> None:
        """Stop following the bus, flush the alarms, let running actions finish."""
        self._subscription.close()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.alarms.flush()
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 2)
        if self.actions is not None:
            await self.actions.close()

    # --- rules -------------------------------------------------------------------------------
    def _load_rules(self, rule_id: int | None) -> list[CompiledRule]:
        with self._sessions() as db:
            stmt = select(Rule).where(Rule.enabled.is_(True))
            if rule_id is not None:
                stmt = stmt.where(Rule.id == rule_id)
            definitions = [RuleDef.of(row) for row in db.scalars(stmt)]
        out: list[CompiledRule] = []
        for definition in definitions:
            model = self._models.cached(definition.product_id) or self._models.load(
                definition.product_id
            )
            if model is None:
                continue
            try:
                out.append(compile_rule(definition, model.model))
            except InvalidInput as err:  # the model changed under the rule
                self._store_disabled(definition.id, f"no longer valid: {err}")
        return out

    def rule_changed(self, rule_id: int, wait_s: float = 10.0) -> None:
        """A rule was created, changed, enabled, disabled or deleted. From another thread
        (the API's), this returns once the engine runs the new version, so the next message
        after the API's answer meets it; on the engine's own loop it only schedules."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(self._reload(rule_id))
            return
        future = asyncio.run_coroutine_threadsafe(self._reload(rule_id), loop)
        try:
            future.result(wait_s)
        except TimeoutError:
            log.warning("rule %s: the engine took over %.0f s to load the change", rule_id, wait_s)

    async def _reload(self, rule_id: int) -> None:
        rules = await asyncio.to_thread(self._load_rules, rule_id)
        old = self.index.remove(rule_id)
        if rules:
            self.index.put(rules[0])
        elif old is not None:
            exists = await asyncio.to_thread(self._rule_exists, rule_id)
            if not exists:
                self.alarms.forget_rule(rule_id, self._clock())

    def _rule_exists(self, rule_id: int) -> bool:
        with self._sessions() as db:
            return db.get(Rule, rule_id) is not None

    def _store_disabled(self, rule_id: int, reason: str) -> None:
        with self._sessions() as db:
            db.execute(
                update(Rule)
                .where(Rule.id == rule_id)
                .values(enabled=False, disabled_reason=reason[:2000])
            )
            db.commit()

    def _disable(self, rule: CompiledRule, reason: str) -> None:
        if self.index.remove(rule.id) is None:
            return
        log.warning("rule %s disabled: %s", rule.id, reason)
        self._spawn(asyncio.to_thread(self._store_disabled, rule.id, reason))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the bus -----------------------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            try:
                batch = await self._subscription.get()
            except BusClosed:
                return
            try:
                await self.handle(batch)
            except Exception:  # one bad batch must not stop the engine
                log.exception("rule engine: batch failed")

    async def handle(self, batch: BusBatch) -> None:
        """Run the rules over one bus batch."""
        if not self.index.rules or not (batch.points or batch.events):
            return
        ids = {p.device_id for p in batch.points}
        ids.update(e.device_id for e in batch.events)
        await self._devices.ensure(ids)
        now = self._clock()
        for device_id, ts, values in messages_of(batch.points):
            self._message(device_id, ts, values, now)
        for event in batch.events:
            self._event(event, now)

    def _state(self, rule: CompiledRule, device_id: int) -> ConditionState:
        state = rule.states.get(device_id)
        if state is None:
            state = rule.states[device_id] = ConditionState()
            state.active = (rule.id, device_id) in self.alarms.open
        return state

    def _message(self, device_id: int, ts: int, values: dict[str, Value], now: int) -> None:
        info = self._devices.get(device_id)
        if info is None:
            return
        self.messages += 1
        latest = self._latest.get(device_id)
        if latest is None:
            latest = self._latest[device_id] = {"device": dict(info.attributes)}
        latest.update(values)
        for bucket in self.index.buckets(info.product_id, device_id):
            rules = bucket.matching(values)
            truths = None
            if bucket.combined is not None and rules is bucket.data:
                truths = bucket.combined.truths(latest)
            for rule in (*bucket.always, *rules):
                if truths is not None and rule.slot is not None and truths[rule.slot] is False:
                    state = rule.states.get(device_id)
                    if state is not None and not state.active and state.since is None:
                        self.evaluations += 1
                        continue  # false and nothing pending: nothing can change
                self._step(rule, device_id, info, now, ts, latest, truths)

    def _step(
        self,
        rule: CompiledRule,
        device_id: int,
        info: DeviceInfo,
        now: int,
        ts: int,
        latest: dict[str, Value],
        truths: list[Value] | None,
    ) -> None:
        self.evaluations += 1
        state = self._state(rule, device_id)
        holds = truths[rule.slot] if truths is not None and rule.slot is not None else None
        try:
            if isinstance(holds, bool):
                outcome = rule.evaluator.on_truth(state, now, holds)
            else:
                outcome = rule.evaluator.on_message(state, now, ts, latest)
        except EvaluationError as err:
            self._disable(rule, f"evaluation failed: {err}")
            return
        if outcome is not Outcome.NONE:
            self._apply(rule, device_id, info, outcome, ts, latest)

    def _event(self, event: EventRecord, now: int) -> None:
        info = self._devices.get(event.device_id)
        if info is None:
            return
        rules, always = self.index.for_event(info.product_id, event.device_id)
        latest = self._latest.get(event.device_id) or {"device": dict(info.attributes)}
        for rule in always:
            outcome = rule.evaluator.on_message(self._state(rule, event.device_id), now, 0, {})
            if outcome is not Outcome.NONE:
                self._apply(rule, event.device_id, info, outcome, event.ts, latest)
        spec_of = event.identifier, event.event_type
        for rule in rules:
            cond = rule.spec.condition
            if cond.event_identifier not in ("", spec_of[0]) or cond.event_type not in (
                "",
                spec_of[1],
            ):
                continue
            variables: dict[str, Value] = {**latest, **event.output}
            variables["event"] = {"identifier": event.identifier, "type": event.event_type}
            try:
                outcome = rule.evaluator.on_event(self._state(rule, event.device_id), variables)
            except EvaluationError as err:
                self._disable(rule, f"evaluation failed: {err}")
                continue
            if outcome is not Outcome.NONE:
                self._apply(rule, event.device_id, info, outcome, event.ts, variables)

    # --- outcomes ----------------------------------------------------------------------------
    def _apply(
        self,
        rule: CompiledRule,
        device_id: int,
        info: DeviceInfo,
        outcome: Outcome,
        ts: int,
        variables: Mapping[str, Value],
    ) -> None:
        alarm_spec = rule.spec.alarm
        values = rule.kept_values(variables)
        alarm: OpenAlarm | None = None
        if alarm_spec is None:
            transition = "clear" if outcome is Outcome.STOP else "fire"
        elif outcome is Outcome.STOP:
            alarm = self.alarms.clear(rule.id, device_id, ts)
            transition = "clear" if alarm is not None else ""
        else:
            d = rule.definition
            breach = Breach(
                d.id,
                d.name,
                device_id,
                info.product_id,
                info.enterprise_id,
                alarm_spec.severity,
                alarm_spec.messages,
                ts,
                values,
            )
            alarm, raised = self.alarms.breach(breach)
            transition = "raise" if raised else ""
        if transition and rule.actions and self.actions is not None:
            # actions see the message over the device's whole latest state (a copy)
            everything = {**variables, **values}
            self._run_actions(rule, device_id, info, transition, ts, everything, alarm)

    def _run_actions(
        self,
        rule: CompiledRule,
        device_id: int,
        info: DeviceInfo,
        transition: str,
        ts: int,
        values: dict[str, Value],
        alarm: OpenAlarm | None,
    ) -> None:
        assert self.actions is not None
        d = rule.definition
        firing = Firing(
            d.id,
            d.name,
            d.enterprise_id,
            device_id,
            info.product_id,
            ts,
            transition,
            values,
            alarm.id if alarm is not None else None,
            alarm.severity if alarm is not None else None,
            (alarm.message_zh or alarm.message_en) if alarm is not None else None,
        )
        self._spawn(self.actions.run(rule.actions, firing))

    # --- time --------------------------------------------------------------------------------
    def tick(self, now: int) -> None:
        """Step every time-dependent condition whose deadline passed."""
        for rule in list(self.index.timed):
            evaluator = rule.evaluator
            for device_id, state in list(rule.states.items()):
                due = evaluator.deadline(state)
                if due is None or due > now:
                    continue
                outcome = evaluator.tick(state, now)
                info = self._devices.get(device_id)
                if outcome is not Outcome.NONE and info is not None:
                    latest = self._latest.get(device_id, {})
                    self._apply(rule, device_id, info, outcome, now, latest)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                self.tick(self._clock())
            except Exception:
                log.exception("rule engine: timer step failed")

    # --- hand operations (from the API, any thread) ------------------------------------------
    def call(self, make: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run a coroutine made by `make` on the engine's loop and wait for its result."""
        if self._loop is None:
            raise RuntimeError("the rule engine is not running")
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout)

    async def acknowledge(self, alarm_id: int, user_id: int) -> None:
        """Acknowledge an open alarm by hand."""
        await self.alarms.acknowledge(alarm_id, user_id, self._clock())

    async def clear_by_hand(self, alarm_id: int, user_id: int) -> None:
        """Clear an open alarm by hand; the rule's next breach raises a new one."""
        alarm = await self.alarms.clear_by_hand(alarm_id, user_id, self._clock())
        rule = self.index.rules.get(alarm.rule_id)
        if rule is not None:
            state = rule.states.get(alarm.device_id)
            if state is not None:
                state.active = False
                state.since = None
