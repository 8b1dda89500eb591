"""Rules: what a rule's JSON says, parsed and checked before anything is stored.

A rule watches one product's devices (or one device). Its ``condition`` has a ``kind``:

- ``expression``: ``{"kind": "expression", "expression": "temperature > 80", "for": "30s"}``
  holds while the CEL expression is true (for at least ``for``, when given);
- ``count``: ``{"kind": "count", "expression": "...", "window": "60s", "threshold": 5}``
  holds while at least ``threshold`` messages in the sliding window made it true;
- ``average``: ``{"kind": "average", "property": "temperature", "window": "60s",
  "op": ">", "threshold": 80}`` compares the window's mean of one property;
- ``rate``: ``{"kind": "rate", "property": "pressure", "per": "1s", "op": ">",
  "threshold": 0.5}`` compares the change between consecutive values per ``per``;
- ``no_data``: ``{"kind": "no_data", "timeout": "30s"}`` holds while the device sent
  nothing for ``timeout`` (measured by the engine's clock, for devices it has heard from
  since it started);
- ``event``: ``{"kind": "event", "identifier": "overTemp"}`` or ``{"event_type": "alert"}``,
  optionally with an ``expression`` over the event's output and the device's state.

Expressions read the device's properties (the message's values over its latest state) and
``device`` (``device.name``, ``device.nickname``, ``device.id``). An optional ``alarm``
(``{"severity": "major", "message": {"zh-CN": "温度 {temperature}", "en": "..."}}``) is
raised when the condition starts holding and cleared when it stops; event and no-data
alarms repeat while open.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from qiantang.domain.errors import FieldError, InvalidInput
from qiantang.domain.expressions import Expression, ExpressionError, compile_expression

__all__ = [
    "CONDITION_KINDS",
    "OPERATORS",
    "SEVERITIES",
    "AlarmSpec",
    "ConditionSpec",
    "RuleSpec",
    "compare",
    "parse_duration_ms",
    "parse_rule",
]

CONDITION_KINDS = ("expression", "count", "average", "rate", "no_data", "event")
SEVERITIES = ("critical", "major", "minor", "warning", "info")
EVENT_TYPES = ("info", "alert", "error")
OPERATORS = (">", ">=", "<", "<=", "==", "!=")
LANGUAGES = ("zh-CN", "en")
RESERVED = frozenset({"device"})
MAX_DURATION_MS = 7 * 86_400_000
MAX_MESSAGE = 512
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}


def compare(value: float, op: str, threshold: float) -> bool:
    """`value op threshold` for one of `OPERATORS`."""
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    return value != threshold


def parse_duration_ms(raw: object, field: str, *, minimum_ms: int = 1) -> int:
    """``"30s"``, ``"500ms"``, ``"5m"``, ``"1h"`` or a number of seconds, as ms."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidInput.of(field, "duration", "a duration like '30s', '500ms', '5m' or '1h'")
    match = _DURATION.match(str(raw))
    if match is None:
        raise InvalidInput.of(field, "duration", "a duration like '30s', '500ms', '5m' or '1h'")
    ms = int(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if not minimum_ms <= ms <= MAX_DURATION_MS:
        raise InvalidInput.of(
            field, "duration", f"between {minimum_ms} ms and {MAX_DURATION_MS // 86_400_000} days"
        )
    return ms


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    """A parsed condition; which fields matter depends on `kind`."""

    kind: str
    expression: Expression | None = None
    for_ms: int = 0
    window_ms: int = 0
    threshold: float = 0.0
    op: str = ">"
    watched: str = ""
    per_ms: int = 1000
    timeout_ms: int = 0
    event_identifier: str = ""
    event_type: str = ""

    @property
    def reads(self) -> frozenset[str]:
        """Properties (and reserved names) the condition reads."""
        names = set(self.expression.names) if self.expression is not None else set()
        if self.watched:
            names.add(self.watched)
        return frozenset(names)


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """The alarm a rule raises: severity and message templates by language."""

    severity: str
    messages: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule's condition and alarm, parsed (its actions are parsed by `rule_actions`)."""

    condition: ConditionSpec
    alarm: AlarmSpec | None


class _Check:
    """Collects broken rules under a prefix (``condition.window``)."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field: str, rule: str, message: str) -> None:
        self.errors.append(FieldError(field, rule, message))

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidInput as err:
            self.errors.extend(err.errors)
            return None


def _expression(
    check: _Check, raw: Mapping[str, Any], known: Collection[str] | None, required: bool
) -> Expression | None:
    text = raw.get("expression")
    if text is None and not required:
        return None
    if not isinstance(text, str):
        check.add("condition.expression", "required", "a CEL expression (text) is required")
        return None
    try:
        expr = compile_expression(text, "condition.expression")
    except ExpressionError as err:
        check.errors.extend(err.errors)
        return None
    if known is not None:
        unknown = sorted(expr.names - set(known) - RESERVED)
        if unknown:
            check.add(
                "condition.expression",
                "unknown_property",
                f"not in the product's thing model: {', '.join(unknown)}",
            )
    return expr


def _number(check: _Check, raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        check.add(f"condition.{key}", "number", f"{key} must be a number")
        return 0.0
    return float(value)


def _op(check: _Check, raw: Mapping[str, Any]) -> str:
    op = raw.get("op", ">")
    if op not in OPERATORS:
        check.add("condition.op", "enum", f"one of {', '.join(OPERATORS)}")
        return ">"
    return str(op)


def _property(check: _Check, raw: Mapping[str, Any], known: Collection[str] | None) -> str:
    name = raw.get("property")
    if not isinstance(name, str) or not name:
        check.add("condition.property", "required", "the property to watch")
        return ""
    if known is not None and name not in known:
        check.add("condition.property", "unknown_property", "not in the product's thing model")
    return name


def _duration(check: _Check, raw: Mapping[str, Any], key: str, required: bool) -> int:
    if key not in raw and not required:
        return 0
    if key not in raw:
        check.add(f"condition.{key}", "required", f"{key} is required (e.g. '30s')")
        return 0
    return int(check.run(parse_duration_ms, raw[key], f"condition.{key}") or 0)


def _event(
    check: _Check, raw: Mapping[str, Any], events: Mapping[str, Collection[str]] | None
) -> tuple[str, str, Collection[str] | None]:
    identifier, event_type = raw.get("identifier", ""), raw.get("event_type", "")
    if not isinstance(identifier, str) or not isinstance(event_type, str):
        check.add("condition.identifier", "type", "identifier and event_type are text")
        return "", "", None
    if bool(identifier) == bool(event_type):
        check.add("condition.identifier", "one_of", "give identifier or event_type (one)")
    if event_type and event_type not in EVENT_TYPES:
        check.add("condition.event_type", "enum", f"one of {', '.join(EVENT_TYPES)}")
    params: Collection[str] | None = None
    if events is not None and identifier:
        if identifier not in events:
            check.add("condition.identifier", "unknown_event", "not in the product's thing model")
        params = events.get(identifier, ())
    elif events is not None:
        params = {p for outputs in events.values() for p in outputs}
    return identifier, event_type, params


def _condition(
    check: _Check,
    raw: Mapping[str, Any],
    properties: Collection[str] | None,
    events: Mapping[str, Collection[str]] | None,
) -> ConditionSpec | None:
    kind = raw.get("kind")
    if kind not in CONDITION_KINDS:
        check.add("condition.kind", "enum", f"one of {', '.join(CONDITION_KINDS)}")
        return None
    if kind == "expression":
        return ConditionSpec(
            kind,
            _expression(check, raw, properties, True),
            for_ms=_duration(check, raw, "for", False),
        )
    if kind == "count":
        return ConditionSpec(
            kind,
            _expression(check, raw, properties, True),
            window_ms=_duration(check, raw, "window", True),
            threshold=_number(check, raw, "threshold"),
        )
    if kind in ("average", "rate"):
        return ConditionSpec(
            kind,
            watched=_property(check, raw, properties),
            window_ms=_duration(check, raw, "window", kind == "average"),
            per_ms=_duration(check, raw, "per", False) or 1000,
            op=_op(check, raw),
            threshold=_number(check, raw, "threshold"),
        )
    if kind == "no_data":
        return ConditionSpec(kind, timeout_ms=_duration(check, raw, "timeout", True))
    identifier, event_type, params = _event(check, raw, events)
    known = None if params is None or properties is None else {*properties, *params, "event"}
    return ConditionSpec(
        kind,
        _expression(check, raw, known, False),
        event_identifier=identifier,
        event_type=event_type,
    )


def _alarm(check: _Check, raw: object) -> AlarmSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        check.add("alarm", "type", "alarm must be an object or null")
        return None
    severity = raw.get("severity")
    if severity not in SEVERITIES:
        check.add("alarm.severity", "enum", f"one of {', '.join(SEVERITIES)}")
    messages = raw.get("message", {})
    if not isinstance(messages, Mapping) or not messages:
        check.add("alarm.message", "required", "a message by language: {'zh-CN': ..., 'en': ...}")
        return None
    for lang, text in messages.items():
        if lang not in LANGUAGES:
            check.add(f"alarm.message.{lang}", "language", f"one of {', '.join(LANGUAGES)}")
        elif not isinstance(text, str) or not 0 < len(text) <= MAX_MESSAGE:
            check.add(f"alarm.message.{lang}", "length", f"1-{MAX_MESSAGE} characters")
    return AlarmSpec(str(severity), {str(k): str(v) for k, v in messages.items()})


def parse_rule(
    condition: object,
    alarm: object,
    *,
    properties: Collection[str] | None = None,
    events: Mapping[str, Collection[str]] | None = None,
) -> RuleSpec:
    """Parse a rule's condition and alarm; raises `InvalidInput` naming every broken field.

    `properties` / `events` (identifier -> output params) are the product's thing model;
    ``None`` skips the model checks (templates, which have no product)."""
    check = _Check()
    spec = None
    if not isinstance(condition, Mapping):
        check.add("condition", "type", "condition must be an object with a kind")
    else:
        spec = _condition(check, condition, properties, events)
    alarm_spec = _alarm(check, alarm)
    if check.errors or spec is None:
        raise InvalidInput(check.errors)
    return RuleSpec(spec, alarm_spec)
