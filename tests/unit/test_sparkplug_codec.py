"""Sparkplug B codec: topics, payload decoding, value mapping, NCMD/DCMD and STATE encoding.

Payloads are built with the generated Eclipse Tahu protobuf classes, as an edge node would.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from google.protobuf.internal import api_implementation

from qiantang.protocols import sparkplug_b_pb2 as pb
from qiantang.protocols.sparkplug import (
    NODE_REBIRTH,
    CommandMetric,
    DataSetValue,
    DataType,
    HostState,
    MessageType,
    SparkplugError,
    SpbTopic,
    StateTopic,
    TemplateValue,
    ThingType,
    decode_payload,
    decode_state,
    encode_command,
    encode_rebirth,
    encode_state,
    format_topic,
    parse_topic,
    state_topic,
    thing_type,
)

D = DataType
TS = 1_700_000_000_000


def one_metric(**fields: Any) -> bytes:
    payload = pb.Payload(timestamp=TS, seq=1)
    payload.metrics.add(**fields)
    return payload.SerializeToString()


def decode_one(**fields: Any) -> Any:
    return decode_payload(one_metric(**fields)).metrics[0].value


def error_of(data: bytes) -> SparkplugError:
    with pytest.raises(SparkplugError) as info:
        decode_payload(data)
    return info.value


# ------------------------------------------------------------------------------- topics


def test_data_types_match_the_generated_enum() -> None:
    names = {d.name.replace("_", "") for d in DataType}
    assert len(names) == len(DataType) == len(pb.DataType.keys())
    for name, number in pb.DataType.items():
        assert DataType(number).name.replace("_", "") == name.upper()


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("spBv1.0/Plant 1/NBIRTH/Line-3", SpbTopic("Plant 1", MessageType.NBIRTH, "Line-3")),
        ("spBv1.0/G/NDATA/E", SpbTopic("G", MessageType.NDATA, "E")),
        ("spBv1.0/G/NDEATH/E", SpbTopic("G", MessageType.NDEATH, "E")),
        ("spBv1.0/G/NCMD/E", SpbTopic("G", MessageType.NCMD, "E")),
        ("spBv1.0/G/DBIRTH/E/泵-1", SpbTopic("G", MessageType.DBIRTH, "E", "泵-1")),
        ("spBv1.0/G/DDATA/E/d", SpbTopic("G", MessageType.DDATA, "E", "d")),
        ("spBv1.0/G/DDEATH/E/d", SpbTopic("G", MessageType.DDEATH, "E", "d")),
        ("spBv1.0/G/DCMD/E/d", SpbTopic("G", MessageType.DCMD, "E", "d")),
        ("spBv1.0/STATE/scada-1", StateTopic("scada-1")),
    ],
)
def test_parse_topic_accepts_the_namespace(topic: str, expected: object) -> None:
    parsed = parse_topic(topic)
    assert parsed == expected
    assert parsed.topic == topic


@pytest.mark.parametrize(
    ("topic", "field", "rule"),
    [
        ("spAv1.0/G/NDATA/E", "topic", "namespace"),
        ("G/NDATA/E", "topic", "namespace"),
        ("spBv1.0", "topic", "levels"),
        ("spBv1.0/G/NDATA", "topic", "levels"),
        ("spBv1.0/G/DDATA/E/d/x", "topic", "levels"),
        ("spBv1.0/G/NDATA/E/", "topic.device_id", "device_forbidden"),
        ("spBv1.0/G/NDATA/E/d", "topic.device_id", "device_forbidden"),
        ("spBv1.0/G/DDATA/E", "topic.device_id", "device_required"),
        ("spBv1.0/G/DDATA/E/", "topic.device_id", "empty_id"),
        ("spBv1.0/G/ndata/E", "topic.message_type", "message_type"),
        ("spBv1.0/G/STATE/E", "topic", "levels"),
        ("spBv1.0//NDATA/E", "topic.group_id", "empty_id"),
        ("spBv1.0/G/NDATA/", "topic.edge_node_id", "empty_id"),
        ("spBv1.0/G+/NDATA/E", "topic.group_id", "reserved_char"),
        ("spBv1.0/G/NDATA/#", "topic.edge_node_id", "reserved_char"),
        ("spBv1.0/G/NDATA/E\x00", "topic.edge_node_id", "reserved_char"),
        ("spBv1.0/STATE/", "topic.host_id", "empty_id"),
        ("spBv1.0/STATE/a/b", "topic.message_type", "message_type"),
    ],
)
def test_parse_topic_names_the_broken_rule(topic: str, field: str, rule: str) -> None:
    with pytest.raises(SparkplugError) as info:
        parse_topic(topic)
    assert (info.value.field, info.value.rule) == (field, rule)


def test_format_topic_checks_ids_and_device_presence() -> None:
    assert format_topic("G", MessageType.DCMD, "E", "d") == "spBv1.0/G/DCMD/E/d"
    assert format_topic("G", MessageType.NCMD, "E") == "spBv1.0/G/NCMD/E"
    assert state_topic("h") == "spBv1.0/STATE/h"
    with pytest.raises(SparkplugError, match="device_required"):
        format_topic("G", MessageType.DCMD, "E")
    with pytest.raises(SparkplugError, match="reserved_char"):
        format_topic("G/H", MessageType.NCMD, "E")
    with pytest.raises(SparkplugError, match="reserved_char"):
        state_topic("a#")


# ------------------------------------------------------------------------------- payloads


def test_decode_payload_reads_the_envelope() -> None:
    payload = pb.Payload(timestamp=TS, seq=7, uuid="u-1", body=b"\x01")
    payload.metrics.add(name="a", alias=3, timestamp=TS - 5, datatype=D.INT32, int_value=12)
    decoded = decode_payload(payload.SerializeToString())
    assert (decoded.timestamp, decoded.seq, decoded.uuid, decoded.body) == (TS, 7, "u-1", b"\x01")
    (metric,) = decoded.metrics
    assert (metric.name, metric.alias, metric.timestamp) == ("a", 3, TS - 5)
    assert (metric.datatype, metric.value, metric.is_null) == (D.INT32, 12, False)


def test_decode_payload_leaves_out_what_is_not_there() -> None:
    decoded = decode_payload(b"")
    assert (decoded.timestamp, decoded.seq, decoded.metrics, decoded.uuid) == (None, None, (), None)


@pytest.mark.parametrize(
    ("fields", "value"),
    [
        ({"datatype": D.INT8, "int_value": 0xFFFFFFFF}, -1),  # sign-extended, as Tahu writes
        ({"datatype": D.INT8, "int_value": 0xFF}, -1),  # narrow two's complement
        ({"datatype": D.INT8, "int_value": 127}, 127),
        ({"datatype": D.INT16, "int_value": 0xFFFF8000}, -32768),
        ({"datatype": D.INT32, "int_value": 0x80000000}, -(2**31)),
        ({"datatype": D.INT32, "long_value": 0xFFFFFFFF}, -1),
        ({"datatype": D.INT64, "long_value": 2**64 - 2}, -2),
        ({"datatype": D.INT64, "long_value": 2**63 - 1}, 2**63 - 1),
        ({"datatype": D.UINT8, "int_value": 255}, 255),
        ({"datatype": D.UINT16, "int_value": 65535}, 65535),
        ({"datatype": D.UINT32, "int_value": 2**32 - 1}, 2**32 - 1),
        ({"datatype": D.UINT64, "long_value": 2**64 - 1}, 2**64 - 1),
        ({"datatype": D.FLOAT, "float_value": 12.1}, 12.1),
        ({"datatype": D.FLOAT, "float_value": 1e-7}, 1e-7),
        ({"datatype": D.DOUBLE, "double_value": 0.1}, 0.1),
        ({"datatype": D.BOOLEAN, "boolean_value": True}, True),
        ({"datatype": D.STRING, "string_value": "运行"}, "运行"),
        ({"datatype": D.TEXT, "string_value": "a\nb"}, "a\nb"),
        ({"datatype": D.UUID, "string_value": "5e3f"}, "5e3f"),
        ({"datatype": D.DATETIME, "long_value": TS}, TS),
        ({"datatype": D.BYTES, "bytes_value": b"\x00\xff"}, b"\x00\xff"),
        ({"datatype": D.FILE, "bytes_value": b"%PDF"}, b"%PDF"),
        ({"datatype": D.INT8_ARRAY, "bytes_value": bytes([0xE9, 0x7B])}, [-23, 123]),
        (
            {"datatype": D.INT32_ARRAY, "bytes_value": bytes.fromhex("15cd5b07b168de3a")},
            [123456789, 987654321],
        ),
        ({"datatype": D.UINT16_ARRAY, "bytes_value": struct.pack("<2H", 1, 65535)}, [1, 65535]),
        ({"datatype": D.INT64_ARRAY, "bytes_value": struct.pack("<q", -(2**63))}, [-(2**63)]),
        (
            {"datatype": D.FLOAT_ARRAY, "bytes_value": struct.pack("<2f", 1.23, 89.341)},
            [1.23, 89.341],
        ),
        ({"datatype": D.DOUBLE_ARRAY, "bytes_value": struct.pack("<d", 12.354213)}, [12.354213]),
        (  # the spec's example: 12 booleans
            {"datatype": D.BOOLEAN_ARRAY, "bytes_value": bytes([12, 0, 0, 0, 0x34, 0xD0])},
            [False, False, True, True, False, True, False, False, True, True, False, True],
        ),
        ({"datatype": D.BOOLEAN_ARRAY, "bytes_value": bytes(4)}, []),
        ({"datatype": D.STRING_ARRAY, "bytes_value": b"ABC\x00hello\x00"}, ["ABC", "hello"]),
        ({"datatype": D.STRING_ARRAY, "bytes_value": b"\x00"}, [""]),
        ({"datatype": D.STRING_ARRAY, "bytes_value": b""}, []),
        ({"datatype": D.DATETIME_ARRAY, "bytes_value": struct.pack("<Q", TS)}, [TS]),
    ],
)
def test_decode_payload_maps_each_data_type(fields: dict[str, Any], value: object) -> None:
    decoded = decode_one(name="m", **fields)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"datatype": D.INT8, "int_value": 0x1FF}, "range"),
        ({"datatype": D.INT16, "int_value": 70000}, "range"),
        ({"datatype": D.UINT8, "int_value": 256}, "range"),
        ({"datatype": D.UINT32, "long_value": 2**32}, "range"),
        ({"datatype": D.INT32, "double_value": 1.0}, "value_type"),
        ({"datatype": D.BOOLEAN, "int_value": 1}, "value_type"),
        ({"datatype": D.STRING, "bytes_value": b"x"}, "value_type"),
        ({"datatype": D.FLOAT, "string_value": "1"}, "value_type"),
        ({"datatype": D.DATASET, "int_value": 1}, "value_type"),
        ({"datatype": D.INT16_ARRAY, "bytes_value": b"\x01"}, "array_length"),
        ({"datatype": D.BOOLEAN_ARRAY, "bytes_value": b"\x01\x00"}, "array_length"),
        ({"datatype": D.BOOLEAN_ARRAY, "bytes_value": bytes([9, 0, 0, 0, 0])}, "array_length"),
        ({"datatype": D.STRING_ARRAY, "bytes_value": b"abc"}, "array_length"),
        ({"datatype": D.STRING_ARRAY, "bytes_value": b"\xff\x00"}, "utf8"),
        ({"datatype": 0, "int_value": 1}, "datatype"),
        ({"datatype": 20, "int_value": 1}, "datatype"),
        ({"datatype": 99, "int_value": 1}, "datatype"),
        ({"datatype": D.INT32}, "value_missing"),
        ({"datatype": D.INT32, "timestamp": 2**63, "int_value": 1}, "timestamp_range"),
    ],
)
def test_decode_payload_refuses_values_that_do_not_fit(fields: dict[str, Any], rule: str) -> None:
    error = error_of(one_metric(name="m", **fields))
    assert error.rule == rule
    assert error.field.startswith("metrics[0].")


def test_decode_payload_refuses_bad_utf8_in_strings() -> None:
    good = one_metric(name="xy", datatype=D.STRING, string_value="ok")
    bad_name, bad_value = good.replace(b"xy", b"\xff\xfe"), good.replace(b"ok", b"\xc3\x28")
    if api_implementation.Type() == "python":  # the pure-Python runtime refuses them itself
        assert error_of(bad_name).rule == error_of(bad_value).rule == "protobuf"
        return
    # upb hands out bytes for a proto2 string that is not UTF-8; the codec refuses them
    assert (error_of(bad_name).field, error_of(bad_name).rule) == ("metrics[0].name", "utf8")
    assert (error_of(bad_value).field, error_of(bad_value).rule) == ("metrics[0].value", "utf8")


def test_decode_payload_refuses_what_is_not_protobuf() -> None:
    for data in (b"\xff", b"\x12\x05\x0a", b'{"online":true}', b"\x0a\x80"):
        assert error_of(data).rule == "protobuf"


def test_decode_payload_keeps_raw_values_until_typed() -> None:
    (metric,) = decode_payload(one_metric(alias=4, int_value=0xFFFFFFFE)).metrics
    assert (metric.datatype, metric.value, metric.wire_field) == (None, 0xFFFFFFFE, "int_value")
    typed = metric.typed(D.INT32)
    assert (typed.datatype, typed.value, typed.alias) == (D.INT32, -2, 4)
    assert metric.typed(D.UINT32).value == 0xFFFFFFFE
    with pytest.raises(SparkplugError, match="value_type"):
        metric.typed(D.STRING)
    declared = decode_payload(one_metric(alias=4, datatype=D.INT16, int_value=1)).metrics[0]
    assert declared.typed(D.INT16) is declared
    with pytest.raises(SparkplugError, match="datatype_mismatch"):
        declared.typed(D.INT32)


def test_null_historical_transient_and_properties() -> None:
    payload = pb.Payload(timestamp=TS, seq=0)
    metric = payload.metrics.add(name="p", datatype=D.DOUBLE, is_null=True, is_historical=True)
    metric.is_transient = True
    metric.properties.keys.extend(["engUnit", "Quality", "limits"])
    metric.properties.values.add(type=D.STRING, string_value="°C")
    metric.properties.values.add(type=D.INT32, int_value=192)
    limits = metric.properties.values.add(type=20)
    limits.propertyset_value.keys.append("hi")
    limits.propertyset_value.values.add(type=D.INT16, int_value=0xFFFFFFFF)
    (decoded,) = decode_payload(payload.SerializeToString()).metrics
    assert (decoded.value, decoded.is_null, decoded.is_historical, decoded.is_transient) == (
        None,
        True,
        True,
        True,
    )
    assert decoded.properties == {"engUnit": "°C", "Quality": 192, "limits": {"hi": -1}}


def test_dataset_values() -> None:
    payload = pb.Payload(timestamp=TS, seq=0)
    metric = payload.metrics.add(name="table", datatype=D.DATASET)
    ds = metric.dataset_value
    ds.num_of_columns = 2
    ds.columns.extend(["step", "temp"])
    ds.types.extend([D.INT8, D.FLOAT])
    for step, temp in ((0xFFFFFFFF, 1.5), (2, 2.25)):
        row = ds.rows.add()
        row.elements.add(int_value=step)
        row.elements.add(float_value=temp)
    ds.rows.add().elements.add(int_value=3)  # short row
    assert error_of(payload.SerializeToString()).field == "metrics[0].value.rows[2]"
    del ds.rows[2]
    value = decode_payload(payload.SerializeToString()).metrics[0].value
    assert value == DataSetValue(("step", "temp"), (D.INT8, D.FLOAT), ((-1, 1.5), (2, 2.25)))


def test_template_values_nest_metrics() -> None:
    payload = pb.Payload(timestamp=TS, seq=0)
    metric = payload.metrics.add(name="Motor", datatype=D.TEMPLATE)
    template = metric.template_value
    template.template_ref = "MotorType"
    template.version = "1.0"
    template.parameters.add(name="rating", type=D.INT32, int_value=0xFFFFFFFB)
    template.metrics.add(name="rpm", datatype=D.UINT16, int_value=1450)
    value = decode_payload(payload.SerializeToString()).metrics[0].value
    assert isinstance(value, TemplateValue)
    assert (value.template_ref, value.is_definition, value.version) == ("MotorType", False, "1.0")
    assert [(p.name, p.value) for p in value.parameters] == [("rating", -5)]
    assert [(m.name, m.value) for m in value.metrics] == [("rpm", 1450)]
    template.metrics.add(name="bad", datatype=D.UINT8, int_value=300)
    assert error_of(payload.SerializeToString()).field == "metrics[0].value.metrics[1].value"


# ------------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (D.INT8, -128),
        (D.INT16, -2),
        (D.INT32, -(2**31)),
        (D.INT64, -(2**63)),
        (D.UINT8, 255),
        (D.UINT32, 2**32 - 1),
        (D.UINT64, 2**64 - 1),
        (D.FLOAT, 12.1),
        (D.DOUBLE, -0.5),
        (D.BOOLEAN, False),
        (D.STRING, "设定"),
        (D.DATETIME, TS),
        (D.BYTES, b"\x00\x01"),
        (D.INT16_ARRAY, [-1, 2, 3]),
        (D.UINT64_ARRAY, [2**64 - 1]),
        (D.DOUBLE_ARRAY, [1.5, -2.0]),
        (D.BOOLEAN_ARRAY, [True, False, True, True, False, False, False, False, True]),
        (D.STRING_ARRAY, ["a", "", "ß"]),
        (D.INT32, None),
    ],
)
def test_encode_command_round_trips(datatype: DataType, value: object) -> None:
    data = encode_command([CommandMetric(datatype, value, alias=17)], TS)
    decoded = decode_payload(data)
    assert (decoded.timestamp, decoded.seq) == (TS, None)  # NCMD/DCMD carry no seq
    (metric,) = decoded.metrics
    assert (metric.name, metric.alias, metric.datatype) == (None, 17, datatype)
    assert (metric.value, metric.is_null) == (value, value is None)


@pytest.mark.parametrize(
    ("metric", "rule"),
    [
        (CommandMetric(D.INT8, 128, alias=1), "range"),
        (CommandMetric(D.UINT16, -1, alias=1), "range"),
        (CommandMetric(D.INT32, True, alias=1), "value_type"),
        (CommandMetric(D.INT32, 1.0, alias=1), "value_type"),
        (CommandMetric(D.BOOLEAN, 1, alias=1), "value_type"),
        (CommandMetric(D.STRING, b"x", alias=1), "value_type"),
        (CommandMetric(D.STRING_ARRAY, ["a\x00b"], alias=1), "value_type"),
        (CommandMetric(D.INT8_ARRAY, [1, 300], alias=1), "value_type"),
        (CommandMetric(D.DATASET, [], alias=1), "unsupported"),
        (CommandMetric(D.INT32, 1), "name_or_alias"),
        (CommandMetric(D.INT32, 1, name="a", alias=1), "name_or_alias"),
        (CommandMetric(D.INT32, 1, name=""), "empty"),
        (CommandMetric(D.INT32, 1, alias=-1), "range"),
    ],
)
def test_encode_command_refuses_bad_metrics(metric: CommandMetric, rule: str) -> None:
    with pytest.raises(SparkplugError) as info:
        encode_command([CommandMetric(D.BOOLEAN, True, name="ok"), metric], TS)
    assert info.value.rule == rule
    assert info.value.field.startswith("metrics[1].")


def test_encode_command_needs_metrics_and_a_timestamp() -> None:
    with pytest.raises(SparkplugError, match="empty"):
        encode_command([], TS)
    with pytest.raises(SparkplugError, match="range"):
        encode_command([CommandMetric(D.BOOLEAN, True, name="a")], -1)


def test_encode_rebirth_is_node_control_rebirth_true() -> None:
    decoded = decode_payload(encode_rebirth(TS))
    assert (decoded.timestamp, decoded.seq) == (TS, None)
    (metric,) = decoded.metrics
    assert (metric.name, metric.alias, metric.datatype, metric.value) == (
        NODE_REBIRTH,
        None,
        D.BOOLEAN,
        True,
    )


def test_state_messages_are_the_sparkplug_3_json() -> None:
    assert json.loads(encode_state(True, TS)) == {"online": True, "timestamp": TS}
    assert decode_state(b'{"online": false, "timestamp": 5, "x": 1}') == HostState(False, 5)
    for bad in (b"ONLINE", b"{}", b'{"online": "yes", "timestamp": 5}', b"\xff", b"[]"):
        with pytest.raises(SparkplugError, match="state"):
            decode_state(bad)


def test_thing_types() -> None:
    assert thing_type(D.INT8) == thing_type(D.UINT64) == ThingType("int")
    assert thing_type(D.FLOAT) == ThingType("float")
    assert thing_type(D.DOUBLE) == ThingType("double")
    assert thing_type(D.BOOLEAN) == ThingType("bool")
    assert thing_type(D.STRING) == thing_type(D.TEXT) == thing_type(D.UUID) == ThingType("text")
    assert thing_type(D.DATETIME) == ThingType("date")
    assert thing_type(D.INT16_ARRAY) == ThingType("array", "int")
    assert thing_type(D.STRING_ARRAY) == ThingType("array", "text")
    for none in (D.BYTES, D.FILE, D.DATASET, D.TEMPLATE, D.BOOLEAN_ARRAY, D.DATETIME_ARRAY):
        assert thing_type(none) is None
