"""The compiled validator for device telemetry, built once per thing-model version.

`compile_model` turns every property, event output and service input/output into a checker
closure with its specs bound at compile time, so validating a message is one dict lookup and
one call per value. A checker returns the normalised value or a `_Fail` holding
``(path suffix, rule, message)`` triples; the field path is only built for rejected values.

Rules (rule names in brackets):

- int: an int, or a float with no fraction (normalised to int); bools are refused [type];
  within min/max [min, max] (the 64-bit range when unset); ``(value - min) % step == 0``
  [step] (from 0 when min is unset).
- float, double: an int or float, finite (normalised to float) [type]; min/max as above;
  ``value = min + k * step`` for a whole k, within 1e-6 of a step plus a few ulp of the
  operands' rounding [step].
- enum: an int that is a member's value [type, enum_member].
- bool: true/false, or 0/1 as Alink sends them (normalised to bool) [type].
- text: a string of at most `length` bytes of UTF-8 (Alibaba counts bytes; 10240 when
  unset) [type, max_length].
- date: UTC milliseconds as a non-negative int, or as a string of digits as TSL defines
  the date type (normalised to int) [type].
- struct: an object whose keys are declared fields [unknown_field], each valid (fields may
  be left out) — field path ``identifier.field``.
- array: a list of at most `size` items [array_size], each valid — ``identifier[3]``.

Unknown keys are rejected [unknown_property, unknown_param]; so are unknown events and
services [unknown_event, unknown_service]. Nothing here raises on any input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import cast

from qiantang.domain.errors import FieldError
from qiantang.domain.telemetry import Value
from qiantang.domain.thingmodel import (
    TEXT_LENGTH_MAX,
    ArrayType,
    BoolType,
    DataType,
    DateType,
    EnumType,
    NumberType,
    Param,
    StructType,
    TextType,
    ThingModel,
)
from qiantang.domain.thingmodel_input import INT64_MAX, INT64_MIN

__all__ = ["CompiledModel", "compile_model", "compile_type"]

_FLOAT_INT_MAX = 2**1023  # ints at or beyond this do not convert to a float safely
_FLOAT_INT_MIN = -_FLOAT_INT_MAX
Checker = Callable[[object], object]
"""Returns the normalised value, or a `_Fail`."""


class _Fail:
    """A rejected value: ``(path suffix, rule, message)`` for each broken rule."""

    __slots__ = ("errors",)

    def __init__(self, errors: list[tuple[str, str, str]]) -> None:
        self.errors = errors


def _fail(rule: str, message: str) -> _Fail:
    return _Fail([("", rule, message)])


def _key(key: object) -> str:
    text = str(key)
    return text if len(text) <= 64 else text[:61] + "..."


_NOT_INT = _fail("type", "expected an integer")
_NOT_NUMBER = _fail("type", "expected a finite number")


def _int_checker(t: NumberType) -> Checker:
    lo = INT64_MIN if t.min is None else t.min
    hi = INT64_MAX if t.max is None else t.max
    base = 0 if t.min is None else t.min
    step = t.step
    below, above = (
        _fail("min", f"less than the minimum {lo}"),
        _fail("max", f"more than the maximum {hi}"),
    )
    off_step = _fail("step", f"not a multiple of the step {step} from {base}")

    def check(v: object) -> object:
        if type(v) is not int:
            if type(v) is float and v.is_integer():
                v = int(v)
            else:
                return _NOT_INT
        if v < lo:
            return below
        if v > hi:
            return above
        if step is not None and (v - base) % step:
            return off_step
        return v

    return check


def _float_checker(t: NumberType) -> Checker:
    lo = -math.inf if t.min is None else float(t.min)
    hi = math.inf if t.max is None else float(t.max)
    base = 0.0 if t.min is None else float(t.min)
    step = None if t.step is None else float(t.step)
    abs_base = abs(base)
    below, above = (
        _fail("min", f"less than the minimum {t.min}"),
        _fail("max", f"more than the maximum {t.max}"),
    )
    off_step = _fail("step", f"not a multiple of the step {t.step} from {base}")
    isfinite, remainder = math.isfinite, math.remainder

    def check(v: object) -> object:
        if type(v) is float:
            if not isfinite(v):
                return _NOT_NUMBER
        elif type(v) is int:
            if not _FLOAT_INT_MIN < v < _FLOAT_INT_MAX:
                return _NOT_NUMBER
            v = float(v)
        else:
            return _NOT_NUMBER
        if v < lo:
            return below
        if v > hi:
            return above
        if step is not None:
            d = v - base  # inf only when the range spans nearly all floats
            tolerance = step * 1e-6 + (abs(v) + abs_base) * 1e-15  # ~4 ulp of the operands
            if not isfinite(d) or abs(remainder(d, step)) > tolerance:
                return off_step
        return v

    return check


def _text_checker(t: TextType) -> Checker:
    limit = TEXT_LENGTH_MAX if t.length is None else t.length
    quick = limit // 4  # no string of this many characters can exceed `limit` bytes
    not_text, too_long = (
        _fail("type", "expected a string"),
        _fail("max_length", f"longer than {limit} bytes"),
    )

    def check(v: object) -> object:
        if type(v) is not str:
            return not_text
        n = len(v)
        if n > quick and (n > limit or len(v.encode("utf-8", "surrogatepass")) > limit):
            return too_long
        return v

    return check


def _enum_checker(t: EnumType) -> Checker:
    members = frozenset(value for value, _ in t.members)
    values = ", ".join(str(value) for value, _ in t.members[:20])
    not_member = _fail("enum_member", f"not one of the enum values {values}")

    def check(v: object) -> object:
        if type(v) is not int:
            return _NOT_INT
        return v if v in members else not_member

    return check


_NOT_BOOL = _fail("type", "expected true, false, 0 or 1")


def _check_bool(v: object) -> object:
    if v is True or v is False:
        return v
    if type(v) is int and (v == 0 or v == 1):
        return v == 1
    return _NOT_BOOL


_NOT_DATE = _fail("type", "expected UTC milliseconds as a non-negative integer or digit string")


def _check_date(v: object) -> object:
    if type(v) is str:
        if not (0 < len(v) <= 19 and v.isascii() and v.isdigit()):
            return _NOT_DATE
        v = int(v)
    elif type(v) is not int:
        return _NOT_DATE
    return v if 0 <= v <= INT64_MAX else _NOT_DATE


def _struct_checker(t: StructType) -> Checker:
    fields = {f.identifier: compile_type(f.data_type) for f in t.fields}
    not_object = _fail("type", "expected an object")

    def check(v: object) -> object:
        if not isinstance(v, Mapping):
            return not_object
        out: dict[object, object] = {}
        errors: list[tuple[str, str, str]] = []
        for key, item in v.items():
            field_check = fields.get(key)
            if field_check is None:
                errors.append((f".{_key(key)}", "unknown_field", "no such field in the struct"))
                continue
            result = field_check(item)
            if type(result) is _Fail:
                errors.extend((f".{key}{s}", rule, msg) for s, rule, msg in result.errors)
            else:
                out[key] = result
        return _Fail(errors) if errors else out

    return check


def _array_checker(t: ArrayType) -> Checker:
    size, item_check = t.size, compile_type(t.item)
    not_list, too_many = (
        _fail("type", "expected an array"),
        _fail("array_size", f"more than {size} items"),
    )

    def check(v: object) -> object:
        if not isinstance(v, list | tuple):
            return not_list
        if len(v) > size:
            return too_many
        out: list[object] = []
        errors: list[tuple[str, str, str]] = []
        for i, item in enumerate(v):
            result = item_check(item)
            if type(result) is _Fail:
                errors.extend((f"[{i}]{s}", rule, msg) for s, rule, msg in result.errors)
            else:
                out.append(result)
        return _Fail(errors) if errors else out

    return check


def compile_type(data_type: DataType) -> Checker:
    """A checker for one data type: returns the normalised value, or a failure."""
    if isinstance(data_type, NumberType):
        return _int_checker(data_type) if data_type.type == "int" else _float_checker(data_type)
    if isinstance(data_type, TextType):
        return _text_checker(data_type)
    if isinstance(data_type, EnumType):
        return _enum_checker(data_type)
    if isinstance(data_type, BoolType):
        return _check_bool
    if isinstance(data_type, DateType):
        return _check_date
    if isinstance(data_type, StructType):
        return _struct_checker(data_type)
    return _array_checker(data_type)


def _compile_params(params: tuple[Param, ...]) -> dict[str, Checker]:
    return {p.identifier: compile_type(p.data_type) for p in params}


def _validate(
    checks: Mapping[str, Checker], values: Mapping[str, object], unknown_rule: str, what: str
) -> tuple[dict[str, Value], list[FieldError]]:
    accepted: dict[str, object] = {}
    errors: list[FieldError] = []
    if not isinstance(values, Mapping):
        return {}, [FieldError("", "type", f"expected an object of {what} values")]
    for key, raw in values.items():
        check = checks.get(key)
        if check is None:
            errors.append(
                FieldError(_key(key), unknown_rule, f"no {what} {_key(key)!r} in the thing model")
            )
            continue
        result = check(raw)
        if type(result) is _Fail:
            errors.extend(FieldError(f"{key}{s}", rule, msg) for s, rule, msg in result.errors)
        else:
            accepted[key] = result
    return cast(dict[str, Value], accepted), errors


class CompiledModel:
    """A thing model compiled for fast validation of what devices send and receive."""

    __slots__ = ("_events", "_inputs", "_outputs", "_properties", "model")

    def __init__(self, model: ThingModel) -> None:
        self.model = model
        self._properties = {p.identifier: compile_type(p.data_type) for p in model.properties}
        self._events = {e.identifier: _compile_params(e.output_data) for e in model.events}
        self._inputs = {s.identifier: _compile_params(s.input_data) for s in model.services}
        self._outputs = {s.identifier: _compile_params(s.output_data) for s in model.services}

    def validate_properties(
        self, values: Mapping[str, object]
    ) -> tuple[dict[str, Value], list[FieldError]]:
        """The accepted, normalised property values and one error per broken rule of the
        rejected ones (field ``identifier``, ``identifier.field``, ``identifier[3]``)."""
        return _validate(self._properties, values, "unknown_property", "property")

    def validate_event(
        self, identifier: str, output: Mapping[str, object]
    ) -> tuple[dict[str, Value], list[FieldError]]:
        """Like `validate_properties`, for the output params of event `identifier`."""
        checks = self._events.get(identifier) if isinstance(identifier, str) else None
        if checks is None:
            return {}, [
                FieldError(_key(identifier), "unknown_event", "no such event in the thing model")
            ]
        return _validate(checks, output, "unknown_param", "param")

    def validate_service_input(
        self, identifier: str, params: Mapping[str, object]
    ) -> tuple[dict[str, Value], list[FieldError]]:
        """Like `validate_properties`, for the input params of service `identifier`."""
        return self._service(self._inputs, identifier, params)

    def validate_service_output(
        self, identifier: str, params: Mapping[str, object]
    ) -> tuple[dict[str, Value], list[FieldError]]:
        """Like `validate_properties`, for the output params of service `identifier`."""
        return self._service(self._outputs, identifier, params)

    @staticmethod
    def _service(
        table: dict[str, dict[str, Checker]], identifier: str, params: Mapping[str, object]
    ) -> tuple[dict[str, Value], list[FieldError]]:
        checks = table.get(identifier) if isinstance(identifier, str) else None
        if checks is None:
            return {}, [
                FieldError(
                    _key(identifier), "unknown_service", "no such service in the thing model"
                )
            ]
        return _validate(checks, params, "unknown_param", "param")


def compile_model(model: ThingModel) -> CompiledModel:
    """Compile `model` once; reuse the result for every message of that model version."""
    return CompiledModel(model)
