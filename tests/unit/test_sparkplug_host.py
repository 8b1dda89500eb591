"""The Sparkplug B host state machine, fed payloads encoded as an edge node would encode them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qiantang.protocols import sparkplug_b_pb2 as pb
from qiantang.protocols.sparkplug import (
    NODE_REBIRTH,
    DataType,
    SparkplugError,
    ThingType,
    decode_payload,
    encode_state,
)
from qiantang.services.sparkplug_host import (
    HostOutput,
    Publish,
    Reading,
    SparkplugHost,
    StateChange,
)

D = DataType
TS = 1_700_000_000_000
NOW = TS + 50


class Edge:
    """An edge node that follows Sparkplug 3.0: bdSeq per MQTT session, NBIRTH with seq 0,
    then seq + 1 (mod 256) on every DBIRTH, NDATA, DDATA and DDEATH."""

    def __init__(self, group: str = "Plant1", node: str = "Line3", bd_seq: int = 0) -> None:
        self.group, self.node, self.bd_seq, self.seq = group, node, bd_seq, 0

    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"spBv1.0/{self.group}/{kind}/{self.node}"
        return base if device is None else f"{base}/{device}"

    def payload(self, metrics: list[dict[str, Any]], seq: int | None) -> bytes:
        message = pb.Payload(timestamp=TS)
        if seq is not None:
            message.seq = seq
        for fields in metrics:
            message.metrics.add(**{"timestamp": TS, **fields})
        return message.SerializeToString()

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def nbirth(self, metrics: list[dict[str, Any]]) -> tuple[str, bytes]:
        self.seq = 0
        control = [
            {"name": "bdSeq", "datatype": D.INT64, "long_value": self.bd_seq},
            {"name": NODE_REBIRTH, "alias": 0, "datatype": D.BOOLEAN, "boolean_value": False},
        ]
        return self.topic("NBIRTH"), self.payload(control + metrics, 0)

    def dbirth(self, device: str, metrics: list[dict[str, Any]]) -> tuple[str, bytes]:
        return self.topic("DBIRTH", device), self.payload(metrics, self.next_seq())

    def ndata(self, metrics: list[dict[str, Any]]) -> tuple[str, bytes]:
        return self.topic("NDATA"), self.payload(metrics, self.next_seq())

    def ddata(self, device: str, metrics: list[dict[str, Any]]) -> tuple[str, bytes]:
        return self.topic("DDATA", device), self.payload(metrics, self.next_seq())

    def ddeath(self, device: str) -> tuple[str, bytes]:
        return self.topic("DDEATH", device), self.payload([], self.next_seq())

    def ndeath(self, bd_seq: int | None = None) -> tuple[str, bytes]:
        bd = self.bd_seq if bd_seq is None else bd_seq
        return self.topic("NDEATH"), self.payload(
            [{"name": "bdSeq", "datatype": D.INT64, "long_value": bd}], None
        )


NODE_METRICS = [
    {"name": "Supply Voltage", "alias": 1, "datatype": D.FLOAT, "float_value": 12.1},
    {"name": "Properties/OS", "alias": 2, "datatype": D.STRING, "string_value": "Linux"},
]
PUMP_METRICS = [
    {"name": "Outlet/Pressure", "alias": 10, "datatype": D.DOUBLE, "double_value": 0.42},
    {"name": "Running", "alias": 11, "datatype": D.BOOLEAN, "boolean_value": True},
    {"name": "Setpoint", "alias": 12, "datatype": D.INT16, "int_value": 0xFFFFFFF6},
    {"name": "Starts", "alias": 13, "datatype": D.UINT32, "int_value": 7},
]


def feed(host: SparkplugHost, message: tuple[str, bytes], at: int = NOW) -> HostOutput:
    topic, payload = message
    return host.handle(topic, payload, at)


def born(edge: Edge | None = None, host: SparkplugHost | None = None) -> tuple[SparkplugHost, Edge]:
    """A host that has seen `edge`'s NBIRTH and the DBIRTH of device ``pump``."""
    host = host or SparkplugHost("qiantang")
    edge = edge or Edge()
    feed(host, edge.nbirth(NODE_METRICS))
    feed(host, edge.dbirth("pump", PUMP_METRICS))
    return host, edge


def is_rebirth(output: HostOutput, edge: Edge) -> bool:
    """The output is exactly one rebirth request for `edge`, and nothing else."""
    if output.readings or output.state_changes or output.births or len(output.rebirths) != 1:
        return False
    rebirth = output.rebirths[0]
    (metric,) = decode_payload(rebirth.payload).metrics
    return (
        (rebirth.group, rebirth.edge_node) == (edge.group, edge.node)
        and rebirth.topic == f"spBv1.0/{edge.group}/NCMD/{edge.node}"
        and (metric.name, metric.datatype, metric.value) == (NODE_REBIRTH, D.BOOLEAN, True)
    )


# ------------------------------------------------------------------------------- births


def test_nbirth_brings_the_node_online_and_defines_its_metrics() -> None:
    host, edge = SparkplugHost("qiantang"), Edge()
    out = feed(host, edge.nbirth(NODE_METRICS))
    assert out.state_changes == [StateChange("Plant1", "Line3", None, True, NOW, "birth")]
    (birth,) = out.births
    assert (birth.group, birth.edge_node, birth.device) == ("Plant1", "Line3", None)
    assert [(d.name, d.alias, d.datatype, d.thing_type, d.control) for d in birth.metrics] == [
        ("bdSeq", None, D.INT64, ThingType("int"), True),
        (NODE_REBIRTH, 0, D.BOOLEAN, ThingType("bool"), True),
        ("Supply Voltage", 1, D.FLOAT, ThingType("float"), False),
        ("Properties/OS", 2, D.STRING, ThingType("text"), False),
    ]
    assert [(r.metric, r.value, r.ts_ms) for r in out.readings] == [
        (NODE_REBIRTH, False, TS),
        ("Supply Voltage", 12.1, TS),
        ("Properties/OS", "Linux", TS),
    ]  # births carry current values; bdSeq is bookkeeping, not a reading
    assert not out.rebirths and not out.rejected
    assert host.is_online("Plant1", "Line3")
    assert [d.name for d in host.definitions("Plant1", "Line3")][2:] == [
        "Supply Voltage",
        "Properties/OS",
    ]


def test_dbirth_brings_the_device_online() -> None:
    host, edge = SparkplugHost("qiantang"), Edge()
    feed(host, edge.nbirth([]))
    out = feed(host, edge.dbirth("pump", PUMP_METRICS))
    assert out.state_changes == [StateChange("Plant1", "Line3", "pump", True, NOW, "birth")]
    assert [(d.name, d.thing_type) for d in out.births[0].metrics] == [
        ("Outlet/Pressure", ThingType("double")),
        ("Running", ThingType("bool")),
        ("Setpoint", ThingType("int")),
        ("Starts", ThingType("int")),
    ]
    assert [(r.device, r.metric, r.value) for r in out.readings] == [
        ("pump", "Outlet/Pressure", 0.42),
        ("pump", "Running", True),
        ("pump", "Setpoint", -10),
        ("pump", "Starts", 7),
    ]
    assert host.is_online("Plant1", "Line3", "pump")
    assert not host.is_online("Plant1", "Line3", "fan")


def test_data_by_alias_becomes_readings_named_by_the_birth() -> None:
    host, edge = born()
    out = feed(host, edge.ddata("pump", [
        {"alias": 10, "double_value": 0.5, "timestamp": TS + 1},
        {"alias": 12, "int_value": 0xFFFFFFFF},  # no datatype: the birth's INT16 applies
        {"alias": 13, "datatype": D.UINT32, "is_null": True},
    ]))  # fmt: skip
    assert out.readings == [
        Reading("Plant1", "Line3", "pump", "Outlet/Pressure", 0.5, TS + 1, D.DOUBLE),
        Reading("Plant1", "Line3", "pump", "Setpoint", -1, TS, D.INT16),
        Reading("Plant1", "Line3", "pump", "Starts", None, TS, D.UINT32),
    ]
    out = feed(host, edge.ndata([
        {"alias": 1, "float_value": 11.9, "is_historical": True},
        {"alias": 1, "float_value": 11.8, "is_transient": True},
    ]))  # fmt: skip
    assert out.readings == [
        Reading("Plant1", "Line3", None, "Supply Voltage", 11.9, TS, D.FLOAT, historical=True),
        Reading("Plant1", "Line3", None, "Supply Voltage", 11.8, TS, D.FLOAT, transient=True),
    ]
    out = feed(host, edge.ndata([{"name": "Properties/OS", "string_value": "RTOS"}]))
    assert [(r.metric, r.value) for r in out.readings] == [("Properties/OS", "RTOS")]
    assert not out.rebirths and not out.rejected


def test_reading_time_falls_back_to_payload_then_arrival() -> None:
    host, edge = born()
    topic, _ = edge.ndata([])
    message = pb.Payload(seq=edge.seq)
    message.metrics.add(alias=1, float_value=1.0)
    out = host.handle(topic, message.SerializeToString(), NOW)
    assert out.readings[0].ts_ms == NOW
    message.seq, message.timestamp = edge.next_seq(), TS + 9
    assert host.handle(topic, message.SerializeToString(), NOW).readings[0].ts_ms == TS + 9


def test_seq_wraps_from_255_to_0_without_a_gap() -> None:
    host, edge = born()
    seen = []
    for i in range(600):
        out = feed(host, edge.ndata([{"alias": 1, "float_value": float(i)}]))
        assert not out.rebirths, f"message {i} (seq {edge.seq}) was taken for a gap"
        seen.append(edge.seq)
        assert out.readings[0].value == float(i)
    assert seen.count(0) == 2 and 255 in seen


# ------------------------------------------------------------------------------- rebirths


def test_a_seq_gap_asks_for_a_rebirth_and_drops_the_message() -> None:
    host, edge = born()
    edge.next_seq()  # a message lost on the way
    out = feed(host, edge.ddata("pump", [{"alias": 10, "double_value": 9.0}]))
    assert is_rebirth(out, edge)
    assert out.rebirths[0].reason == "DDATA seq 3 where 2 was due"


def test_until_the_rebirth_the_node_is_not_trusted() -> None:
    host, edge = born()
    edge.next_seq()
    assert is_rebirth(feed(host, edge.ndata([{"alias": 1, "float_value": 1.0}])), edge)
    quiet = feed(host, edge.ndata([{"alias": 1, "float_value": 2.0}]), at=NOW + 10)
    assert quiet == HostOutput()  # dropped, and no second request within the interval
    again = feed(host, edge.ndata([{"alias": 1, "float_value": 3.0}]), at=NOW + 5_000)
    assert is_rebirth(again, edge)
    out = feed(host, edge.nbirth(NODE_METRICS), at=NOW + 6_000)
    assert out.births and not out.rebirths
    out = feed(host, edge.ndata([{"alias": 1, "float_value": 4.0}]), at=NOW + 7_000)
    assert [r.value for r in out.readings] == [4.0]


def test_an_unknown_alias_asks_for_a_rebirth() -> None:
    host, edge = born()
    out = feed(
        host,
        edge.ddata("pump", [{"alias": 10, "double_value": 1.0}, {"alias": 99, "int_value": 1}]),
    )
    assert is_rebirth(out, edge)  # the whole message is dropped, the known metric too
    assert out.rebirths[0].reason == "DDATA with unknown alias 99"


def test_an_unknown_name_or_a_node_alias_on_a_device_asks_for_a_rebirth() -> None:
    host, edge = born()
    assert is_rebirth(feed(host, edge.ndata([{"name": "Nope", "int_value": 1}])), edge)
    host, edge = born()
    assert is_rebirth(feed(host, edge.ddata("pump", [{"alias": 1, "float_value": 1.0}])), edge)


def test_a_datatype_other_than_the_births_asks_for_a_rebirth() -> None:
    host, edge = born()
    out = feed(host, edge.ddata("pump", [{"alias": 13, "datatype": D.INT64, "long_value": 1}]))
    assert is_rebirth(out, edge)


@pytest.mark.parametrize("kind", ["NDATA", "DDATA", "DBIRTH", "DDEATH"])
def test_a_message_before_the_nbirth_asks_for_a_rebirth(kind: str) -> None:
    host, edge = SparkplugHost("qiantang"), Edge()
    topic = edge.topic(kind, None if kind == "NDATA" else "pump")
    out = host.handle(topic, edge.payload([{"alias": 1, "int_value": 1}], 5), NOW)
    assert is_rebirth(out, edge)
    assert out.rebirths[0].reason == f"{kind} before NBIRTH"
    assert not host.is_online(edge.group, edge.node)


def test_device_data_before_its_dbirth_asks_for_a_rebirth() -> None:
    host, edge = born()
    out = feed(host, edge.ddata("fan", [{"alias": 10, "double_value": 1.0}]))
    assert is_rebirth(out, edge)
    assert out.rebirths[0].reason == "DDATA from device 'fan' before its DBIRTH"


def test_a_new_nbirth_starts_a_new_session() -> None:
    host, edge = born()
    out = feed(host, edge.nbirth(NODE_METRICS))
    assert out.state_changes == [StateChange("Plant1", "Line3", "pump", False, NOW, "node_rebirth")]
    assert is_rebirth(feed(host, edge.ddata("pump", [{"alias": 10, "double_value": 1.0}])), edge)


# ------------------------------------------------------------------------------- deaths


def test_ndeath_with_the_births_bdseq_takes_node_and_devices_offline() -> None:
    host, edge = born(Edge(bd_seq=4))
    feed(
        host,
        edge.dbirth("fan", [{"name": "rpm", "alias": 20, "datatype": D.UINT16, "int_value": 5}]),
    )
    out = feed(host, edge.ndeath())
    assert out.state_changes == [
        StateChange("Plant1", "Line3", "pump", False, NOW, "node_death"),
        StateChange("Plant1", "Line3", "fan", False, NOW, "node_death"),
        StateChange("Plant1", "Line3", None, False, NOW, "death"),
    ]
    assert not host.is_online("Plant1", "Line3")
    assert not host.is_online("Plant1", "Line3", "pump")
    assert feed(host, edge.ndeath()) == HostOutput()  # already offline


def test_ndeath_with_another_bdseq_is_ignored() -> None:
    host, edge = born(Edge(bd_seq=4))
    assert feed(host, edge.ndeath(bd_seq=3)) == HostOutput()  # the will of an older session
    assert host.is_online("Plant1", "Line3", "pump")
    out = feed(host, edge.ddata("pump", [{"alias": 11, "boolean_value": False}]))
    assert [r.value for r in out.readings] == [False]


def test_reconnect_with_a_late_will_keeps_the_new_session() -> None:
    host, old = born(Edge(bd_seq=0))
    new = Edge(bd_seq=1)
    born(new, host)
    assert feed(host, old.ndeath()) == HostOutput()
    assert host.is_online("Plant1", "Line3", "pump")


def test_ddeath_takes_the_device_offline() -> None:
    host, edge = born()
    out = feed(host, edge.ddeath("pump"))
    assert out.state_changes == [StateChange("Plant1", "Line3", "pump", False, NOW, "death")]
    assert host.is_online("Plant1", "Line3") and not host.is_online("Plant1", "Line3", "pump")
    assert feed(host, edge.ddeath("pump")) == HostOutput()
    assert is_rebirth(feed(host, edge.ddata("pump", [{"alias": 10, "double_value": 1.0}])), edge)


# ------------------------------------------------------------------------------- rejections


def test_unreadable_messages_are_rejected_and_change_nothing() -> None:
    host, edge = born()
    for topic, payload, rule in [
        ("spBv1.0/Plant1/NDATA", b"", "levels"),
        (edge.topic("NDATA"), b"\xff\xff", "protobuf"),
        (edge.topic("NDATA"), edge.payload([{"alias": 1, "int_value": 1}], 2), "value_type"),
    ]:
        (rejected,) = host.handle(topic, payload, NOW).rejected
        assert (rejected.topic, rejected.rule) == (topic, rule)
    # the last one had the right seq: it was received, so the next seq follows it
    edge.next_seq()
    out = feed(host, edge.ndata([{"alias": 1, "float_value": 1.0}]))
    assert [r.value for r in out.readings] == [1.0]


@pytest.mark.parametrize(
    ("metrics", "field", "rule"),
    [
        ([{"alias": 5, "datatype": D.INT32, "int_value": 1}], "metrics[2].name", "name_missing"),
        ([{"name": "x", "int_value": 1}], "metrics[2].datatype", "datatype_missing"),
        (
            [{"name": "x", "alias": 0, "datatype": D.INT32, "int_value": 1}],
            "metrics[2].alias",
            "duplicate_alias",
        ),
        (
            [{"name": "bdSeq", "datatype": D.INT32, "int_value": 1}],
            "metrics[2].name",
            "duplicate_name",
        ),
    ],
)
def test_a_malformed_nbirth_is_rejected(
    metrics: list[dict[str, Any]], field: str, rule: str
) -> None:
    host, edge = SparkplugHost("qiantang"), Edge()
    out = feed(host, edge.nbirth(metrics))
    assert [(r.field, r.rule) for r in out.rejected] == [(field, rule)]
    assert not out.births and not out.state_changes and not host.is_online("Plant1", "Line3")


def test_an_nbirth_without_seq_is_rejected() -> None:
    host, edge = SparkplugHost("qiantang"), Edge()
    out = host.handle(edge.topic("NBIRTH"), edge.payload([], None), NOW)
    assert [r.rule for r in out.rejected] == ["seq"]


def test_commands_from_other_hosts_are_ignored() -> None:
    host, edge = born()
    assert host.handle(edge.topic("NCMD"), b"\xff", NOW) == HostOutput()
    assert host.handle(edge.topic("DCMD", "pump"), b"", NOW) == HostOutput()


# ------------------------------------------------------------------------------- host STATE


def test_session_gives_the_will_and_birth_with_one_timestamp() -> None:
    session = SparkplugHost("qiantang").session(TS)
    assert session.will == Publish("spBv1.0/STATE/qiantang", encode_state(False, TS), 1, True)
    assert session.birth == Publish("spBv1.0/STATE/qiantang", encode_state(True, TS), 1, True)
    assert json.loads(session.birth.payload) == {"online": True, "timestamp": TS}


def test_our_own_death_while_connected_is_answered_with_a_birth() -> None:
    host = SparkplugHost("qiantang")
    session = host.session(TS)
    out = host.handle(session.will.topic, session.will.payload, NOW)
    assert out.publishes == [session.birth]
    assert out.outgoing() == [session.birth]
    assert host.handle(session.birth.topic, session.birth.payload, NOW) == HostOutput()
    assert host.handle("spBv1.0/STATE/other", encode_state(False, 1), NOW) == HostOutput()
    assert host.handle("spBv1.0/STATE/other", b"OFFLINE", NOW).rejected[0].rule == "state"


# ------------------------------------------------------------------------------- commands out


def test_write_uses_the_births_alias_and_type() -> None:
    host, _ = born()
    publish = host.write("Plant1", "Line3", "pump", {"Setpoint": -20, "Running": False}, NOW)
    assert (publish.topic, publish.qos, publish.retain) == (
        "spBv1.0/Plant1/DCMD/Line3/pump",
        0,
        False,
    )
    decoded = decode_payload(publish.payload)
    assert decoded.seq is None
    assert [(m.name, m.alias, m.datatype, m.value) for m in decoded.metrics] == [
        (None, 12, D.INT16, -20),
        (None, 11, D.BOOLEAN, False),
    ]
    publish = host.write("Plant1", "Line3", None, {"bdSeq": 1}, NOW)  # no alias: by name
    assert decode_payload(publish.payload).metrics[0].name == "bdSeq"


def test_write_refuses_what_the_birth_does_not_allow() -> None:
    host, _ = born()
    for args, rule in [
        (("Plant1", "Line3", "pump", {"Nope": 1}), "unknown_metric"),
        (("Plant1", "Line3", "pump", {"Setpoint": 40000}), "range"),
        (("Plant1", "Line3", "fan", {"rpm": 1}), "offline"),
        (("Plant1", "Line9", None, {"x": 1}), "offline"),
    ]:
        with pytest.raises(SparkplugError) as info:
            host.write(*args, NOW)
        assert info.value.rule == rule


def test_rebirth_can_be_asked_for_by_hand() -> None:
    rebirth = SparkplugHost("qiantang").rebirth("Plant1", "Line3", NOW)
    assert rebirth.publish() == Publish("spBv1.0/Plant1/NCMD/Line3", rebirth.payload)
    assert decode_payload(rebirth.payload).metrics[0].name == NODE_REBIRTH


def test_without_bdseq_any_ndeath_ends_the_session() -> None:
    host, edge = SparkplugHost("qiantang"), Edge()
    topic = edge.topic("NBIRTH")
    assert host.handle(topic, edge.payload(NODE_METRICS, 0), NOW).births  # no bdSeq metric
    out = feed(host, edge.ndeath(bd_seq=9))
    assert [c.online for c in out.state_changes] == [False]
    assert not host.is_online("Plant1", "Line3")
