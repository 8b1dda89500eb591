"""Sparkplug metric names -> thing-model identifiers, and the edge-node topic ACL.

The naming rule is fuzzed: for any metric names, `metric_identifier` never raises, gives
identifiers the thing model accepts, distinct within a model, and `metric_names` maps every
metric back to its property.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from qiantang.domain.thingmodel import ThingModel
from qiantang.ports.ingress import Identity
from qiantang.protocols.sparkplug_naming import metric_identifier, metric_names, property_json
from qiantang.protocols.sparkplug_values import ThingType
from qiantang.services.device_auth import DeviceContext
from qiantang.services.sparkplug_uplink import SparkplugUplink

TYPES = [
    ThingType("int"),
    ThingType("float"),
    ThingType("double"),
    ThingType("bool"),
    ThingType("text"),
    ThingType("date"),
    ThingType("array", "int"),
    ThingType("array", "text"),
]


def test_the_naming_rule() -> None:
    assert metric_identifier("Inputs/A") == "Inputs_A"
    assert metric_identifier("Motor 1/Speed (rpm)") == "Motor_1_Speed_rpm"
    assert metric_identifier("温度") == "m"
    assert metric_identifier("2nd stage") == "m_2nd_stage"
    assert metric_identifier("value") == "m_value"
    long = metric_identifier("Line 4/" + "Station/" * 10 + "Torque")
    assert len(long) == 50 and long.startswith("Line_4_Station_Station_")
    taken = metric_identifier("Inputs_A", taken={"Inputs_A"})
    assert taken.startswith("Inputs_A_") and len(taken) == len("Inputs_A_") + 8


def _model(names: list[str]) -> tuple[ThingModel, dict[str, str]]:
    taken: set[str] = set()
    props, idents = [], {}
    for i, name in enumerate(names):
        ident = metric_identifier(name, taken)
        taken.add(ident)
        idents[name] = ident
        props.append(property_json(ident, name, TYPES[i % len(TYPES)]))
    model = ThingModel.from_dict({"properties": props, "events": [], "services": []})
    return model, idents


@settings(max_examples=2_000, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=12, unique=True))
def test_any_names_make_a_valid_model_that_maps_back(names: list[str]) -> None:
    model, idents = _model(names)  # from_dict raises InvalidInput if any property is bad
    assert len({p.identifier for p in model.properties}) == len(names)
    back = metric_names(model)
    for name, ident in idents.items():
        assert back[name] == ident


def test_a_renamed_property_keeps_its_metric() -> None:
    model, _ = _model(["Inputs/A"])
    data = model.to_dict()
    prop = data["properties"][0]  # type: ignore[index]
    prop["identifier"], prop["name"] = "inlet_pressure", "进口压力"
    assert metric_names(ThingModel.from_dict(data))["Inputs/A"] == "inlet_pressure"


def _uplink() -> SparkplugUplink:
    # the ACL decides from the identity and the topic alone: no registry, store or broker
    return SparkplugUplink(None, None, None, None, None, host_id="qt-host")  # type: ignore[arg-type]


NODE = Identity(7, "aGroupKey01", "EdgeNode-01", 3, DeviceContext(5, 1, True, "thingsboard"))


def test_a_node_publishes_only_its_own_births_data_and_deaths() -> None:
    up = _uplink()
    ok = [
        "spBv1.0/aGroupKey01/NBIRTH/EdgeNode-01",
        "spBv1.0/aGroupKey01/NDATA/EdgeNode-01",
        "spBv1.0/aGroupKey01/NDEATH/EdgeNode-01",
        "spBv1.0/aGroupKey01/DBIRTH/EdgeNode-01/Boiler-01",
        "spBv1.0/aGroupKey01/DDATA/EdgeNode-01/Boiler-01",
        "spBv1.0/aGroupKey01/DDEATH/EdgeNode-01/Boiler-01",
    ]
    refused = [
        "spBv1.0/aGroupKey01/NBIRTH/OtherNode",
        "spBv1.0/otherGroup/NDATA/EdgeNode-01",
        "spBv1.0/aGroupKey01/NCMD/EdgeNode-01",
        "spBv1.0/aGroupKey01/DCMD/EdgeNode-01/Boiler-01",
        "spBv1.0/aGroupKey01/DDATA/EdgeNode-01",
        "spBv1.0/aGroupKey01/NDATA/EdgeNode-01/Boiler-01",
        "spBv1.0/STATE/qt-host",
        "spBv1.0/aGroupKey01/DDATA/EdgeNode-01/Boiler-01/extra",
    ]
    assert [t for t in ok if up.may_publish(NODE, t)] == ok
    assert [t for t in refused if up.may_publish(NODE, t)] == []


def test_a_node_subscribes_to_its_commands_and_the_host_state() -> None:
    async def check() -> tuple[list[str], list[str]]:
        up = _uplink()
        ok = [
            "spBv1.0/aGroupKey01/NCMD/EdgeNode-01",
            "spBv1.0/aGroupKey01/DCMD/EdgeNode-01/+",
            "spBv1.0/aGroupKey01/DCMD/EdgeNode-01/Boiler-01",
            "spBv1.0/aGroupKey01/+/EdgeNode-01/#",
            "spBv1.0/STATE/qt-host",
            "spBv1.0/STATE/+",
        ]
        refused = [
            "spBv1.0/aGroupKey01/NCMD/OtherNode",
            "spBv1.0/aGroupKey01/#",
            "spBv1.0/+/NCMD/EdgeNode-01",
            "spBv1.0/aGroupKey01/NDATA/EdgeNode-01",
            "spBv1.0/STATE/other-host",
            "spBv1.0/#",
        ]
        granted = [f for f in ok if up.may_subscribe(NODE, f)]
        wrongly = [f for f in refused if up.may_subscribe(NODE, f)]
        await up.stop()  # cancels the STATE pushes the subscriptions scheduled
        return granted, wrongly

    granted, wrongly = asyncio.run(check())
    assert len(granted) == 6 and wrongly == []
