"""Pure parts of the gateway, no servers: the Modbus codec and block planner, the converter,
Alink message building, the registry, health logging, and what the gateway imports."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import pytest

from qiantang.edge.alink_messages import (
    MAX_PACK_PROPERTIES,
    MAX_PACK_SUB_DEVICES,
    encode_history,
    encode_pack,
    take_pack,
)
from qiantang.edge.config import PointConfig
from qiantang.edge.convert import from_raw, to_raw
from qiantang.edge.errors import EdgeError, WriteRefused
from qiantang.edge.health import Health
from qiantang.edge.modbus_codec import Span, decode, encode, plan_blocks, register_count
from qiantang.edge.model import ConnectorStatus
from qiantang.edge.outbox import OutboxStats, Row
from qiantang.edge.registry import ConnectorRegistry

pytest.importorskip("pymodbus")
pytest.importorskip("asyncua")
pytest.importorskip("aiomqtt")


@pytest.mark.parametrize(
    ("data_type", "byte_order", "word_order", "value", "words"),
    [
        ("uint16", "big", "big", 0x1234, [0x1234]),
        ("uint16", "little", "big", 0x1234, [0x3412]),
        ("int16", "big", "big", -2, [0xFFFE]),
        ("int32", "big", "big", -2, [0xFFFF, 0xFFFE]),
        ("uint32", "big", "little", 0x00010002, [0x0002, 0x0001]),
        ("float32", "big", "big", 1.0, [0x3F80, 0x0000]),
        ("float32", "big", "little", 1.0, [0x0000, 0x3F80]),
        ("float32", "little", "little", 1.0, [0x0000, 0x803F]),
        ("float64", "big", "big", 1.0, [0x3FF0, 0, 0, 0]),
        ("int64", "big", "little", -1, [0xFFFF] * 4),
        ("bool", "big", "big", True, [1]),
    ],
)
def test_registers_round_trip(
    data_type: Any, byte_order: Any, word_order: Any, value: Any, words: list[int]
) -> None:
    assert encode(value, data_type, byte_order, word_order) == words
    assert decode(words, data_type, byte_order, word_order) == value
    assert register_count(data_type) == len(words)


def test_strings_bits_and_limits() -> None:
    words = encode("CMP-7", "string", length=4)
    assert words == [0x434D, 0x502D, 0x3700, 0] and decode(words, "string") == "CMP-7"
    assert decode(encode("AB", "string", "little", length=1), "string", "little") == "AB"
    assert decode([0b100], "bool", bit=2) is True and decode([0b100], "bool", bit=1) is False
    with pytest.raises(ValueError, match="do not fit"):
        encode("too long", "string", length=2)
    with pytest.raises(ValueError, match="does not fit"):
        encode(70000, "uint16")


def test_block_planning_merges_neighbours_within_limits() -> None:
    spans = [
        Span("a", "holding_register", 0, 2),
        Span("b", "holding_register", 4, 1),  # gap 2
        Span("c", "holding_register", 20, 2),  # gap 15
        Span("d", "input_register", 0, 1),
        Span("e", "holding_register", 120, 10),  # would make a read of > 125 registers
    ]
    blocks = [
        (b.table, b.address, b.count, [s.key for s in b.spans])
        for b in plan_blocks(spans, max_gap=2)
    ]
    assert blocks == [
        ("holding_register", 0, 5, ["a", "b"]),
        ("holding_register", 20, 2, ["c"]),
        ("holding_register", 120, 10, ["e"]),
        ("input_register", 0, 1, ["d"]),
    ]
    merged = plan_blocks(spans[:3], max_gap=20)
    assert [(b.address, b.count) for b in merged] == [(0, 22)]
    assert merged[0].words(list(range(22)), spans[2]) == [20, 21]


def test_converter_scales_casts_and_inverts() -> None:
    tenths = PointConfig(property="t", scale=0.1, type="float")
    assert from_raw(tenths, 253) == pytest.approx(25.3)
    assert to_raw(tenths, 42.5) == pytest.approx(425)
    offset = PointConfig(property="p", scale=2, offset=-10)
    assert from_raw(offset, 10) == 10 and isinstance(from_raw(offset, 10), int)
    assert to_raw(offset, 10) == 10
    assert from_raw(PointConfig(property="x", type="int"), 2.6) == 3
    assert from_raw(PointConfig(property="x", type="bool"), 2) is True
    assert from_raw(PointConfig(property="x", type="text"), 2) == "2"
    assert from_raw(PointConfig(property="x", type="float", scale=10), "1.5") == 15.0
    with pytest.raises(WriteRefused):
        to_raw(tenths, [1])


def rows(*spec: tuple[str, str]) -> list[Row]:
    return [Row(i + 1, dev, prop, 1000 + i, i) for i, (dev, prop) in enumerate(spec)]


def test_pack_takes_one_value_per_point_in_order() -> None:
    got = take_pack(
        rows(("gw/G", "edge_status"), ("a/1", "t"), ("b/1", "t"), ("a/1", "t"), ("a/1", "p")),
        "gw/G",
    )
    assert [r.seq for r in got] == [1, 2, 3]  # stops at the second a/1.t: order kept
    body = json.loads(encode_pack("7", got, "gw/G"))
    assert body["method"] == "thing.event.property.pack.post"
    assert body["params"]["properties"] == {"edge_status": {"value": 0, "time": 1000}}
    assert body["params"]["subDevices"][1] == {
        "identity": {"productKey": "b", "deviceName": "1"},
        "properties": {"t": {"value": 2, "time": 1002}},
    }
    many = rows(*[(f"d/{i}", "t") for i in range(MAX_PACK_SUB_DEVICES + 5)])
    assert len(take_pack(many, "gw/G")) == MAX_PACK_SUB_DEVICES
    props = rows(*[("d/1", f"p{i}") for i in range(MAX_PACK_PROPERTIES + 5)])
    assert len(take_pack(props, "gw/G")) == MAX_PACK_PROPERTIES


def test_history_splits_blocks_where_a_property_repeats() -> None:
    body = json.loads(
        encode_history("9", "pk/dn", rows(("pk/dn", "t"), ("pk/dn", "p"), ("pk/dn", "t")))
    )
    assert [len(b["properties"]) for b in body["params"]] == [2, 1]
    assert body["params"][1] == {
        "identity": {"productKey": "pk", "deviceName": "dn"},
        "properties": [{"t": {"value": 2, "time": 1002}}],
    }


def test_registry_refuses_duplicates_and_names_unknown_kinds() -> None:
    reg = ConnectorRegistry()
    plugin = reg.get("modbus")
    with pytest.raises(EdgeError, match="already registered"):
        reg.register("modbus", plugin)
    reg.register("modbus2", plugin)
    with pytest.raises(EdgeError, match="already registered"):
        reg.register("modbus2", plugin)
    with pytest.raises(
        EdgeError, match="unknown connector type 'bacnet'; known: modbus, modbus2, opcua"
    ):
        reg.get("bacnet")


def test_a_link_down_is_logged_once_and_its_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    health = Health("gw/G", ["a/1"])
    with caplog.at_level(logging.INFO, logger="qiantang.edge.health"):
        health.connector("a/1", ConnectorStatus.UP, "")
        for attempt in range(5):
            health.connector("a/1", ConnectorStatus.DOWN, f"refused {attempt}")
        health.connector("a/1", ConnectorStatus.UP, "")
        health.connector("a/1", ConnectorStatus.UP, "")
    assert [r.getMessage() for r in caplog.records] == [
        "device a/1 is down: refused 0",
        "device a/1 recovered",
    ]
    values = {s.property: s.value for s in health.samples(OutboxStats(5, 2, 1), 1)}
    assert values["edge_status"] == "ok" and values["edge_last_error"] == "a/1: refused 4"
    assert (values["edge_outbox_depth"], values["edge_dropped"], values["edge_rejected"]) == (
        5,
        2,
        1,
    )


def test_the_gateway_does_not_import_the_platform_stack() -> None:
    code = (
        "import sys, qiantang.edge.gateway, qiantang.edge.modbus, qiantang.edge.opcua, qiantang.cli.gateway;"
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'duckdb', 'amqtt', 'uvicorn', 'pyarrow', 'alembic')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
