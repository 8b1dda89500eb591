"""ThingModel: our JSON form, its validation rules, and property-based round trips.

The hypothesis strategies here (`model_dicts`, `json_values`, `mutated`) are reused by
test_tsl.py and test_validation.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qiantang.domain.errors import InvalidInput, NotFound
from qiantang.domain.thingmodel import (
    RESERVED_IDENTIFIERS,
    ArrayType,
    BoolType,
    EnumType,
    NumberType,
    StructType,
    TextType,
    ThingModel,
)

# --- strategies -----------------------------------------------------------------------------

identifiers = st.text("abcdefpstvXYZ_0129", min_size=1, max_size=12).filter(
    lambda s: s not in RESERVED_IDENTIFIERS
)
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)
labels = st.sampled_from(["停机", "运行", "关", "开", "报警", "正常", "A", "Auto mode"])


@st.composite
def number_specs(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    specs: dict[str, Any] = {}
    if kind == "int":
        lo, hi = sorted(draw(st.lists(st.integers(-(10**6), 10**6), min_size=2, max_size=2)))
        step = draw(st.none() | st.integers(1, max(1, hi - lo)))
    else:
        bounds = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
        lo, hi = sorted(draw(st.lists(bounds, min_size=2, max_size=2)))
        span = hi - lo
        step = None
        if span > 1e-3:
            step = draw(st.none() | st.floats(max(span * 1e-6, 1e-6), span))
    if draw(st.booleans()):
        specs["min"] = lo
    if draw(st.booleans()):
        specs["max"] = hi
    if step is not None and ("min" in specs) == ("max" in specs):
        specs["step"] = step
    if draw(st.booleans()):
        specs["unit"] = draw(st.sampled_from(["MPa", "°C", "kW", "r/min", "%"]))
        specs["unit_name"] = draw(st.sampled_from(["兆帕", "摄氏度", "千瓦", "转每分钟", "百分比"]))
    return specs


def scalar_types(allow: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    options: list[st.SearchStrategy[dict[str, Any]]] = []
    for kind in ("int", "float", "double"):
        if kind in allow:
            options.append(number_specs(kind).map(lambda s, k=kind: {"type": k, "specs": s}))
    if "text" in allow:
        options.append(
            st.integers(1, 10240).map(lambda n: {"type": "text", "specs": {"length": n}})
        )
    if "enum" in allow:
        members = st.lists(
            st.tuples(st.integers(-(2**31), 2**31 - 1), labels),
            min_size=1,
            max_size=5,
            unique_by=lambda m: m[0],
        )
        options.append(
            members.map(
                lambda ms: {
                    "type": "enum",
                    "specs": {"members": [{"value": v, "name": n} for v, n in ms]},
                }
            )
        )
    if "bool" in allow:
        options.append(
            st.tuples(labels, labels).map(
                lambda fl: {"type": "bool", "specs": {"false": fl[0], "true": fl[1]}}
            )
        )
    if "date" in allow:
        options.append(st.just({"type": "date", "specs": {}}))
    return st.one_of(options)


def params(types: st.SearchStrategy[dict[str, Any]], max_size: int = 4) -> st.SearchStrategy[Any]:
    one = st.fixed_dictionaries({"identifier": identifiers, "name": names, "data_type": types})
    return st.lists(one, max_size=max_size, unique_by=lambda p: p["identifier"])


STRUCT_SCALARS = ("int", "float", "double", "text", "enum", "bool", "date")
struct_types = (
    params(scalar_types(STRUCT_SCALARS), 4)
    .filter(bool)
    .map(lambda fs: {"type": "struct", "specs": {"fields": fs}})
)
array_types = st.tuples(
    st.integers(1, 512), scalar_types(("int", "float", "double", "text")) | struct_types
).map(lambda si: {"type": "array", "specs": {"size": si[0], "item": si[1]}})
data_types = scalar_types(STRUCT_SCALARS) | struct_types | array_types


@st.composite
def model_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Valid thing models in our JSON form (identifiers unique across features)."""
    idents = draw(st.lists(identifiers, max_size=9, unique=True))
    cut1, cut2 = sorted(draw(st.lists(st.integers(0, len(idents)), min_size=2, max_size=2)))
    common = {"required": st.booleans(), "description": st.text(max_size=30)}
    props = [
        draw(
            st.fixed_dictionaries(
                {
                    "name": names,
                    "access_mode": st.sampled_from(["r", "rw"]),
                    "data_type": data_types,
                }
                | common
            )
        )
        | {"identifier": ident}
        for ident in idents[:cut1]
    ]
    events = [
        draw(
            st.fixed_dictionaries(
                {
                    "name": names,
                    "type": st.sampled_from(["info", "alert", "error"]),
                    "output_data": params(data_types),
                }
                | common
            )
        )
        | {"identifier": ident}
        for ident in idents[cut1:cut2]
    ]
    services = [
        draw(
            st.fixed_dictionaries(
                {
                    "name": names,
                    "call_type": st.sampled_from(["sync", "async"]),
                    "input_data": params(data_types),
                    "output_data": params(data_types),
                }
                | common
            )
        )
        | {"identifier": ident}
        for ident in idents[cut2:]
    ]
    return {"properties": props, "events": events, "services": services}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """`base` with one randomly chosen node replaced by arbitrary JSON (or deleted)."""
    doc = copy.deepcopy(base)
    path = draw(st.sampled_from(_paths(doc)[1:] or [()]))
    if not path:
        return draw(json_values)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return doc


# --- examples -------------------------------------------------------------------------------

PRESSURE = {
    "identifier": "pressure",
    "name": "排气压力",
    "access_mode": "r",
    "required": False,
    "description": "",
    "data_type": {
        "type": "float",
        "specs": {"min": 0, "max": 1.6, "step": 0.01, "unit": "MPa", "unit_name": "兆帕"},
    },
}


def example() -> dict[str, Any]:
    return {
        "properties": [
            copy.deepcopy(PRESSURE),
            {
                "identifier": "runState",
                "name": "运行状态",
                "access_mode": "r",
                "data_type": {
                    "type": "enum",
                    "specs": {
                        "members": [{"value": 0, "name": "停机"}, {"value": 1, "name": "运行"}]
                    },
                },
            },
            {
                "identifier": "runtime",
                "name": "累计运行信息",
                "access_mode": "r",
                "data_type": {
                    "type": "struct",
                    "specs": {
                        "fields": [
                            {
                                "identifier": "hours",
                                "name": "运行小时",
                                "data_type": {"type": "int"},
                            },
                            {"identifier": "Value", "name": "值", "data_type": {"type": "date"}},
                        ]
                    },
                },
            },
            {
                "identifier": "samples",
                "name": "振动采样",
                "access_mode": "r",
                "data_type": {"type": "array", "specs": {"size": 8, "item": {"type": "float"}}},
            },
            {
                "identifier": "remote",
                "name": "远程使能",
                "access_mode": "rw",
                "data_type": {"type": "bool", "specs": {"false": "禁止", "true": "允许"}},
            },
        ],
        "events": [
            {
                "identifier": "overTemp",
                "name": "超温报警",
                "type": "alert",
                "output_data": [
                    {"identifier": "temp", "name": "温度", "data_type": {"type": "double"}}
                ],
            }
        ],
        "services": [
            {
                "identifier": "start",
                "name": "远程启停",
                "call_type": "async",
                "input_data": [
                    {
                        "identifier": "cmd",
                        "name": "指令",
                        "data_type": {"type": "text", "specs": {"length": 16}},
                    }
                ],
            }
        ],
    }


def errors_of(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        ThingModel.from_dict(data)
    return [(e.field, e.rule) for e in caught.value.errors]


def test_parses_the_example_into_typed_objects() -> None:
    model = ThingModel.from_dict(example())
    pressure = model.property("pressure")
    assert pressure.name == "排气压力"
    assert pressure.data_type == NumberType("float", 0.0, 1.6, 0.01, "MPa", "兆帕")
    assert model.property("runState").data_type == EnumType(((0, "停机"), (1, "运行")))
    runtime = model.property("runtime").data_type
    assert isinstance(runtime, StructType)
    assert [f.identifier for f in runtime.fields] == ["hours", "Value"]
    assert model.property("samples").data_type == ArrayType(8, NumberType("float"))
    assert model.property("remote").data_type == BoolType("禁止", "允许")
    assert model.event("overTemp").type == "alert"
    assert model.service("start").input_data[0].data_type == TextType(16)


def test_lookups_raise_not_found_for_unknown_or_other_kinds() -> None:
    model = ThingModel.from_dict(example())
    with pytest.raises(NotFound):
        model.property("nope")
    with pytest.raises(NotFound):
        model.property("overTemp")
    with pytest.raises(NotFound):
        model.service("pressure")


def test_to_dict_round_trips_through_json() -> None:
    model = ThingModel.from_dict(example())
    data = json.loads(json.dumps(model.to_dict()))
    assert ThingModel.from_dict(data) == model
    assert data["properties"][0] == PRESSURE | {
        "data_type": {
            "type": "float",
            "specs": {"min": 0.0, "max": 1.6, "step": 0.01, "unit": "MPa", "unit_name": "兆帕"},
        }
    }


def test_an_empty_model_is_valid() -> None:
    assert ThingModel.from_dict({}) == ThingModel()


def _with(path: str, value: Any) -> dict[str, Any]:
    """The example with the node at dotted `path` (list indexes as numbers) set to `value`."""
    data = example()
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node: Any = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return data


SPEC = "properties.0.data_type.specs"


@pytest.mark.parametrize(
    ("path", "value", "field", "rule"),
    [
        ("properties.0.data_type.type", "decimal", "properties[0].data_type.type", "unknown_type"),
        ("properties.0.data_type.type", 7, "properties[0].data_type.type", "unknown_type"),
        (f"{SPEC}.min", 2, "properties[0].data_type.specs.min", "min_le_max"),
        (f"{SPEC}.step", 0, "properties[0].data_type.specs.step", "step_positive"),
        (f"{SPEC}.step", -0.5, "properties[0].data_type.specs.step", "step_positive"),
        (f"{SPEC}.step", 2, "properties[0].data_type.specs.step", "step_le_range"),
        (f"{SPEC}.max", "1.6", "properties[0].data_type.specs.max", "type"),
        (f"{SPEC}.max", True, "properties[0].data_type.specs.max", "type"),
        (f"{SPEC}.max", float("inf"), "properties[0].data_type.specs.max", "finite"),
        (f"{SPEC}.unit", "x" * 65, "properties[0].data_type.specs.unit", "max_length"),
        ("properties.0.identifier", "bad-id", "properties[0].identifier", "identifier_syntax"),
        ("properties.0.identifier", "压力", "properties[0].identifier", "identifier_syntax"),
        ("properties.0.identifier", "a" * 51, "properties[0].identifier", "max_length"),
        ("properties.0.identifier", "", "properties[0].identifier", "required"),
        ("properties.0.identifier", 5, "properties[0].identifier", "type"),
        ("properties.0.identifier", "post", "properties[0].identifier", "reserved_identifier"),
        ("properties.0.identifier", "value", "properties[0].identifier", "reserved_identifier"),
        ("properties.0.identifier", "runState", "properties[1].identifier", "duplicate_identifier"),
        ("events.0.identifier", "pressure", "events[0].identifier", "duplicate_identifier"),
        ("services.0.identifier", "overTemp", "services[0].identifier", "duplicate_identifier"),
        ("properties.0.name", "名" * 41, "properties[0].name", "max_length"),
        ("properties.0.name", "  ", "properties[0].name", "required"),
        ("properties.0.description", "d" * 2049, "properties[0].description", "max_length"),
        ("properties.0.access_mode", "w", "properties[0].access_mode", "choice"),
        ("properties.0.required", "yes", "properties[0].required", "type"),
        ("events.0.type", "warning", "events[0].type", "choice"),
        ("services.0.call_type", "later", "services[0].call_type", "choice"),
        (
            "services.0.input_data.0.data_type.specs.length",
            0,
            "services[0].input_data[0].data_type.specs.length",
            "length_range",
        ),
        (
            "services.0.input_data.0.data_type.specs.length",
            10241,
            "services[0].input_data[0].data_type.specs.length",
            "length_range",
        ),
        (
            "properties.3.data_type.specs.size",
            0,
            "properties[3].data_type.specs.size",
            "array_size_range",
        ),
        (
            "properties.3.data_type.specs.size",
            513,
            "properties[3].data_type.specs.size",
            "array_size_range",
        ),
        ("properties.3.data_type.specs.size", 2.5, "properties[3].data_type.specs.size", "integer"),
        (
            "properties.3.data_type.specs.item",
            {"type": "enum"},
            "properties[3].data_type.specs.item.type",
            "type_not_allowed",
        ),
        (
            "properties.3.data_type.specs.item",
            {"type": "array"},
            "properties[3].data_type.specs.item.type",
            "type_not_allowed",
        ),
        (
            "properties.2.data_type.specs.fields.0.data_type",
            {"type": "array"},
            "properties[2].data_type.specs.fields[0].data_type.type",
            "type_not_allowed",
        ),
        (
            "properties.2.data_type.specs.fields.1.identifier",
            "hours",
            "properties[2].data_type.specs.fields[1].identifier",
            "duplicate_identifier",
        ),
        (
            "properties.2.data_type.specs.fields",
            [],
            "properties[2].data_type.specs.fields",
            "struct_empty",
        ),
        ("properties.1.data_type.specs.members", [], "properties[1].data_type.specs", "enum_empty"),
        ("properties.1.data_type.specs", {}, "properties[1].data_type.specs.members", "enum_empty"),
        (
            "properties.1.data_type.specs.members.1.value",
            "1",
            "properties[1].data_type.specs.members[1].value",
            "enum_value",
        ),
        (
            "properties.1.data_type.specs.members.1.value",
            True,
            "properties[1].data_type.specs.members[1].value",
            "enum_value",
        ),
        (
            "properties.1.data_type.specs.members.1.value",
            2**31,
            "properties[1].data_type.specs.members[1].value",
            "enum_value",
        ),
        (
            "properties.1.data_type.specs.members.1.value",
            0,
            "properties[1].data_type.specs.members[1].value",
            "duplicate_value",
        ),
        (
            "properties.4.data_type.specs",
            {"false": "关"},
            "properties[4].data_type.specs.true",
            "required",
        ),
        (
            "events.0.output_data.0.identifier",
            "time",
            "events[0].output_data[0].identifier",
            "reserved_identifier",
        ),
    ],
)
def test_each_broken_rule_names_its_field(path: str, value: Any, field: str, rule: str) -> None:
    assert (field, rule) in errors_of(_with(path, value))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], ""),
        ("model", ""),
        ({"properties": {"a": 1}}, "properties"),
        ({"properties": ["pressure"]}, "properties[0]"),
        ({"properties": [PRESSURE | {"data_type": "float"}]}, "properties[0].data_type"),
        (
            {"properties": [PRESSURE | {"data_type": {"type": "int", "specs": [1]}}]},
            "properties[0].data_type.specs",
        ),
        (
            {"events": [{"identifier": "e", "name": "n", "type": "info", "output_data": "x"}]},
            "events[0].output_data",
        ),
        (
            {
                "services": [
                    {"identifier": "s", "name": "n", "call_type": "sync", "input_data": [3]}
                ]
            },
            "services[0].input_data[0]",
        ),
    ],
)
def test_wrong_json_types_are_invalid_input(data: Any, field: str) -> None:
    assert (field, "type") in errors_of(data)


def test_all_errors_are_collected_in_one_raise() -> None:
    data = _with("properties.0.identifier", "1-bad")
    data["properties"][1]["access_mode"] = "x"
    data["events"][0]["type"] = "nope"
    data["services"][0]["input_data"][0]["data_type"]["specs"]["length"] = -1
    assert len(errors_of(data)) == 4


def test_reserved_words_are_case_sensitive_as_on_alibaba() -> None:
    data = _with("properties.0.identifier", "Value")
    assert ThingModel.from_dict(data).property("Value").name == "排气压力"


def test_identifiers_may_start_with_a_digit_as_the_tsl_pattern_allows() -> None:
    assert ThingModel.from_dict(_with("properties.0.identifier", "1st_stage")).property("1st_stage")


# --- properties -----------------------------------------------------------------------------

HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=100, suppress_health_check=HEALTH, deadline=None)
@given(model_dicts())
def test_valid_models_round_trip(data: dict[str, Any]) -> None:
    model = ThingModel.from_dict(data)
    assert len(model.properties) == len(data["properties"])
    again = ThingModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again == model
    assert again.to_dict() == model.to_dict()


def outcome(doc: Any) -> ThingModel | InvalidInput:
    """The parsed model, or the InvalidInput raised; any other exception fails the test."""
    try:
        return ThingModel.from_dict(doc)
    except InvalidInput as err:
        return err


@settings(max_examples=150, suppress_health_check=HEALTH, deadline=None)
@given(st.data(), model_dicts())
def test_mutated_models_raise_only_invalid_input(data: st.DataObject, base: dict[str, Any]) -> None:
    result = outcome(data.draw(mutated(base)))
    if isinstance(result, InvalidInput):
        assert result.errors
        assert all(e.rule and e.message for e in result.errors)
    else:
        assert ThingModel.from_dict(result.to_dict()) == result


@settings(max_examples=300, suppress_health_check=HEALTH, deadline=None)
@given(json_values)
def test_arbitrary_json_raises_only_invalid_input(doc: Any) -> None:
    result = outcome(doc)
    assert isinstance(result, ThingModel) or result.errors
