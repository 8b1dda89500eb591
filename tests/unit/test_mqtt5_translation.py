"""The MQTT 5 -> 3.1.1 translator, packet by packet (no sockets), and fuzzed."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qiantang.adapters.broker.mqtt5_translation import Mqtt5Translator
from qiantang.adapters.broker.mqtt5_wire import Mqtt5Error, connect_level, encode_packet


def s(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


def props(*items: bytes) -> bytes:
    block = b"".join(items)
    assert len(block) < 128
    return bytes((len(block),)) + block


def connect(
    client_id: bytes = b"dev-1",
    properties: bytes = b"\x00",
    flags: int = 0x82,
    tail: bytes = b"",
) -> bytes:
    """A CONNECT body: clean start, username 'token' unless `flags` says otherwise."""
    payload = s(client_id) + tail + (s(b"token") if flags & 0x80 else b"")
    return s(b"MQTT") + bytes((5, flags)) + b"\x00\x3c" + properties + payload


def v311_body(packet: bytes) -> bytes:
    """Strip the fixed header of a translated packet (lengths here are < 128)."""
    assert packet[1] < 128
    return packet[2:]


def test_connect_becomes_a_clean_3_1_1_connect() -> None:
    t = Mqtt5Translator(connect(properties=props(b"\x21\x00\x05", b"\x11\x00\x00\x0e\x10")))
    body = v311_body(t.connect_v311)
    assert t.connect_v311[0] == 0x10
    assert body[:7] == s(b"MQTT") + b"\x04"
    assert body[7] & 0x02  # clean session
    assert body[10:] == s(b"dev-1") + s(b"token")
    assert t.receive_maximum == 5
    connack = t.from_broker(0x20, b"\x00\x00").to_client[0]
    # flags, success, then properties: Session Expiry 0 (the client asked for 3600), no
    # subscription identifiers, no shared subscriptions
    assert connack == encode_packet(
        0x20, b"\x00\x00" + props(b"\x11\x00\x00\x00\x00", b"\x29\x00\x2a\x00")
    )


def test_an_empty_client_id_is_assigned() -> None:
    t = Mqtt5Translator(connect(client_id=b""))
    body = v311_body(t.connect_v311)
    assigned = body[12 : 12 + int.from_bytes(body[10:12], "big")]
    assert assigned.startswith(b"mqtt5-")
    connack = t.from_broker(0x20, b"\x00\x00").to_client[0]
    assert b"\x12" + s(assigned) in connack


@pytest.mark.parametrize(
    ("properties", "code"),
    [
        (props(b"\x15" + s(b"SCRAM-SHA-1")), 0x8C),  # enhanced auth
        (props(b"\x21\x00\x00"), 0x82),  # Receive Maximum 0
        (props(b"\x21\x00\x05\x21\x00\x06"), 0x82),  # a property twice
        (props(b"\x23\x00\x01"), 0x82),  # Topic Alias is not a CONNECT property
        (props(b"\x7f\x00"), 0x81),  # no such property
        (b"\x05\x11", 0x81),  # property block longer than the packet
    ],
)
def test_bad_connects_are_refused_with_their_reason(properties: bytes, code: int) -> None:
    with pytest.raises(Mqtt5Error) as err:
        Mqtt5Translator(connect(properties=properties))
    assert err.value.code == code
    assert Mqtt5Translator.refusal(code) == bytes((0x20, 3, 0, code, 0))


def test_refused_connack_codes_map_to_mqtt5() -> None:
    t = Mqtt5Translator(connect())
    assert t.from_broker(0x20, b"\x00\x05").to_client[0] == bytes((0x20, 3, 0, 0x87, 0))
    assert t.from_broker(0x20, b"\x00\x04").to_client[0] == bytes((0x20, 3, 0, 0x86, 0))


def test_publish_in_drops_properties_and_refuses_topic_aliases() -> None:
    t = Mqtt5Translator(connect())
    body = s(b"v1/gateway/telemetry") + b"\x00\x07" + props(b"\x01\x01") + b'{"a":1}'
    out = t.from_client(0x32, body)
    assert out.to_broker == [encode_packet(0x32, s(b"v1/gateway/telemetry") + b'\x00\x07{"a":1}')]
    alias = s(b"t") + b"\x00\x08" + props(b"\x23\x00\x01") + b"x"
    refused = t.from_client(0x32, alias)
    assert refused.disconnect == 0x94
    assert refused.to_client == [bytes((0xE0, 2, 0x94, 0))]


def test_publish_out_gains_an_empty_property_block() -> None:
    t = Mqtt5Translator(connect())
    out = t.from_broker(0x30, s(b"v1/devices/me/attributes") + b"{}")
    assert out.to_client == [encode_packet(0x30, s(b"v1/devices/me/attributes") + b"\x00{}")]


def test_receive_maximum_holds_deliveries_until_acknowledged() -> None:
    t = Mqtt5Translator(connect(properties=props(b"\x21\x00\x01")))
    first = t.from_broker(0x32, s(b"a") + b"\x00\x01" + b"x")
    second = t.from_broker(0x32, s(b"a") + b"\x00\x02" + b"y")
    assert len(first.to_client) == 1 and second.to_client == []
    ack = t.from_client(0x40, b"\x00\x01\x00\x00")  # MQTT 5 PUBACK: id, reason, properties
    assert ack.to_broker == [b"\x40\x02\x00\x01"]
    assert ack.to_client == [encode_packet(0x32, s(b"a") + b"\x00\x02\x00y")]


def test_a_delivery_too_large_for_the_client_is_dropped_and_acknowledged() -> None:
    t = Mqtt5Translator(connect(properties=props(b"\x27\x00\x00\x00\x20")))
    out = t.from_broker(0x32, s(b"a") + b"\x00\x09" + b"x" * 64)
    assert out.to_client == [] and out.to_broker == [b"\x40\x02\x00\x09"]
    out = t.from_broker(0x34, s(b"a") + b"\x00\x0a" + b"x" * 64)  # QoS 2: PUBREC, then PUBCOMP
    assert out.to_broker == [b"\x50\x02\x00\x0a"]
    assert t.from_broker(0x62, b"\x00\x0a").to_broker == [b"\x70\x02\x00\x0a"]


def test_subscribe_refuses_unsupported_options_per_filter() -> None:
    t = Mqtt5Translator(connect())
    body = (
        b"\x00\x03\x00"
        + s(b"v1/gateway/rpc")
        + b"\x01"  # QoS 1
        + s(b"$share/g/v1/gateway/rpc")
        + b"\x01"
        + s(b"v1/gateway/attributes")
        + b"\x21"  # QoS 1, Retain Handling 2
    )
    out = t.from_client(0x82, body)
    assert out.to_broker == [encode_packet(0x82, b"\x00\x03" + s(b"v1/gateway/rpc") + b"\x01")]
    suback = t.from_broker(0x90, b"\x00\x03\x01").to_client[0]
    assert suback == encode_packet(0x90, b"\x00\x03\x00" + bytes((0x01, 0x9E, 0x83)))
    unsub = t.from_client(0xA2, b"\x00\x04\x00" + s(b"v1/gateway/rpc") + s(b"nope"))
    assert unsub.to_broker == [encode_packet(0xA2, b"\x00\x04" + s(b"v1/gateway/rpc") + s(b"nope"))]
    assert t.from_broker(0xB0, b"\x00\x04").to_client == [
        encode_packet(0xB0, b"\x00\x04\x00" + bytes((0x00, 0x11)))
    ]


def test_subscription_identifiers_and_auth_packets_end_the_connection() -> None:
    t = Mqtt5Translator(connect())
    sub_id = b"\x00\x05" + props(b"\x0b\x01") + s(b"a") + b"\x00"
    assert t.from_client(0x82, sub_id).disconnect == 0xA1
    assert t.from_client(0xF0, b"\x00\x00").disconnect == 0x82


def test_pings_and_disconnects_pass_through() -> None:
    t = Mqtt5Translator(connect())
    assert t.from_client(0xC0, b"").to_broker == [b"\xc0\x00"]
    assert t.from_client(0xE0, b"\x00\x00").to_broker == [b"\xe0\x00"]
    assert t.from_broker(0xD0, b"").to_client == [b"\xd0\x00"]


def test_connect_level() -> None:
    assert connect_level(connect()) == 5
    assert connect_level(s(b"MQTT") + b"\x04\x02\x00\x3c") == 4
    assert connect_level(b"\x00") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_connects_raise_only_mqtt5_errors(body: bytes) -> None:
    try:
        Mqtt5Translator(s(b"MQTT") + b"\x05" + body)
    except Mqtt5Error:
        pass


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=200))
def test_fuzzed_client_packets_never_raise(header: int, body: bytes) -> None:
    t = Mqtt5Translator(connect())
    out = t.from_client(header, body)
    assert out.disconnect is not None or out.to_broker or out.to_client
