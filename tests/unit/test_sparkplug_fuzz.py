"""Fuzzing the Sparkplug B codec and host: only `SparkplugError` may escape a decoder, and the
host's `handle` raises nothing at all.

10,000 examples each for `decode_payload` on arbitrary bytes, for `decode_payload` and
`SparkplugHost.handle` on mutated valid payloads, and for the topic parser. As in
`test_decoder_fuzz.py`, Hypothesis draws a seed and plain Python builds the input from it:
one draw per example keeps the file near half a minute on a 2-core machine.
"""

from __future__ import annotations

import struct
from random import Random

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from qiantang.protocols import sparkplug_b_pb2 as pb
from qiantang.protocols.sparkplug import (
    DataType,
    Metric,
    SparkplugError,
    SpbPayload,
    SpbTopic,
    StateTopic,
    decode_payload,
    decode_state,
    parse_topic,
)
from qiantang.services.sparkplug_host import HostOutput, SparkplugHost

FUZZ = settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
D = DataType
TS = 1_700_000_000_000


def _check_metric(metric: Metric) -> None:
    assert metric.name is None or type(metric.name) is str
    assert metric.alias is None or 0 <= metric.alias < 2**64
    assert metric.timestamp is None or 0 <= metric.timestamp < 2**63
    assert metric.datatype is None or isinstance(metric.datatype, DataType)
    if metric.is_null:
        assert metric.value is None


def _check_payload(payload: SpbPayload) -> None:
    assert payload.seq is None or 0 <= payload.seq < 2**64
    assert payload.timestamp is None or 0 <= payload.timestamp < 2**63
    assert payload.uuid is None or type(payload.uuid) is str
    for metric in payload.metrics:
        _check_metric(metric)


def _decode(data: bytes) -> None:
    try:
        payload = decode_payload(data)
    except SparkplugError as err:
        error = err
    else:
        _check_payload(payload)
        return
    assert error.field and error.rule and error.message


@FUZZ
@given(st.binary(max_size=120))
def test_decode_payload_on_arbitrary_bytes(data: bytes) -> None:
    _decode(data)


# --- mutated valid payloads --------------------------------------------------------------


def _metric(payload: pb.Payload, name: str, alias: int, datatype: int, **value: object) -> None:
    payload.metrics.add(name=name, alias=alias, timestamp=TS, datatype=datatype, **value)


def _birth() -> pb.Payload:
    p = pb.Payload(timestamp=TS, seq=0)
    _metric(p, "bdSeq", 0, D.INT64, long_value=3)
    _metric(p, "Node Control/Rebirth", 1, D.BOOLEAN, boolean_value=False)
    _metric(p, "i8", 2, D.INT8, int_value=0xFFFFFF80)
    _metric(p, "i64", 3, D.INT64, long_value=2**64 - 5)
    _metric(p, "u32", 4, D.UINT32, int_value=2**32 - 1)
    _metric(p, "f", 5, D.FLOAT, float_value=12.1)
    _metric(p, "d", 6, D.DOUBLE, double_value=-0.25)
    _metric(p, "s", 7, D.STRING, string_value="运行 ok")
    _metric(p, "t", 8, D.DATETIME, long_value=TS)
    _metric(p, "b", 9, D.BYTES, bytes_value=b"\x00\x01\x02")
    _metric(p, "ia", 10, D.INT16_ARRAY, bytes_value=struct.pack("<3h", -1, 0, 300))
    _metric(p, "fa", 11, D.FLOAT_ARRAY, bytes_value=struct.pack("<2f", 1.5, 2.25))
    _metric(p, "ba", 12, D.BOOLEAN_ARRAY, bytes_value=bytes([10, 0, 0, 0, 0xA5, 0x40]))
    _metric(p, "sa", 13, D.STRING_ARRAY, bytes_value=b"ab\x00\x00cd\x00")
    _metric(p, "n", 14, D.UINT16, is_null=True)
    p.metrics[5].properties.keys.extend(["engUnit", "Quality"])
    p.metrics[5].properties.values.add(type=D.STRING, string_value="bar")
    p.metrics[5].properties.values.add(type=D.INT32, int_value=192)
    return p


def _complex() -> pb.Payload:
    p = pb.Payload(timestamp=TS, seq=1, uuid="u")
    ds = p.metrics.add(name="ds", alias=20, datatype=D.DATASET).dataset_value
    ds.num_of_columns = 2
    ds.columns.extend(["a", "b"])
    ds.types.extend([D.INT32, D.STRING])
    row = ds.rows.add()
    row.elements.add(int_value=0xFFFFFFFF)
    row.elements.add(string_value="x")
    tpl = p.metrics.add(name="tpl", alias=21, datatype=D.TEMPLATE).template_value
    tpl.template_ref = "T"
    tpl.parameters.add(name="p", type=D.INT16, int_value=7)
    tpl.metrics.add(name="inner", datatype=D.UINT8, int_value=9)
    inner = tpl.metrics.add(name="nested", datatype=D.TEMPLATE).template_value
    inner.metrics.add(name="deep", datatype=D.BOOLEAN, boolean_value=True)
    return p


def _data() -> pb.Payload:
    p = pb.Payload(timestamp=TS, seq=1)  # the NDATA right after the birth
    p.metrics.add(alias=2, timestamp=TS, int_value=5)
    p.metrics.add(alias=5, timestamp=TS, datatype=D.FLOAT, float_value=3.5)
    p.metrics.add(alias=7, timestamp=TS, string_value="y")
    p.metrics.add(alias=10, timestamp=TS, bytes_value=b"\x01\x00")
    return p


def _death() -> pb.Payload:
    p = pb.Payload(timestamp=TS)
    p.metrics.add(name="bdSeq", datatype=D.INT64, long_value=3)
    return p


CORPUS = [m.SerializeToString() for m in (_birth(), _complex(), _data(), _death())]
INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff" * 10 + b"\x01", b"\xc3\x28", b"\x00" * 4]


def _mutate(data: bytes, rnd: Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.choice([1, 1, 1, 2, 4])):
        at = rnd.randrange(len(buf) + 1)
        roll = rnd.random()
        if roll < 0.3 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rnd.randrange(8)
        elif roll < 0.45 and buf:
            buf[min(at, len(buf) - 1)] = rnd.randrange(256)
        elif roll < 0.6:
            buf[at:at] = rnd.choice(INTERESTING)
        elif roll < 0.75:
            del buf[at : at + rnd.randint(1, 8)]
        elif roll < 0.85:
            buf = buf[:at]
        elif roll < 0.95:
            other = rnd.choice(CORPUS)
            start = rnd.randrange(len(other))
            buf[at:at] = other[start : start + rnd.randint(1, 24)]
        else:
            buf[at:at] = rnd.randbytes(rnd.randint(1, 6))
    return bytes(buf)


WIRE_VALUES: list[tuple[str, object]] = [
    ("int_value", 0), ("int_value", 255), ("int_value", 256), ("int_value", 2**31),
    ("int_value", 2**32 - 1), ("long_value", 2**63), ("long_value", 2**64 - 1),
    ("float_value", float("nan")), ("float_value", 3.4e38), ("double_value", float("inf")),
    ("double_value", -0.0), ("boolean_value", True), ("string_value", ""),
    ("string_value", "é\x00"), ("bytes_value", b""), ("bytes_value", b"\x01\x00\x00"),
    ("bytes_value", b"\x09\x00\x00\x00\xff\xff"), ("bytes_value", b"a\x00\xff\x00"),
]  # fmt: skip


def _tweak_metric(m: pb.Payload.Metric, rnd: Random) -> None:
    roll = rnd.random()
    if roll < 0.3:
        m.datatype = rnd.randrange(36)
    elif roll < 0.6:
        field, value = rnd.choice(WIRE_VALUES)
        setattr(m, field, value)
    elif roll < 0.7:
        m.ClearField(rnd.choice(["datatype", "name", "alias", "timestamp"]))
    elif roll < 0.8:
        m.alias = rnd.randrange(25)
    elif roll < 0.9:
        m.is_null = not m.is_null
    else:
        m.timestamp = rnd.choice([0, 2**63 - 1, 2**63, 2**64 - 1])


def _tweak(data: bytes, rnd: Random) -> bytes:
    """A protobuf-level mutation: the bytes still parse, the content is awkward."""
    message = pb.Payload.FromString(data)
    for _ in range(rnd.randint(1, 3)):
        if message.metrics and rnd.random() < 0.8:
            _tweak_metric(rnd.choice(message.metrics), rnd)
        elif rnd.random() < 0.5:
            message.seq = rnd.choice([0, 1, 2, 3, 255, 256, 2**64 - 1])
        else:
            message.ClearField(rnd.choice(["seq", "timestamp"]))
    return message.SerializeToString()


def _born_host() -> SparkplugHost:
    host = SparkplugHost("fuzz")
    host.handle("spBv1.0/G/NBIRTH/E", CORPUS[0], TS)
    return host


TOPICS = [f"spBv1.0/G/{kind}/E" for kind in ("NBIRTH", "NDATA", "NDEATH")]
TOPICS += [f"spBv1.0/G/{kind}/E/d" for kind in ("DBIRTH", "DDATA", "DDEATH")]
TOPICS += ["spBv1.0/STATE/fuzz"]


@FUZZ
@given(st.integers(min_value=0, max_value=2**32))
def test_decode_payload_and_host_on_mutated_payloads(seed: int) -> None:
    rnd = Random(seed)
    data = rnd.choice(CORPUS)
    if rnd.random() < 0.7:
        data = _tweak(data, rnd)
    if rnd.random() < 0.5:
        data = _mutate(data, rnd)
    note(repr(data))
    _decode(data)
    out = _born_host().handle(rnd.choice(TOPICS), data, TS + 1)  # must not raise, whatever
    assert isinstance(out, HostOutput)
    for reading in out.readings:
        assert type(reading.metric) is str and type(reading.ts_ms) is int


@settings(max_examples=2_000, deadline=None)
@given(st.binary(max_size=60) | st.sampled_from([b'{"online":true,"timestamp":1}', b"{}"]))
def test_decode_state_raises_only_sparkplug_error(data: bytes) -> None:
    try:
        state = decode_state(data)
    except SparkplugError as err:
        error = err
    else:
        assert type(state.online) is bool and type(state.timestamp) is int
        return
    assert error.rule == "state"


# --- topics ------------------------------------------------------------------------------

LEVELS = [
    "spBv1.0", "spBv1.0", "spBv1.0", "STATE", "NBIRTH", "NDATA", "NDEATH", "NCMD", "DBIRTH",
    "DDATA", "DDEATH", "DCMD", "G", "Plant 1", "E", "d", "泵", "", "+", "#", "a+b", "x#",
    "\x00", "spAv1.0", "ndata", " ", "..",
]  # fmt: skip


@FUZZ
@given(st.integers(min_value=0, max_value=2**32))
def test_parse_topic_raises_only_sparkplug_error(seed: int) -> None:
    rnd = Random(seed)
    levels = [rnd.choice(LEVELS) for _ in range(rnd.randint(0, 7))]
    if levels and rnd.random() < 0.7:
        levels[0] = "spBv1.0"
    topic = "/".join(levels)
    if rnd.random() < 0.1:
        topic += "".join(chr(rnd.choice([0, 35, 43, 47, 0xE9, 0x1F600])) for _ in range(2))
    note(repr(topic))
    try:
        parsed = parse_topic(topic)
    except SparkplugError as err:
        error = err
    else:
        assert isinstance(parsed, SpbTopic | StateTopic)
        assert parsed.topic == topic
        return
    assert error.field.startswith("topic") and error.rule


@settings(max_examples=3_000, deadline=None)
@given(st.text(max_size=40))
def test_parse_topic_on_arbitrary_text(topic: str) -> None:
    try:
        parse_topic(topic)
    except SparkplugError:
        pass
