"""Running a rule's actions when it fires: commands, webhooks, derived properties.

The rule engine calls `RuleActions.run` with the parsed actions and a `Firing`; it returns
quickly and never raises. Every outcome lands in the rule's bounded `DeliveryLog`
(`deliveries`): webhook attempts, commands (with their command id; they are validated,
stored and tracked by `CommandService` like any API call), derived points, and failures
(an expression that did not evaluate, a value the thing model refused).

- **Commands** (`set_property`, `call_service`) are sent as the rule: a principal holding the
  engineer role in the rule's enterprise only, so a rule reaches only its own enterprise's
  devices. They run as background tasks, at most `max_commands` at once; more are dropped
  and recorded.
- **Expressions** in values and derives read the firing's values; a name the engine did not
  pass (it keeps what the condition reads) is taken from the device's latest stored value.
- **Webhooks** go to `WebhookSender` (bounded queue, retries with back-off).
- **Derived properties** are validated against the firing device's thing model like any
  reading and go through `IngestCore.store_all`: stored, queryable, on the bus. They carry
  the firing's timestamp.

**Loops.** A derived point is new data of the device, so it may make a rule fire again.
`parse_actions(reads=...)` refuses a derive of a property the rule's own condition reads; and
at run time a rule's actions run at most once per (rule, device, data timestamp,
transition), so since derived points keep the firing's timestamp, a chain of rules deriving
from each other stops after one round instead of looping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.access import Principal, Role
from qiantang.domain.errors import QiantangError
from qiantang.domain.expressions import Expression, compile_expression
from qiantang.domain.rule_actions import (
    ActionSpec,
    CallServiceAction,
    DeriveAction,
    SetPropertyAction,
    WebhookAction,
    expression_of,
    expression_texts,
)
from qiantang.domain.telemetry import Point, Value
from qiantang.registry.tables import Device, Product
from qiantang.services.commands import PROPERTY_SET, SERVICE, CallRequest, CommandService
from qiantang.services.ingest import IngestCore
from qiantang.services.webhooks import (
    Delivery,
    DeliveryLog,
    WebhookJob,
    WebhookPolicy,
    WebhookSecrets,
    WebhookSender,
)

__all__ = ["Firing", "RuleActions", "stored_actions"]

log = logging.getLogger(__name__)
_SEEN = 10_000  # firings remembered for the once-per-timestamp guard
_EXPRESSIONS = 4096  # compiled expressions cached


@dataclass(frozen=True, slots=True)
class Firing:
    """One moment a rule fired on a device, as the actions see it."""

    rule_id: int
    rule_name: str
    enterprise_id: int
    device_id: int
    product_id: int
    ts: int  # ms of the triggering data
    transition: str  # "raise" | "clear" | "fire"
    values: Mapping[str, Value]  # the message's properties + the latest state evaluated
    alarm_id: int | None = None
    severity: str | None = None
    message: str | None = None  # the rendered alarm message


def stored_actions(actions: Sequence[ActionSpec], secrets: WebhookSecrets) -> list[dict[str, Any]]:
    """The actions as the registry keeps them: webhook secrets sealed, plain text dropped.
    Read them back with ``parse_actions(raw, stored=True)``."""
    out: list[dict[str, Any]] = []
    for spec in actions:
        if isinstance(spec, WebhookAction) and spec.secret is not None:
            spec = msgspec.structs.replace(
                spec, secret=None, sealed_secret=secrets.seal(spec.secret)
            )
        item: dict[str, Any] = msgspec.to_builtins(spec)
        if item.get("secret", "") is None:
            del item["secret"]
        out.append(item)
    return out


def _now_ms() -> int:
    return int(time.time() * 1000)


class RuleActions:
    """Executes actions of firing rules and remembers how each attempt went."""

    def __init__(
        self,
        commands: CommandService,
        core: IngestCore,
        sessions: sessionmaker[Session],
        secrets: WebhookSecrets,
        policy: WebhookPolicy | None = None,
        *,
        max_commands: int = 256,
    ) -> None:
        self.policy = policy or WebhookPolicy()
        self._commands = commands
        self._core = core
        self._sessions = sessions
        self._secrets = secrets
        self._log = DeliveryLog(self.policy.log_size)
        self.webhooks = WebhookSender(self._log, self.policy)
        self._max_commands = max_commands
        self._tasks: set[asyncio.Task[None]] = set()
        self._expressions: dict[str, Expression] = {}
        self._seen: OrderedDict[tuple[int, int, int, str], None] = OrderedDict()
        self._devices: dict[int, tuple[str, str]] = {}
        self.repeats_skipped = 0
        self.commands_dropped = 0

    # --- reading -----------------------------------------------------------------------------
    def deliveries(self, rule_id: int) -> list[Delivery]:
        """The rule's latest action attempts, newest first."""
        return self._log.of(rule_id)

    def forget(self, rule_id: int) -> None:
        """Drop the log of a deleted rule."""
        self._log.forget(rule_id)

    # --- running -----------------------------------------------------------------------------
    async def run(self, actions: Sequence[ActionSpec], firing: Firing) -> None:
        """Start every action that applies to the firing's transition; never raises."""
        key = (firing.rule_id, firing.device_id, firing.ts, firing.transition)
        if key in self._seen:
            self.repeats_skipped += 1
            return
        self._seen[key] = None
        if len(self._seen) > _SEEN:
            self._seen.popitem(last=False)
        derived: list[Point] = []
        applicable = [spec for spec in actions if firing.transition in spec.on]
        firing = await self._with_latest(applicable, firing)
        for spec in applicable:
            try:
                await self._start(spec, firing, derived)
            except Exception as err:  # an action must never stop the engine
                log.exception("rule %s: action %s failed", firing.rule_id, type(spec).__name__)
                self._fail(firing, _kind(spec), _target(spec, firing), err)
        if derived:
            await self._store_derived(firing, derived)

    async def _with_latest(self, actions: Sequence[ActionSpec], firing: Firing) -> Firing:
        """The firing, with the device's latest stored values for names its action
        expressions read and the engine did not pass (it keeps what the condition reads)."""
        try:
            names = {n for spec in actions for t in expression_texts(spec) for n in self._names(t)}
        except QiantangError:
            return firing  # an expression that does not compile fails when it runs
        if names <= firing.values.keys():
            return firing
        try:
            latest = await self._core.store.latest(firing.device_id)
        except Exception:
            log.exception("rule %s: reading the latest values failed", firing.rule_id)
            return firing
        extra = {n: latest[n].value for n in names - firing.values.keys() if n in latest}
        return replace(firing, values={**extra, **firing.values}) if extra else firing

    def _names(self, text: str) -> frozenset[str]:
        return self._compiled(text).names

    async def _start(self, spec: ActionSpec, firing: Firing, derived: list[Point]) -> None:
        if isinstance(spec, WebhookAction):
            await self._webhook(spec, firing)
        elif isinstance(spec, DeriveAction):
            point = await self._derive(spec, firing)
            if point is not None:
                derived.append(point)
        else:
            self._command(spec, firing)

    def _compiled(self, text: str) -> Expression:
        expr = self._expressions.get(text)
        if expr is None:
            if len(self._expressions) >= _EXPRESSIONS:
                self._expressions.clear()
            expr = self._expressions[text] = compile_expression(text)
        return expr

    def _evaluate(self, text: str, firing: Firing) -> Value:
        return self._compiled(text).evaluate(firing.values)

    def _resolve(self, params: Mapping[str, Any], firing: Firing) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in params.items():
            text = expression_of(value)
            out[name] = value if text is None else self._evaluate(text, firing)
        return out

    # --- commands ----------------------------------------------------------------------------
    def _command(self, spec: SetPropertyAction | CallServiceAction, firing: Firing) -> None:
        device_id = spec.device_id or firing.device_id
        if isinstance(spec, SetPropertyAction):
            params = self._resolve(spec.properties, firing)
            request = CallRequest(device_id, PROPERTY_SET, "set", params, spec.timeout_s)
        else:
            params = self._resolve(spec.input, firing)
            request = CallRequest(device_id, SERVICE, spec.service, params, spec.timeout_s)
        if len(self._tasks) >= self._max_commands:
            self.commands_dropped += 1
            self._record(firing, _kind(spec), f"device {device_id}", "dropped", "too many commands")
            return
        task = asyncio.create_task(self._send(request, firing, _kind(spec)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, request: CallRequest, firing: Firing, kind: str) -> None:
        as_rule = Principal(
            user_id=0,
            username=f"rule:{firing.rule_id}",
            enterprise_roles={firing.enterprise_id: Role.ENGINEER},
        )
        target = f"device {request.device_id}"
        try:
            command = await self._commands.invoke(as_rule, request, wait=True)
        except QiantangError as err:  # refused by the model, or not the rule's device
            self._fail(firing, kind, target, err)
            return
        except Exception as err:
            log.exception("rule %s: command failed", firing.rule_id)
            self._fail(firing, kind, target, err)
            return
        self._record(
            firing,
            kind,
            target,
            command.status,
            command.message if command.status != "replied" else None,
            code=command.code,
            command_id=command.id,
        )

    # --- derived properties ------------------------------------------------------------------
    async def _derive(self, spec: DeriveAction, firing: Firing) -> Point | None:
        value = self._evaluate(spec.expr, firing)
        model = self._core.models.cached(firing.product_id)
        if model is None:
            await self._core.ensure_models([firing.product_id])
            model = self._core.models.cached(firing.product_id)
        accepted = self._core.properties(
            model, firing.device_id, [(spec.property, value, firing.ts)], _now_ms()
        )
        if accepted.errors:
            self._record(firing, "derive", spec.property, "failed", accepted.reason())
            return None
        return accepted.points[0]

    async def _store_derived(self, firing: Firing, points: list[Point]) -> None:
        try:
            await self._core.store_all(points, [])
        except Exception as err:
            log.exception("rule %s: storing derived points failed", firing.rule_id)
            for point in points:
                self._fail(firing, "derive", point.property, err)
            return
        for point in points:
            self._record(firing, "derive", point.property, "stored")

    # --- webhooks ----------------------------------------------------------------------------
    async def _webhook(self, spec: WebhookAction, firing: Firing) -> None:
        secret = spec.secret
        if secret is None:
            assert spec.sealed_secret is not None  # parse_actions requires one of them
            secret = self._secrets.open(spec.sealed_secret)
        delivery_id = uuid.uuid4().hex
        name, product_key = await self._device_names(firing.device_id)
        body = msgspec.json.encode(
            {
                "delivery_id": delivery_id,
                "rule": {"id": firing.rule_id, "name": firing.rule_name},
                "enterprise_id": firing.enterprise_id,
                "device": {
                    "id": firing.device_id,
                    "product_id": firing.product_id,
                    "device_name": name,
                    "product_key": product_key,
                },
                "transition": firing.transition,
                "ts": firing.ts,
                "values": dict(firing.values),
                "alarm": None
                if firing.alarm_id is None
                else {
                    "id": firing.alarm_id,
                    "severity": firing.severity,
                    "message": firing.message,
                },
            }
        )
        job = WebhookJob(firing.rule_id, spec.url, secret, body, delivery_id, spec.timeout_s)
        self.webhooks.submit(job)

    async def _device_names(self, device_id: int) -> tuple[str, str]:
        names = self._devices.get(device_id)
        if names is None:
            names = await asyncio.to_thread(self._load_names, device_id)
            if len(self._devices) >= _SEEN:
                self._devices.clear()
            self._devices[device_id] = names
        return names

    def _load_names(self, device_id: int) -> tuple[str, str]:
        with self._sessions() as db:
            device = db.get(Device, device_id)
            product = db.get(Product, device.product_id) if device is not None else None
            if device is None or product is None:
                return "", ""
            return device.device_name, product.product_key

    # --- the log -----------------------------------------------------------------------------
    def _record(
        self,
        firing: Firing,
        kind: str,
        target: str,
        outcome: str,
        error: str | None = None,
        *,
        code: int | None = None,
        command_id: int | None = None,
    ) -> None:
        self._log.record(
            Delivery(
                firing.rule_id, kind, target, "", 1, _now_ms(), outcome, code, error, command_id
            )
        )

    def _fail(self, firing: Firing, kind: str, target: str, err: Exception) -> None:
        self._record(firing, kind, target, "failed", str(err) or type(err).__name__)

    async def close(self) -> None:
        """Stop webhooks and abandon commands still waiting for replies."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.webhooks.close()


def _kind(spec: ActionSpec) -> str:
    return str(type(spec).__struct_config__.tag)


def _target(spec: ActionSpec, firing: Firing) -> str:
    if isinstance(spec, WebhookAction):
        return spec.url
    if isinstance(spec, DeriveAction):
        return spec.property
    return f"device {spec.device_id or firing.device_id}"
