"""The rule engine's alarm book: open alarms in memory, written to the registry in batches.

One open alarm per (rule, device): a breach while one is open adds to its count and moves
its last time. Raises, clears and acknowledgements reach the registry at the next flush
(every `flush_interval_s`, 0.2 s), repeats every `repeat_every` flushes (2 s), so the engine
never waits on the registry per message and a fleet breaching every second costs a few
batched updates, not one per message. Ids are handed out in process (the
embedded deployment has one engine), so a raise has its alarm id at once for actions and
the live feed. Hand acknowledgements and clears come from the API through the engine's
loop and are flushed before they answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.errors import Conflict, NotFound
from qiantang.domain.telemetry import Value
from qiantang.registry.tables import Alarm

__all__ = ["ACKNOWLEDGED", "ACTIVE", "CLEARED", "AlarmBook", "OpenAlarm", "render_message"]

log = logging.getLogger(__name__)

ACTIVE, ACKNOWLEDGED, CLEARED = "active", "acknowledged", "cleared"
REPEAT_NOTIFY_MS = 1000
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def render_message(template: str, values: Mapping[str, Value]) -> str:
    """`template` with ``{name}`` (or ``{device.name}``) replaced by the values; unknown
    names stay as written."""

    def one(match: re.Match[str]) -> str:
        value: Any = values
        for part in match.group(1).split("."):
            if not isinstance(value, Mapping) or part not in value:
                return match.group(0)
            value = value[part]
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
            return str(int(value))  # 150.0 -> "150", a ms timestamp in full
        return str(value)

    return _PLACEHOLDER.sub(one, template)


@dataclass(slots=True)
class OpenAlarm:
    """An alarm as the engine holds it (the registry row's fields)."""

    id: int
    rule_id: int
    device_id: int
    product_id: int
    enterprise_id: int
    rule_name: str
    severity: str
    status: str
    message_zh: str
    message_en: str
    values: dict[str, Any]
    count: int
    raised_ms: int
    last_ms: int
    acknowledged_ms: int | None = None
    acknowledged_by: int | None = None
    cleared_ms: int | None = None
    cleared_by: int | None = None
    clear_reason: str = ""
    stored: bool = field(default=False, compare=False)
    notified_ms: int = field(default=0, compare=False)

    def payload(self, change: str) -> dict[str, Any]:
        """What the live feed streams for a change (raise, repeat, acknowledge, clear)."""
        return {
            "alarm_id": self.id,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "change": change,
            "status": self.status,
            "severity": self.severity,
            "count": self.count,
            "ts": self.last_ms if self.cleared_ms is None else self.cleared_ms,
            "message": self.message_zh,
            "message_en": self.message_en,
        }

    def row(self) -> dict[str, Any]:
        """The registry row."""
        # shallow: `values` is replaced on every breach, never changed in place
        return {k: getattr(self, k) for k in _COLUMNS}


_COLUMNS = tuple(k for k in OpenAlarm.__dataclass_fields__ if k not in ("stored", "notified_ms"))


_TABLE = cast(Table, Alarm.__table__)
_UPDATE = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"))
    .values({_TABLE.c[k]: bindparam(f"b_{k}") for k in _COLUMNS if k != "id"})
)


@dataclass(frozen=True, slots=True)
class Breach:
    """What the engine knows when a rule with an alarm holds for a device."""

    rule_id: int
    rule_name: str
    device_id: int
    product_id: int
    enterprise_id: int
    severity: str
    messages: Mapping[str, str]
    ts: int
    values: Mapping[str, Value]


AlarmListener = Callable[[OpenAlarm, str], None]


class AlarmBook:
    """Open alarms by (rule, device) and by id; dirty ones flushed in one transaction."""

    def __init__(self, sessions: sessionmaker[Session], flush_interval_s: float = 0.2) -> None:
        self._sessions = sessions
        self.flush_interval_s = flush_interval_s
        self.open: dict[tuple[int, int], OpenAlarm] = {}
        self._by_id: dict[int, OpenAlarm] = {}
        self._dirty: dict[int, OpenAlarm] = {}  # changed: raises, clears, acknowledgements
        self._repeated: dict[int, OpenAlarm] = {}  # only count and last time moved
        self.repeat_every = 10  # flushes: repeats reach the registry every 10th (2 s)
        self._next_id = 1
        self._lock = asyncio.Lock()
        self.listeners: list[AlarmListener] = []
        self.writes = 0

    def load(self) -> None:
        """Read the next id and the alarms still open (blocking; call from a thread)."""
        with self._sessions() as db:
            self._next_id = (db.scalar(select(func.max(Alarm.id))) or 0) + 1
            for row in db.scalars(select(Alarm).where(Alarm.status != CLEARED)):
                alarm = OpenAlarm(**{k: getattr(row, k) for k in _COLUMNS})
                alarm.stored = True
                self.open[(alarm.rule_id, alarm.device_id)] = alarm
                self._by_id[alarm.id] = alarm

    def _notify(self, alarm: OpenAlarm, transition: str) -> None:
        if transition == "repeat" and alarm.stored:
            self._repeated[alarm.id] = alarm
        else:
            self._dirty[alarm.id] = alarm
        # listeners hear of repeats at most once a second
        if transition == "repeat" and alarm.last_ms - alarm.notified_ms < REPEAT_NOTIFY_MS:
            return
        alarm.notified_ms = alarm.last_ms
        for listener in self.listeners:
            try:
                listener(alarm, transition)
            except Exception:  # a listener must not stop the engine
                log.exception("alarm listener failed")

    def breach(self, breach: Breach) -> tuple[OpenAlarm, bool]:
        """Raise an alarm, or repeat the open one; answers it and whether it is new."""
        key = (breach.rule_id, breach.device_id)
        alarm = self.open.get(key)
        values = dict(breach.values)
        if alarm is not None:
            alarm.count += 1
            alarm.last_ms = breach.ts
            alarm.values = values
            self._notify(alarm, "repeat")
            return alarm, False
        messages = breach.messages
        alarm = OpenAlarm(
            id=self._next_id,
            rule_id=breach.rule_id,
            device_id=breach.device_id,
            product_id=breach.product_id,
            enterprise_id=breach.enterprise_id,
            rule_name=breach.rule_name,
            severity=breach.severity,
            status=ACTIVE,
            message_zh=render_message(messages.get("zh-CN", messages.get("en", "")), values),
            message_en=render_message(messages.get("en", messages.get("zh-CN", "")), values),
            values=values,
            count=1,
            raised_ms=breach.ts,
            last_ms=breach.ts,
        )
        self._next_id += 1
        self.open[key] = alarm
        self._by_id[alarm.id] = alarm
        self._notify(alarm, "raise")
        return alarm, True

    def clear(
        self, rule_id: int, device_id: int, ts: int, by: int | None = None
    ) -> OpenAlarm | None:
        """Clear the open alarm of (rule, device), if any (by the rule unless `by` a user)."""
        alarm = self.open.pop((rule_id, device_id), None)
        if alarm is None:
            return None
        self._by_id.pop(alarm.id, None)
        alarm.status, alarm.cleared_ms = CLEARED, ts
        alarm.cleared_by, alarm.clear_reason = by, "rule" if by is None else "manual"
        self._notify(alarm, "clear")
        return alarm

    def forget_rule(self, rule_id: int, ts: int) -> None:
        """A rule was deleted: clear its open alarms."""
        for rule, device in [k for k in self.open if k[0] == rule_id]:
            self.clear(rule, device, ts)

    async def acknowledge(self, alarm_id: int, user_id: int, ts: int) -> None:
        """Acknowledge an open alarm by hand; `Conflict` when it is cleared already."""
        alarm = self._by_id.get(alarm_id)
        if alarm is None:
            raise Conflict.of("status", "lifecycle", "only an open alarm can be acknowledged")
        if alarm.status == ACTIVE:
            alarm.status, alarm.acknowledged_ms, alarm.acknowledged_by = ACKNOWLEDGED, ts, user_id
            self._notify(alarm, "acknowledge")
        await self.flush()

    async def clear_by_hand(self, alarm_id: int, user_id: int, ts: int) -> OpenAlarm:
        """Clear an open alarm by hand; `Conflict` when it is cleared already."""
        alarm = self._by_id.get(alarm_id)
        if alarm is None:
            raise Conflict.of("status", "lifecycle", "the alarm is cleared already")
        self.clear(alarm.rule_id, alarm.device_id, ts, by=user_id)
        await self.flush()
        return alarm

    def get(self, alarm_id: int) -> OpenAlarm:
        """An open alarm by id."""
        alarm = self._by_id.get(alarm_id)
        if alarm is None:
            raise NotFound("alarm", alarm_id)
        return alarm

    def _write(self, new: list[dict[str, Any]], changed: list[dict[str, Any]]) -> None:
        # Core statements, executemany: the ORM's bulk paths cost several times more Python
        # in this thread, which holds the GIL the event loop needs
        with self._sessions() as db:
            if new:
                db.execute(_TABLE.insert(), new)
            if changed:
                db.execute(_UPDATE, [{f"b_{k}": v for k, v in row.items()} for row in changed])
            db.commit()

    async def flush(self, repeats: bool = True) -> None:
        """Write changed alarms in one transaction (in a worker thread); repeats of stored
        alarms (count and last time only) too unless `repeats` is false."""
        async with self._lock:
            batch = self._dirty
            if repeats:
                batch = {**self._repeated, **batch}
                self._repeated = {}
            self._dirty = {}
            if not batch:
                return
            alarms = list(batch.values())
            new = [a.row() for a in alarms if not a.stored]
            changed = [a.row() for a in alarms if a.stored]
            try:
                await asyncio.to_thread(self._write, new, changed)
            except Exception:
                log.exception("writing %d alarm changes failed; retrying", len(alarms))
                for alarm in alarms:
                    self._dirty.setdefault(alarm.id, alarm)
                return
            for alarm in alarms:
                alarm.stored = True
            self.writes += 1

    async def run(self) -> None:
        """Flush every `flush_interval_s` until cancelled (then flush once more)."""
        rounds = 0
        try:
            while True:
                await asyncio.sleep(self.flush_interval_s)
                rounds += 1
                await self.flush(repeats=rounds % self.repeat_every == 0)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())
