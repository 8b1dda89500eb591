"""What a rule does when it fires: the action specs and their parsing.

A rule's ``actions`` is a JSON list; each entry names its ``type``:

- ``{"type": "set_property", "properties": {"fan": true, "speed": {"expr": "rpm * 2"}}}``
- ``{"type": "call_service", "service": "reset", "input": {"level": {"expr": "level"}}}``
- ``{"type": "webhook", "url": "https://ops.example/hook", "secret": "at least 16 chars"}``
- ``{"type": "derive", "property": "power_kw", "expr": "voltage * current * pf / 1000"}``

Commands go to the firing device unless ``device_id`` names another device of the rule's
enterprise; a value ``{"expr": "..."}`` (that one key only) is a CEL expression over the
firing's values, anything else is sent as it is. Every action may say ``on``: the transitions
it runs on (``raise``, ``clear``, ``fire``; default ``raise`` and ``fire``, so a clear does not
repeat what the raise did unless asked).

The webhook secret arrives in plain text at rule creation and is needed again to sign each
delivery, so it cannot be hashed; the service layer seals it (``sealed_secret``) before the
rule is stored and `public_actions` leaves both out of what the API shows. Stored rules are
read back with ``parse_actions(..., stored=True)``, which accepts only the sealed form.

Alarm entries (``{"type": "alarm", ...}``) belong to the rule itself; a caller that keeps them
in the same list passes ``others={"alarm"}`` and parses them on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import msgspec

from qiantang.domain.errors import FieldError, InvalidInput
from qiantang.domain.expressions import ExpressionError, compile_expression
from qiantang.domain.validation import CompiledModel

__all__ = [
    "ACTION_TYPES",
    "TRANSITIONS",
    "ActionSpec",
    "CallServiceAction",
    "DeriveAction",
    "SetPropertyAction",
    "WebhookAction",
    "check_against_model",
    "expression_of",
    "expression_texts",
    "parse_actions",
    "public_actions",
]

TRANSITIONS = ("raise", "clear", "fire")
_DEFAULT_ON = ("raise", "fire")
MAX_ACTIONS = 20
MAX_URL = 2048
SECRET_MIN, SECRET_MAX = 16, 256
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,50}")


def expression_of(value: object) -> str | None:
    """The CEL text when `value` is an expression (``{"expr": "..."}``), else ``None``."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("expr"), str):
        return str(value["expr"])
    return None


class SetPropertyAction(msgspec.Struct, frozen=True, tag="set_property", tag_field="type"):
    """Set ``rw`` properties on a device (the firing one unless `device_id` is given)."""

    properties: dict[str, Any]
    device_id: int | None = None
    timeout_s: float = 5.0
    on: tuple[str, ...] = _DEFAULT_ON


class CallServiceAction(msgspec.Struct, frozen=True, tag="call_service", tag_field="type"):
    """Call a service of a device with `input` (validated against its thing model)."""

    service: str
    input: dict[str, Any] = {}
    device_id: int | None = None
    timeout_s: float = 5.0
    on: tuple[str, ...] = _DEFAULT_ON


class WebhookAction(msgspec.Struct, frozen=True, tag="webhook", tag_field="type"):
    """POST the firing as signed JSON to `url`. `secret` is plain text on input only;
    what is stored is `sealed_secret` (see the module docstring)."""

    url: str
    secret: str | None = None
    sealed_secret: str | None = None
    timeout_s: float = 5.0
    on: tuple[str, ...] = _DEFAULT_ON


class DeriveAction(msgspec.Struct, frozen=True, tag="derive", tag_field="type"):
    """Compute `expr` and write it back as property `property` of the firing device."""

    property: str
    expr: str
    on: tuple[str, ...] = _DEFAULT_ON


ActionSpec: TypeAlias = SetPropertyAction | CallServiceAction | WebhookAction | DeriveAction
ACTION_TYPES = ("set_property", "call_service", "webhook", "derive")


class _Errors:
    """Collects the broken rules of one action at ``{prefix}.{key}``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items: list[FieldError] = []

    def add(self, key: str, rule: str, message: str) -> None:
        self.items.append(FieldError(f"{self.prefix}.{key}" if key else self.prefix, rule, message))


def _text(errors: _Errors, obj: Mapping[str, Any], key: str, limit: int) -> str:
    value = obj.get(key)
    if value is None:
        errors.add(key, "required", f"{key} is required")
        return ""
    if not isinstance(value, str) or not value.strip():
        errors.add(key, "type", f"{key} must be a non-empty string")
        return ""
    if len(value) > limit:
        errors.add(key, "max_length", f"{key} is longer than {limit} characters")
    return value


def _expression(errors: _Errors, key: str, text: str) -> None:
    try:
        compile_expression(text, key)
    except ExpressionError as err:
        errors.items.extend(err.prefixed(errors.prefix).errors)


def _identifier(errors: _Errors, obj: Mapping[str, Any], key: str) -> str:
    ident = _text(errors, obj, key, 50)
    if ident and not _IDENTIFIER.fullmatch(ident):
        errors.add(key, "identifier", "letters, digits and underscores only")
    return ident


def _params(errors: _Errors, obj: Mapping[str, Any], key: str, required: bool) -> None:
    params = obj.get(key)
    if params is None:
        if required:
            errors.add(key, "required", f"{key} is required")
        return
    if not isinstance(params, dict):
        errors.add(key, "type", f"{key} must be an object")
        return
    if required and not params:
        errors.add(key, "min_items", "give at least one value")
    for name, value in params.items():
        if not _IDENTIFIER.fullmatch(str(name)):
            errors.add(f"{key}.{name}", "identifier", "letters, digits and underscores only")
        if isinstance(value, dict) and set(value) == {"expr"}:
            if not isinstance(value["expr"], str) or not value["expr"].strip():
                errors.add(f"{key}.{name}.expr", "type", "expr must be a non-empty string")
            else:
                _expression(errors, f"{key}.{name}.expr", value["expr"])


def _common(errors: _Errors, obj: Mapping[str, Any]) -> None:
    on = obj.get("on")
    if on is not None and (
        not isinstance(on, list | tuple) or not on or any(t not in TRANSITIONS for t in on)
    ):
        errors.add("on", "transitions", f"a non-empty list of {', '.join(TRANSITIONS)}")
    timeout = obj.get("timeout_s")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60
    ):
        errors.add("timeout_s", "range", "timeout_s must be a number in (0, 60]")
    device_id = obj.get("device_id")
    if device_id is not None and (
        isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 1
    ):
        errors.add("device_id", "type", "device_id must be a positive integer")


def _check_set_property(errors: _Errors, obj: Mapping[str, Any], stored: bool) -> None:
    _params(errors, obj, "properties", required=True)


def _check_call_service(errors: _Errors, obj: Mapping[str, Any], stored: bool) -> None:
    _identifier(errors, obj, "service")
    _params(errors, obj, "input", required=False)


def _check_derive(errors: _Errors, obj: Mapping[str, Any], stored: bool) -> None:
    _identifier(errors, obj, "property")
    text = _text(errors, obj, "expr", 2000)
    if text:
        _expression(errors, "expr", text)


def _check_url(errors: _Errors, url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        errors.add("url", "url", "not a valid URL")
        return
    if parts.scheme not in ("http", "https"):
        errors.add("url", "scheme", "the URL must start with http:// or https://")
    elif not parts.hostname:
        errors.add("url", "host", "the URL names no host")
    elif parts.username is not None or parts.password is not None:
        errors.add("url", "credentials", "no credentials in the URL: sign with the secret")


def _check_webhook(errors: _Errors, obj: Mapping[str, Any], stored: bool) -> None:
    url = _text(errors, obj, "url", MAX_URL)
    if url:
        _check_url(errors, url)
    if stored:
        _text(errors, obj, "sealed_secret", 4096)
        if obj.get("secret") is not None:
            errors.add("secret", "sealed", "a stored webhook keeps its secret sealed only")
        return
    if "sealed_secret" in obj:
        errors.add("sealed_secret", "unknown_field", "give the secret itself")
    secret = _text(errors, obj, "secret", SECRET_MAX)
    if secret and len(secret) < SECRET_MIN:
        errors.add("secret", "min_length", f"the secret needs at least {SECRET_MIN} characters")


_CHECKS: dict[str, Callable[[_Errors, Mapping[str, Any], bool], None]] = {
    "set_property": _check_set_property,
    "call_service": _check_call_service,
    "webhook": _check_webhook,
    "derive": _check_derive,
}


_KINDS: dict[str, type[ActionSpec]] = {
    "set_property": SetPropertyAction,
    "call_service": CallServiceAction,
    "webhook": WebhookAction,
    "derive": DeriveAction,
}


def _unknown_fields(errors: _Errors, obj: Mapping[str, Any], kind: type[ActionSpec]) -> None:
    known = {f.name for f in msgspec.structs.fields(kind)} | {"type"}
    for key in obj:
        if key not in known:
            errors.add(str(key), "unknown_field", f"{kind.__name__} has no field {key!r}")


def _parse_one(raw: object, prefix: str, stored: bool) -> tuple[ActionSpec | None, _Errors]:
    errors = _Errors(prefix)
    if not isinstance(raw, dict):
        errors.add("", "type", "an action must be an object")
        return None, errors
    kind = raw.get("type")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None or not isinstance(kind, str):
        errors.add("type", "action_type", f"type must be one of {', '.join(ACTION_TYPES)}")
        return None, errors
    _unknown_fields(errors, raw, _KINDS[kind])
    _common(errors, raw)
    check(errors, raw, stored)
    if errors.items:
        return None, errors
    try:
        spec: ActionSpec = msgspec.convert(raw, ActionSpec, strict=False)
    except msgspec.ValidationError as err:  # a shape the checks above did not foresee
        errors.add("", "type", str(err))
        return None, errors
    return spec, errors


def _self_loop(spec: ActionSpec, prefix: str, reads: Collection[str]) -> list[FieldError]:
    if isinstance(spec, DeriveAction) and spec.property in reads:
        message = f"the rule's condition reads {spec.property!r}: deriving it would re-trigger it"
        return [FieldError(f"{prefix}.property", "self_loop", message)]
    return []


def parse_actions(
    raw: object,
    field: str = "actions",
    *,
    stored: bool = False,
    others: Collection[str] = (),
    reads: Collection[str] = (),
) -> list[ActionSpec]:
    """Parse a rule's ``actions`` list; raises `InvalidInput` naming ``actions[i].key`` for
    every broken rule.

    `stored`: webhooks carry ``sealed_secret`` (read back from the registry). `others`:
    entries of these types (e.g. ``alarm``) are skipped, not judged. `reads`: the names the
    rule's condition reads; a derive of one of them is refused (``self_loop``), since each
    derived point would trigger the rule again."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput.of(field, "type", "actions must be a list")
    if len(raw) > MAX_ACTIONS:
        raise InvalidInput.of(field, "max_items", f"at most {MAX_ACTIONS} actions")
    specs: list[ActionSpec] = []
    problems: list[FieldError] = []
    for i, item in enumerate(raw):
        if isinstance(item, dict) and item.get("type") in others:
            continue
        spec, errors = _parse_one(item, f"{field}[{i}]", stored)
        problems.extend(errors.items)
        if spec is not None:
            specs.append(spec)
            problems.extend(_self_loop(spec, f"{field}[{i}]", reads))
    if problems:
        raise InvalidInput(problems)
    return specs


def expression_texts(spec: ActionSpec) -> list[str]:
    """Every CEL expression an action evaluates when it runs."""
    if isinstance(spec, DeriveAction):
        return [spec.expr]
    if isinstance(spec, SetPropertyAction):
        params: Mapping[str, Any] = spec.properties
    elif isinstance(spec, CallServiceAction):
        params = spec.input
    else:
        return []
    return [text for v in params.values() if (text := expression_of(v)) is not None]


def public_actions(actions: list[ActionSpec]) -> list[dict[str, Any]]:
    """The actions as the API shows them: webhook secrets (plain or sealed) left out,
    ``has_secret`` in their place."""
    shown: list[dict[str, Any]] = []
    for spec in actions:
        item: dict[str, Any] = msgspec.to_builtins(spec)
        if isinstance(spec, WebhookAction):
            item.pop("secret", None)
            item.pop("sealed_secret", None)
            item["has_secret"] = bool(spec.secret or spec.sealed_secret)
        shown.append(item)
    return shown


def _model_errors(spec: ActionSpec, model: CompiledModel, prefix: str) -> list[FieldError]:
    props = {p.identifier: p for p in model.model.properties}
    errors: list[FieldError] = []
    if isinstance(spec, DeriveAction) and spec.property not in props:
        errors.append(
            FieldError(f"{prefix}.property", "unknown_property", "not in the product's thing model")
        )
    elif isinstance(spec, SetPropertyAction) and spec.device_id is None:
        for key in spec.properties:
            if key not in props:
                errors.append(
                    FieldError(f"{prefix}.properties.{key}", "unknown_property", "not in the model")
                )
            elif props[key].access_mode != "rw":
                errors.append(
                    FieldError(
                        f"{prefix}.properties.{key}", "read_only", "the property is read-only"
                    )
                )
    elif (
        isinstance(spec, CallServiceAction)
        and spec.device_id is None
        and not any(s.identifier == spec.service for s in model.model.services)
    ):
        errors.append(
            FieldError(f"{prefix}.service", "unknown_service", "no such service in the model")
        )
    return errors


def check_against_model(
    actions: list[ActionSpec], model: CompiledModel, field: str = "actions"
) -> None:
    """Refuse, at rule creation, actions the rule's product cannot take: a derive of a
    property the thing model lacks, a set of an unknown or read-only property, an unknown
    service (actions aimed at another `device_id` are checked when they run). Positions are
    those of `actions`. Raises `InvalidInput` naming ``actions[i].property`` and so on."""
    errors = [e for i, s in enumerate(actions) for e in _model_errors(s, model, f"{field}[{i}]")]
    if errors:
        raise InvalidInput(errors)
