"""The compiled telemetry validator: normalisation, rejections with field and rule, and
property-based checks that it never raises and accounts for every input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qiantang.domain.thingmodel import (
    ArrayType,
    BoolType,
    DataType,
    DateType,
    EnumType,
    NumberType,
    StructType,
    TextType,
    ThingModel,
)
from qiantang.domain.validation import CompiledModel, compile_model
from qiantang.protocols.tsl import import_tsl
from tests.unit.test_thingmodel import json_values, model_dicts

TSL = Path(__file__).resolve().parents[1] / "data" / "tsl"


def _prop(ident: str, data_type: dict[str, Any], mode: str = "r") -> dict[str, Any]:
    return {"identifier": ident, "name": ident, "access_mode": mode, "data_type": data_type}


def _param(ident: str, data_type: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": ident, "name": ident, "data_type": data_type}


MODEL = ThingModel.from_dict(
    {
        "properties": [
            _prop("count", {"type": "int", "specs": {"min": 0, "max": 100, "step": 5}}),
            _prop("level", {"type": "int"}),
            _prop("pressure", {"type": "float", "specs": {"min": 0.6, "max": 0.9, "step": 0.01}}),
            _prop("power", {"type": "double", "specs": {"min": -10, "max": 1e6}}),
            _prop(
                "state",
                {
                    "type": "enum",
                    "specs": {
                        "members": [{"value": 0, "name": "停机"}, {"value": 2, "name": "运行"}]
                    },
                },
            ),
            _prop("remote", {"type": "bool", "specs": {"false": "关", "true": "开"}}, "rw"),
            _prop("model", {"type": "text", "specs": {"length": 12}}),
            _prop("note", {"type": "text"}),
            _prop("since", {"type": "date"}),
            _prop(
                "runtime",
                {
                    "type": "struct",
                    "specs": {
                        "fields": [
                            _param("hours", {"type": "int", "specs": {"min": 0}}),
                            _param("energy", {"type": "double"}),
                            _param("ok", {"type": "bool", "specs": {"false": "否", "true": "是"}}),
                        ]
                    },
                },
            ),
            _prop(
                "samples",
                {
                    "type": "array",
                    "specs": {"size": 4, "item": {"type": "float", "specs": {"max": 10}}},
                },
            ),
            _prop(
                "tools",
                {
                    "type": "array",
                    "specs": {
                        "size": 3,
                        "item": {
                            "type": "struct",
                            "specs": {
                                "fields": [
                                    _param("no", {"type": "int", "specs": {"min": 1, "max": 60}})
                                ]
                            },
                        },
                    },
                },
            ),
        ],
        "events": [
            {
                "identifier": "overTemp",
                "name": "超温报警",
                "type": "alert",
                "output_data": [_param("temp", {"type": "float", "specs": {"max": 200}})],
            }
        ],
        "services": [
            {
                "identifier": "start",
                "name": "远程启停",
                "call_type": "async",
                "input_data": [
                    _param(
                        "cmd",
                        {"type": "enum", "specs": {"members": [{"value": 1, "name": "启动"}]}},
                    )
                ],
                "output_data": [
                    _param("result", {"type": "bool", "specs": {"false": "败", "true": "成"}})
                ],
            }
        ],
    }
)
COMPILED = compile_model(MODEL)


def accepts(values: dict[str, Any]) -> dict[str, Any]:
    accepted, errors = COMPILED.validate_properties(values)
    assert errors == []
    return accepted


def rejects(values: dict[str, Any]) -> list[tuple[str, str]]:
    accepted, errors = COMPILED.validate_properties(values)
    assert accepted == {}
    return [(e.field, e.rule) for e in errors]


def test_valid_values_are_accepted_and_normalised() -> None:
    out = accepts(
        {
            "count": 15.0,
            "level": -(2**40),
            "pressure": 0.1 + 0.62,
            "power": 3,
            "state": 2,
            "remote": 1,
            "model": "GA-37VSD+",
            "since": "1700000000000",
            "runtime": {"hours": 12, "ok": 0},
            "samples": [1, 2.5],
            "tools": [{"no": 1}, {"no": 60}],
        }
    )
    assert out["count"] == 15 and type(out["count"]) is int
    assert type(out["power"]) is float
    assert out["remote"] is True
    assert out["since"] == 1_700_000_000_000
    assert out["runtime"] == {"hours": 12, "ok": False}
    assert out["samples"] == [1.0, 2.5] and type(out["samples"][0]) is float
    assert accepts({"remote": False, "since": 0}) == {"remote": False, "since": 0}


@pytest.mark.parametrize(
    ("values", "field", "rule"),
    [
        ({"count": 2.5}, "count", "type"),
        ({"count": True}, "count", "type"),
        ({"count": "5"}, "count", "type"),
        ({"count": -5}, "count", "min"),
        ({"count": 105}, "count", "max"),
        ({"count": 7}, "count", "step"),
        ({"level": 2**63}, "level", "max"),
        ({"pressure": 0.5}, "pressure", "min"),
        ({"pressure": 0.95}, "pressure", "max"),
        ({"pressure": 0.615}, "pressure", "step"),
        ({"pressure": math.nan}, "pressure", "type"),
        ({"power": math.inf}, "power", "type"),
        ({"power": 10**400}, "power", "type"),
        ({"power": False}, "power", "type"),
        ({"state": 1}, "state", "enum_member"),
        ({"state": "2"}, "state", "type"),
        ({"state": True}, "state", "type"),
        ({"remote": 2}, "remote", "type"),
        ({"remote": "true"}, "remote", "type"),
        ({"remote": 1.0}, "remote", "type"),
        ({"model": "x" * 13}, "model", "max_length"),
        ({"model": "螺杆机型号"}, "model", "max_length"),
        ({"model": 12}, "model", "type"),
        ({"note": "字" * 3414}, "note", "max_length"),
        ({"since": -1}, "since", "type"),
        ({"since": "17e11"}, "since", "type"),
        ({"since": "١٢٣"}, "since", "type"),
        ({"since": 1.7e12}, "since", "type"),
        ({"runtime": [1]}, "runtime", "type"),
        ({"runtime": {"hours": -1}}, "runtime.hours", "min"),
        ({"runtime": {"bogus": 1}}, "runtime.bogus", "unknown_field"),
        ({"samples": [1, 2, 3, 4, 5]}, "samples", "array_size"),
        ({"samples": [1, 11, "x"]}, "samples[1]", "max"),
        ({"samples": [1, 11, "x"]}, "samples[2]", "type"),
        ({"samples": {"0": 1}}, "samples", "type"),
        ({"tools": [{"no": 1}, {"no": 0}]}, "tools[1].no", "min"),
        ({"tools": [{"no": 1}, {"slot": 3}]}, "tools[1].slot", "unknown_field"),
        ({"humidity": 40}, "humidity", "unknown_property"),
        ({"remote": None}, "remote", "type"),
    ],
)
def test_bad_values_are_rejected_with_field_and_rule(
    values: dict[str, Any], field: str, rule: str
) -> None:
    assert (field, rule) in rejects(values)


def test_text_length_counts_utf8_bytes() -> None:
    assert accepts({"model": "螺杆机型"}) == {"model": "螺杆机型"}  # 12 bytes
    assert accepts({"note": "字" * 3413}) == {"note": "字" * 3413}  # 10239 bytes


def test_one_bad_value_does_not_reject_the_others() -> None:
    accepted, errors = COMPILED.validate_properties({"count": 10, "state": 9, "pressure": 0.8})
    assert accepted == {"count": 10, "pressure": 0.8}
    assert [(e.field, e.rule) for e in errors] == [("state", "enum_member")]
    assert errors[0].message


def test_every_broken_rule_inside_a_value_is_reported() -> None:
    errors = rejects({"runtime": {"hours": 1.5, "energy": "x", "extra": 1}})
    assert errors == [
        ("runtime.hours", "type"),
        ("runtime.energy", "type"),
        ("runtime.extra", "unknown_field"),
    ]


def test_events_and_services_validate_their_params() -> None:
    assert COMPILED.validate_event("overTemp", {"temp": 90}) == ({"temp": 90.0}, [])
    _, errors = COMPILED.validate_event("overTemp", {"temp": 250, "x": 1})
    assert [(e.field, e.rule) for e in errors] == [("temp", "max"), ("x", "unknown_param")]
    _, errors = COMPILED.validate_event("nope", {})
    assert [(e.field, e.rule) for e in errors] == [("nope", "unknown_event")]
    assert COMPILED.validate_service_input("start", {"cmd": 1}) == ({"cmd": 1}, [])
    _, errors = COMPILED.validate_service_input("start", {"cmd": 0})
    assert [(e.field, e.rule) for e in errors] == [("cmd", "enum_member")]
    assert COMPILED.validate_service_output("start", {"result": 1}) == ({"result": True}, [])
    _, errors = COMPILED.validate_service_output("stop", {"result": 1})
    assert [(e.field, e.rule) for e in errors] == [("stop", "unknown_service")]


def test_non_mapping_input_is_an_error_not_an_exception() -> None:
    _, errors = COMPILED.validate_properties([1, 2])  # type: ignore[arg-type]
    assert [e.rule for e in errors] == ["type"]
    _, errors = COMPILED.validate_event(["x"], {})  # type: ignore[arg-type]
    assert [e.rule for e in errors] == ["unknown_event"]


def test_a_realistic_air_compressor_message_passes() -> None:
    doc = json.loads((TSL / "air_compressor.json").read_text(encoding="utf-8"))
    compiled = compile_model(import_tsl(doc).model)
    message = {
        "exhaustPressure": 0.72,
        "exhaustTemperature": 86.4,
        "motorCurrent": 112.3,
        "activePower": 55,
        "motorSpeed": 2980,
        "runState": 1,
        "remoteEnabled": 1,
        "runtimeInfo": {"totalRunHours": 12034, "startCount": 881, "energyConsumption": 402113.25},
        "vibrationSamples": [1.2, 1.3, 1.1, 2.0],
        "lastMaintenance": "1714521600000",
        "controllerVersion": "MAM-890 v2.13",
    }
    accepted, errors = compiled.validate_properties(message)
    assert errors == []
    assert accepted["remoteEnabled"] is True
    assert accepted["lastMaintenance"] == 1_714_521_600_000
    _, errors = compiled.validate_properties({"exhaustPressure": 1.7, "runState": 7})
    assert [(e.field, e.rule) for e in errors] == [
        ("exhaustPressure", "max"),
        ("runState", "enum_member"),
    ]


# --- properties -----------------------------------------------------------------------------

HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def valid_values(dt: DataType) -> st.SearchStrategy[Any]:
    """Values that satisfy `dt`, already in normalised form."""
    if isinstance(dt, NumberType):
        return _numbers(dt)
    if isinstance(dt, TextType):
        limit = dt.length or 10240
        return st.text(max_size=min(limit, 30)).filter(
            lambda s: len(s.encode("utf-8", "surrogatepass")) <= limit
        )
    if isinstance(dt, EnumType):
        return st.sampled_from([v for v, _ in dt.members])
    if isinstance(dt, BoolType):
        return st.booleans()
    if isinstance(dt, DateType):
        return st.integers(0, 2**63 - 1)
    if isinstance(dt, StructType):
        return st.fixed_dictionaries(
            {}, optional={f.identifier: valid_values(f.data_type) for f in dt.fields}
        )
    assert isinstance(dt, ArrayType)
    return st.lists(valid_values(dt.item), max_size=min(dt.size, 4))


def _numbers(dt: NumberType) -> st.SearchStrategy[Any]:
    if dt.type == "int":
        lo = -(2**63) if dt.min is None else int(dt.min)
        hi = 2**63 - 1 if dt.max is None else int(dt.max)
        if dt.step is None:
            return st.integers(lo, hi)
        base, step = (0 if dt.min is None else lo), int(dt.step)
        return st.integers(0, min((hi - base) // step, 10**6)).map(lambda k: base + k * step)
    flo = -1e9 if dt.min is None else float(dt.min)
    fhi = 1e9 if dt.max is None else float(dt.max)
    if dt.step is None:
        return st.floats(flo, fhi)
    fbase, fstep = (0.0 if dt.min is None else flo), float(dt.step)
    top = min(math.floor((fhi - fbase) / fstep), 10**6)
    return (
        st.integers(0, max(top, 0))
        .map(lambda k: fbase + k * fstep)
        .filter(lambda v: flo <= v <= fhi)
    )


@st.composite
def model_and_valid_values(draw: st.DrawFn) -> tuple[CompiledModel, dict[str, Any]]:
    model = ThingModel.from_dict(draw(model_dicts()))
    values = {p.identifier: draw(valid_values(p.data_type)) for p in model.properties}
    return compile_model(model), values


@settings(max_examples=150, suppress_health_check=HEALTH, deadline=None)
@given(model_and_valid_values())
def test_valid_values_are_accepted_unchanged(case: tuple[CompiledModel, dict[str, Any]]) -> None:
    compiled, values = case
    accepted, errors = compiled.validate_properties(values)
    assert errors == []
    assert accepted == values


@st.composite
def model_and_any_values(draw: st.DrawFn) -> tuple[CompiledModel, dict[str, Any]]:
    model = ThingModel.from_dict(draw(model_dicts()))
    known = [p.identifier for p in model.properties]
    keys = st.sampled_from(known) | st.text(max_size=8) if known else st.text(max_size=8)
    values = draw(
        st.dictionaries(
            keys, json_values | st.sampled_from([0, 1, 1.5, -1, 2**64, "1"]), max_size=8
        )
    )
    return compile_model(model), values


@settings(max_examples=200, suppress_health_check=HEALTH, deadline=None)
@given(model_and_any_values())
def test_every_value_is_accepted_or_has_an_error(
    case: tuple[CompiledModel, dict[str, Any]],
) -> None:
    compiled, values = case
    accepted, errors = compiled.validate_properties(values)
    assert set(accepted) <= set(values)
    for key in set(values) - set(accepted):
        assert any(e.field == key or e.field.startswith((f"{key}.", f"{key}[")) for e in errors), (
            key
        )
    assert bool(errors) == (len(accepted) < len(values))
    assert all(e.rule and e.message for e in errors)


@settings(max_examples=100, suppress_health_check=HEALTH, deadline=None)
@given(model_dicts(), st.text(max_size=8), json_values)
def test_events_and_services_never_raise(data: dict[str, Any], ident: str, params: Any) -> None:
    model = ThingModel.from_dict(data)
    compiled = compile_model(model)
    idents = [ident, *(e.identifier for e in model.events), *(s.identifier for s in model.services)]
    for name in idents:
        for result in (
            compiled.validate_event(name, params),
            compiled.validate_service_input(name, params),
            compiled.validate_service_output(name, params),
        ):
            accepted, errors = result
            assert isinstance(accepted, dict)
            assert errors or accepted == params
