"""Alibaba TSL import/export: lossless round trips, generated features, TSL field paths."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qiantang.domain.errors import InvalidInput
from qiantang.domain.thingmodel import ArrayType, EnumType, NumberType, StructType, ThingModel
from qiantang.protocols.tsl import (
    DEFAULT_SCHEMA,
    GeneratedFeatures,
    TslDocument,
    export_tsl,
    import_tsl,
)
from tests.unit.test_thingmodel import json_values, model_dicts, mutated

DATA = Path(__file__).resolve().parents[1] / "data" / "tsl"
SHIPPED = Path(__file__).resolve().parents[2] / "src" / "qiantang" / "sim" / "tsl"
FIXTURES = ["air_compressor", "cnc_machine", "injection_molding"]
DATA_TYPE_NAMES = {"int", "float", "double", "text", "enum", "bool", "date", "struct", "array"}


def load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return result


_NUMERIC = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")


def _number(text: str) -> float | None:
    return float(text) if _NUMERIC.fullmatch(text) else None


def normalise(node: Any) -> Any:
    """TSL JSON reduced to its meaning: numbers (also as strings) compared as floats, key order
    ignored (dicts), an empty ``desc`` the same as none, absent ``specs`` the same as ``{}``."""
    if isinstance(node, dict):
        out = {k: normalise(v) for k, v in node.items() if not (k == "desc" and v == "")}
        if out.get("type") in DATA_TYPE_NAMES and "identifier" not in out:
            out.setdefault("specs", {})
        return out
    if isinstance(node, list):
        return [normalise(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int | float):
        return float(node)
    if isinstance(node, str):
        number = _number(node)
        return node if number is None else number
    return node


@pytest.mark.parametrize("name", FIXTURES)
def test_fixtures_import_then_export_equal_in_meaning(name: str) -> None:
    original = load(name)
    doc = import_tsl(original)
    assert normalise(doc.to_tsl()) == normalise(original)
    assert normalise(export_tsl(doc.model, doc.product_key)) == normalise(original)


@pytest.mark.parametrize("name", FIXTURES)
def test_shipped_copies_match_the_test_fixtures(name: str) -> None:
    assert json.loads((SHIPPED / f"{name}.json").read_text(encoding="utf-8")) == load(name)


@pytest.mark.parametrize("name", FIXTURES)
def test_generated_features_are_dropped_on_import_and_regenerated_on_export(name: str) -> None:
    original = load(name)
    doc = import_tsl(original)
    model_ids = {f.identifier for f in (*doc.model.events, *doc.model.services)}
    assert not model_ids & {"post", "set", "get"}
    assert doc.generated == GeneratedFeatures(
        post=True, set_call_type="async", get_call_type="async"
    )
    exported = export_tsl(doc.model, doc.product_key)
    post = next(e for e in exported["events"] if e["identifier"] == "post")  # type: ignore[attr-defined]
    assert post["method"] == "thing.event.property.post"
    assert [p["identifier"] for p in post["outputData"]] == [
        p.identifier for p in doc.model.properties
    ]
    setter = next(s for s in exported["services"] if s["identifier"] == "set")  # type: ignore[attr-defined]
    writable = [p.identifier for p in doc.model.properties if p.access_mode == "rw"]
    assert [p["identifier"] for p in setter["inputData"]] == writable


def test_air_compressor_reads_as_the_documented_model() -> None:
    doc = import_tsl(load("air_compressor"))
    model = doc.model
    assert doc.product_key == "a1Kc8AirCmp"
    assert doc.profile == {"version": "1.0"}
    assert doc.schema == DEFAULT_SCHEMA
    assert model.property("exhaustPressure").data_type == NumberType(
        "float", 0.0, 1.6, 0.01, "MPa", "兆帕"
    )
    assert model.property("motorSpeed").data_type == NumberType(
        "int", 0, 3600, 1, "r/min", "转每分钟"
    )
    assert model.property("runState").data_type == EnumType(
        ((0, "停机"), (1, "加载运行"), (2, "空载运行"), (3, "故障停机"), (4, "待机"))
    )
    runtime = model.property("runtimeInfo").data_type
    assert isinstance(runtime, StructType)
    assert [f.identifier for f in runtime.fields][:2] == ["totalRunHours", "loadRunHours"]
    assert model.property("vibrationSamples").data_type == ArrayType(8, NumberType("float"))
    assert model.property("loadPressure").description == "低于该压力时加载"
    assert model.event("bearingFault").type == "error"
    assert model.event("overTemperature").type == "alert"
    assert model.service("remoteStartStop").call_type == "async"


def test_a_document_without_generated_features_round_trips_without_them() -> None:
    original = load("cnc_machine")
    original["events"] = [e for e in original["events"] if e["identifier"] != "post"]
    original["services"] = [s for s in original["services"] if s["identifier"] != "get"]
    original["services"][0]["callType"] = "sync"  # the set service
    doc = import_tsl(original)
    assert doc.generated == GeneratedFeatures(post=False, set_call_type="sync", get_call_type=None)
    assert normalise(doc.to_tsl()) == normalise(original)


def test_profile_schema_and_unknown_top_level_keys_are_kept() -> None:
    original = load("injection_molding")
    original["schema"] = "https://iot-tsl.oss-cn-shanghai.aliyuncs.com/schema.json"
    original["profile"]["deviceName"] = "IMM-07"
    original["functionBlockId"] = "mold"
    original["functionBlockName"] = "模具模块"
    doc = import_tsl(original)
    assert doc.extras == {"functionBlockId": "mold", "functionBlockName": "模具模块"}
    assert normalise(doc.to_tsl()) == normalise(original)


def test_spec_numbers_may_also_be_json_numbers() -> None:
    original = load("air_compressor")
    original["properties"][0]["dataType"]["specs"].update(min=0, max=1.6, step=0.01)
    prop = import_tsl(original).model.property("exhaustPressure")
    assert prop.data_type == NumberType("float", 0.0, 1.6, 0.01, "MPa", "兆帕")


def test_export_writes_strings_and_methods() -> None:
    model = ThingModel.from_dict(
        {
            "properties": [
                {
                    "identifier": "speed",
                    "name": "转速",
                    "access_mode": "rw",
                    "data_type": {"type": "float", "specs": {"min": 0, "max": 1e20, "step": 0.5}},
                }
            ],
            "events": [{"identifier": "jam", "name": "卡料", "type": "error"}],
            "services": [{"identifier": "reset", "name": "复位", "call_type": "sync"}],
        }
    )
    out = export_tsl(model, "a1Test00001")
    assert out["profile"] == {"version": "1.0", "productKey": "a1Test00001"}
    assert out["properties"][0]["dataType"]["specs"] == {  # type: ignore[index]
        "min": "0",
        "max": "1e+20",
        "step": "0.5",
    }
    assert out["events"][1]["method"] == "thing.event.jam.post"  # type: ignore[index]
    assert out["services"][2]["method"] == "thing.service.reset"  # type: ignore[index]
    assert import_tsl(out).model == model


def _bad(mutate: Any) -> list[tuple[str, str]]:
    doc = load("air_compressor")
    mutate(doc)
    with pytest.raises(InvalidInput) as caught:
        import_tsl(doc)
    return [(e.field, e.rule) for e in caught.value.errors]


def _set(path: str, value: Any) -> Any:
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]

    def mutate(doc: Any) -> None:
        node = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("path", "value", "field", "rule"),
    [
        ("properties.0.dataType.specs.min", "2", "properties[0].dataType.specs.min", "min_le_max"),
        ("properties.0.dataType.specs.min", "zero", "properties[0].dataType.specs.min", "number"),
        (
            "properties.0.dataType.specs.step",
            "0",
            "properties[0].dataType.specs.step",
            "step_positive",
        ),
        (
            "properties.0.dataType.specs.step",
            "5",
            "properties[0].dataType.specs.step",
            "step_le_range",
        ),
        ("properties.4.dataType.specs.step", "0.5", "properties[4].dataType.specs.step", "integer"),
        ("properties.0.dataType.type", "decimal", "properties[0].dataType.type", "unknown_type"),
        ("properties.0.accessMode", "w", "properties[0].accessMode", "choice"),
        ("properties.0.identifier", "post", "properties[0].identifier", "reserved_identifier"),
        (
            "properties.1.identifier",
            "exhaustPressure",
            "properties[1].identifier",
            "duplicate_identifier",
        ),
        (
            "properties.5.dataType.specs",
            {"0": "停机", "x": "?"},
            "properties[5].dataType.specs.x",
            "enum_value",
        ),
        ("properties.5.dataType.specs", {}, "properties[5].dataType.specs", "enum_empty"),
        (
            "properties.6.dataType.specs",
            {"0": "禁止"},
            "properties[6].dataType.specs.1",
            "required",
        ),
        ("properties.9.dataType.specs", {"fields": []}, "properties[9].dataType.specs", "type"),
        (
            "properties.10.dataType.specs.size",
            "513",
            "properties[10].dataType.specs.size",
            "array_size_range",
        ),
        (
            "properties.10.dataType.specs.item",
            {"type": "bool"},
            "properties[10].dataType.specs.item.type",
            "type_not_allowed",
        ),
        (
            "properties.12.dataType.specs.length",
            "10241",
            "properties[12].dataType.specs.length",
            "length_range",
        ),
        ("events.1.type", "fault", "events[1].type", "choice"),
        ("events.1.method", "thing.event.other.post", "events[1].method", "method"),
        ("events.1.outputData.0.dataType", "double", "events[1].outputData[0].dataType", "type"),
        ("services.2.callType", "maybe", "services[2].callType", "choice"),
        ("services.0.callType", "maybe", "services[0].callType", "choice"),
        ("services.2.method", "thing.service.x", "services[2].method", "method"),
        ("profile", "a1Kc8AirCmp", "profile", "type"),
        ("profile.productKey", None, "profile.productKey", "required"),
        ("profile.version", 1, "profile.version", "type"),
        ("schema", ["x"], "schema", "type"),
        ("properties", {}, "properties", "type"),
    ],
)
def test_bad_tsl_names_the_field_in_tsl_terms(path: str, value: Any, field: str, rule: str) -> None:
    assert (field, rule) in _bad(_set(path, value))


def test_a_non_object_document_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        import_tsl([])  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------

HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=100, suppress_health_check=HEALTH, deadline=None)
@given(model_dicts(), st.text("abcXYZ019", min_size=1, max_size=11))
def test_export_then_import_gives_the_model_back(data: dict[str, Any], product_key: str) -> None:
    model = ThingModel.from_dict(data)
    exported = json.loads(json.dumps(export_tsl(model, product_key)))
    doc = import_tsl(exported)
    assert doc.model == model
    assert doc.product_key == product_key
    assert normalise(doc.to_tsl()) == normalise(exported)


def outcome(doc: Any) -> TslDocument | InvalidInput:
    """The imported document, or the InvalidInput raised; any other exception fails the test."""
    try:
        return import_tsl(doc)
    except InvalidInput as err:
        return err


@settings(max_examples=150, suppress_health_check=HEALTH, deadline=None)
@given(st.data(), model_dicts())
def test_mutated_tsl_raises_only_invalid_input(data: st.DataObject, base: dict[str, Any]) -> None:
    exported = export_tsl(ThingModel.from_dict(base), "a1Test00001")
    result = outcome(data.draw(mutated(json.loads(json.dumps(exported)))))
    if isinstance(result, InvalidInput):
        assert result.errors
    else:
        assert import_tsl(result.to_tsl()).model == result.model


@settings(max_examples=60, suppress_health_check=HEALTH, deadline=None)
@given(st.data(), st.sampled_from(FIXTURES))
def test_mutated_fixtures_raise_only_invalid_input(data: st.DataObject, name: str) -> None:
    result = outcome(data.draw(mutated(load(name))))
    assert isinstance(result, TslDocument) or result.errors


@settings(max_examples=200, suppress_health_check=HEALTH, deadline=None)
@given(json_values)
def test_arbitrary_json_raises_only_invalid_input(doc: Any) -> None:
    result = outcome(doc)
    assert isinstance(result, TslDocument) or result.errors
