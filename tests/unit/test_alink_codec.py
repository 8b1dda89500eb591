"""Alink payload codec, reply encoding, topics and topic ACL."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from qiantang.protocols.alink import (
    MAX_FUTURE_MS,
    DeviceReadings,
    EventReading,
    PropertyReading,
    decode_event_post,
    decode_history_post,
    decode_pack_post,
    decode_property_post,
    decode_reply,
    encode_property_set,
    encode_service_call,
)
from qiantang.protocols.alink_topics import (
    AlinkCode,
    AlinkError,
    Direction,
    TopicKind,
    device_topic_owner,
    encode_error_reply,
    encode_reply,
    may_publish,
    may_subscribe,
    parse_topic,
    reply_topic,
)

NOW = 1_700_000_000_000


def _msg(params: Any, **envelope: Any) -> bytes:
    body = {"id": "123", "version": "1.0", "params": params, **envelope}
    return json.dumps(body).encode()


def _error(call: Any, *args: Any) -> AlinkError:
    with pytest.raises(AlinkError) as caught:
        call(*args)
    return caught.value


# --- property post ---------------------------------------------------------------------


def test_property_post_docs_example() -> None:
    payload = b"""{"id": "123", "version": "1.0", "sys": {"ack": 0},
      "params": {"Power": {"value": "on", "time": 1524448722000},
                 "WF": {"value": 23.6, "time": 1524448722000}},
      "method": "thing.event.property.post"}"""
    post = decode_property_post(payload, NOW)
    assert post.id == "123"
    assert post.ack is False
    assert post.properties == [
        PropertyReading("Power", "on", 1524448722000),
        PropertyReading("WF", 23.6, 1524448722000),
    ]


def test_short_long_and_mixed_forms() -> None:
    params = {
        "temp": 21.5,
        "on": True,
        "mode": {"value": 2},
        "rpm": {"value": 1200, "time": NOW - 5},
        "pos": {"x": 1, "y": [1, 2, {"z": None}]},
        "odd": {"value": 1, "time": 2, "unit": "C"},
    }
    post = decode_property_post(_msg(params), NOW)
    assert post.ack is True  # no sys -> the device wants a reply
    assert post.properties == [
        PropertyReading("temp", 21.5, NOW),
        PropertyReading("on", True, NOW),
        PropertyReading("mode", 2, NOW),
        PropertyReading("rpm", 1200, NOW - 5),
        PropertyReading("pos", {"x": 1, "y": [1, 2, {"z": None}]}, NOW),
        PropertyReading("odd", {"value": 1, "time": 2, "unit": "C"}, NOW),
    ]


@pytest.mark.parametrize(("raw", "expected"), [(7, "7"), (0, "0"), (4294967295, "4294967295")])
def test_integer_ids_are_returned_as_strings(raw: int, expected: str) -> None:
    assert decode_property_post(_msg({}, id=raw), NOW).id == expected


def test_200_properties_pass_201_answer_6106() -> None:
    decode_property_post(_msg({f"p{i}": i for i in range(200)}), NOW)
    err = _error(decode_property_post, _msg({f"p{i}": i for i in range(201)}), NOW)
    assert (err.code, err.field, err.rule) == (6106, "params", "max_items")
    assert err.request_id == "123"


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        (b"", "payload", "json"),
        (b"{", "payload", "json"),
        (b"not json", "payload", "json"),
        (b"\xff\xfe", "payload", "json"),
        (b'{"id": "1", "params": {"a": NaN}}', "payload", "json"),
        (b'{"id": "1", "params": {"a": Infinity}}', "payload", "json"),
        (b'{"id": "1", "params": {"a": 1e999}}', "params[...]", "range"),
        (b"[]", "payload", "type"),
        (b'{"params": {}}', "id", "required"),
        (b'{"id": "1"}', "params", "required"),
        (b'{"id": true, "params": {}}', "id", "type"),
        (b'{"id": 1.5, "params": {}}', "id", "type"),
        (b'{"id": -1, "params": {}}', "id", "range"),
        (b'{"id": 4294967296, "params": {}}', "id", "range"),
        (b'{"id": "", "params": {}}', "id", "length"),
        (b'{"id": "1", "sys": {"ack": 2}, "params": {}}', "sys.ack", "enum"),
        (b'{"id": "1", "sys": {"ack": true}, "params": {}}', "sys.ack", "type"),
        (b'{"id": "1", "sys": [], "params": {}}', "sys", "type"),
        (b'{"id": "1", "version": 1, "params": {}}', "version", "type"),
        (b'{"id": "1", "params": []}', "params", "type"),
        (b'{"id": "1", "params": "x"}', "params", "type"),
        (b'{"id": "1", "params": {"bad key": 1}}', "params.bad key", "identifier"),
        (b'{"id": "1", "params": {"": 1}}', "params.", "identifier"),
        (b'{"id": "1", "params": {"a": 99999999999999999999}}', "params.a", "range"),
        (b'{"id": "1", "params": {"a": [1, -9223372036854775809]}}', "params.a[1]", "range"),
        (b'{"id": "1", "params": {"a": {"value": 1, "time": "1"}}}', "params.a.time", "type"),
        (b'{"id": "1", "params": {"a": {"value": 1, "time": 1.0}}}', "params.a.time", "type"),
        (b'{"id": "1", "params": {"a": {"value": 1, "time": true}}}', "params.a.time", "type"),
        (b'{"id": "1", "params": {"a": {"value": 1, "time": null}}}', "params.a.time", "type"),
        (b'{"id": "1", "params": {"a": {"value": 1, "time": -1}}}', "params.a.time", "range"),
    ],
)
def test_bad_property_posts_answer_460(payload: bytes, field: str, rule: str) -> None:
    err = _error(decode_property_post, payload, NOW)
    assert (err.code, err.field, err.rule) == (460, field, rule)


def test_deep_nesting_is_refused() -> None:
    nested = b"[" * 40 + b"]" * 40
    err = _error(decode_property_post, b'{"id": "1", "params": {"a": ' + nested + b"}}", NOW)
    assert (err.code, err.rule) == (460, "depth")
    err = _error(decode_property_post, b"[" * 100_000, NOW)
    assert err.code == 460


def test_time_may_be_at_most_24_hours_ahead() -> None:
    limit = NOW + MAX_FUTURE_MS
    post = decode_property_post(_msg({"a": {"value": 1, "time": limit}}), NOW)
    assert post.properties[0].ts == limit
    err = _error(decode_property_post, _msg({"a": {"value": 1, "time": limit + 1}}), NOW)
    assert (err.field, err.rule) == ("params.a.time", "range")


def test_request_id_is_recovered_when_the_envelope_is_wrong() -> None:
    err = _error(decode_property_post, b'{"id": "77", "sys": {"ack": "yes"}, "params": {}}', NOW)
    assert err.request_id == "77"
    assert json.loads(encode_error_reply(err))["id"] == "77"


# --- event, history, pack ------------------------------------------------------------


def test_event_post() -> None:
    payload = _msg({"value": {"errorCode": "error", "level": 3}, "time": 1524448722000})
    post = decode_event_post(payload, NOW, "alarm")
    assert post.event == EventReading("alarm", {"errorCode": "error", "level": 3}, 1524448722000)
    assert decode_event_post(_msg({"value": {}}), NOW, "alarm").event.ts == NOW


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({}, "params.value", "required"),
        ([], "params", "type"),
        ({"value": [1]}, "params.value", "type"),
        ({"value": {"x y": 1}}, "params.value.x y", "identifier"),
        ({"value": {"a": 1}, "time": "now"}, "params.time", "type"),
    ],
)
def test_bad_event_posts(params: Any, field: str, rule: str) -> None:
    err = _error(decode_event_post, _msg(params), NOW, "alarm")
    assert (err.code, err.field, err.rule) == (460, field, rule)


def test_event_identifier_from_topic_is_checked() -> None:
    err = _error(decode_event_post, _msg({"value": {}}), NOW, "bad/id")
    assert (err.code, err.rule) == (6203, "identifier")


def test_history_post_docs_example() -> None:
    payload = b"""{"id": 123, "version": "1.0", "method": "thing.event.property.history.post",
      "params": [
        {"identity": {"productKey": "pk1", "deviceName": "dn1"},
         "properties": [{"Power": {"value": "on", "time": 123456},
                         "WF": {"value": "3", "time": 123456}},
                        {"Power": {"value": "off", "time": 123457}}],
         "events": [{"alarmEvent": {"value": {"Power": "on", "WF": "2"}, "time": 123456}}]},
        {"identity": {"productKey": "pk1", "deviceName": "dn2"}, "properties": []}]}"""
    post = decode_history_post(payload, NOW)
    assert post.id == "123"
    assert post.devices == [
        DeviceReadings(
            "pk1",
            "dn1",
            [
                PropertyReading("Power", "on", 123456),
                PropertyReading("WF", "3", 123456),
                PropertyReading("Power", "off", 123457),
            ],
            [EventReading("alarmEvent", {"Power": "on", "WF": "2"}, 123456)],
        ),
        DeviceReadings("pk1", "dn2", [], []),
    ]


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({}, "params", "type"),
        ([{}], "params[0].identity", "type"),
        ([{"identity": {"productKey": "p"}}], "params[0].identity.deviceName", "format"),
        ([{"identity": {"productKey": "p/", "deviceName": "d"}}], None, "format"),
        (
            [{"identity": {"productKey": "p", "deviceName": "d"}, "properties": [{"a": 1}]}],
            "params[0].properties[0].a",
            "type",
        ),
        (
            [
                {
                    "identity": {"productKey": "p", "deviceName": "d"},
                    "properties": [{"a": {"value": 1}}],
                }
            ],
            "params[0].properties[0].a.time",
            "required",
        ),
        (
            [{"identity": {"productKey": "p", "deviceName": "d"}, "properties": {}}],
            "params[0].properties",
            "type",
        ),
    ],
)
def test_bad_history_posts(params: Any, field: str | None, rule: str) -> None:
    err = _error(decode_history_post, _msg(params), NOW)
    assert err.code == 460
    assert err.rule == rule
    if field is not None:
        assert err.field == field


def _pack(n_props: int, n_events: int, n_subs: int, sub_props: int = 0) -> bytes:
    sub = {
        "identity": {"productKey": "sp", "deviceName": "sd"},
        "properties": {f"s{i}": {"value": i, "time": NOW} for i in range(sub_props)},
    }
    return _msg(
        {
            "properties": {f"p{i}": {"value": i, "time": NOW} for i in range(n_props)},
            "events": {f"e{i}": {"value": {"x": i}, "time": NOW} for i in range(n_events)},
            "subDevices": [sub] * n_subs,
        }
    )


def test_pack_post() -> None:
    post = decode_pack_post(_pack(2, 1, 2, sub_props=1), NOW)
    assert [p.identifier for p in post.properties] == ["p0", "p1"]
    assert post.events == [EventReading("e0", {"x": 0}, NOW)]
    assert post.sub_devices == [DeviceReadings("sp", "sd", [PropertyReading("s0", 0, NOW)], [])] * 2
    assert decode_pack_post(_msg({}), NOW).sub_devices == []


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (_pack(200, 20, 20), None),
        (_pack(0, 0, 21), AlinkCode.PACK_TOO_MANY_SUB_DEVICES),
        (_pack(201, 0, 0), AlinkCode.PACK_TOO_MANY_ITEMS),
        (_pack(150, 0, 1, sub_props=51), AlinkCode.PACK_TOO_MANY_ITEMS),
        (_pack(0, 21, 0), AlinkCode.PACK_TOO_MANY_ITEMS),
    ],
)
def test_pack_post_limits(payload: bytes, code: AlinkCode | None) -> None:
    if code is None:
        decode_pack_post(payload, NOW)
    else:
        assert _error(decode_pack_post, payload, NOW).code == code


def test_pack_post_sub_device_needs_identity() -> None:
    err = _error(decode_pack_post, _msg({"subDevices": [{"properties": {}}]}), NOW)
    assert (err.code, err.field) == (460, "params.subDevices[0].identity")


# --- replies and downlink ------------------------------------------------------------


def test_encode_reply() -> None:
    assert json.loads(encode_reply("123", 200)) == {
        "id": "123",
        "code": 200,
        "data": {},
        "message": "success",
        "version": "1.0",
    }
    reply = json.loads(encode_reply("9", 6106, method="thing.event.property.post"))
    assert reply["message"] == "map size must less than 200"
    assert reply["method"] == "thing.event.property.post"
    assert json.loads(encode_reply("1", 200, {"a": 1}, "ok"))["data"] == {"a": 1}


def test_encode_error_reply_names_field_and_rule() -> None:
    err = _error(decode_property_post, _msg({"t": {"value": 1, "time": "x"}}, id="42"), NOW)
    reply = json.loads(encode_error_reply(err, method="thing.event.property.post"))
    assert reply["id"] == "42"
    assert reply["code"] == 460
    assert reply["message"] == "params.t.time: must be an integer of milliseconds (type)"
    assert err.as_field_error().field == "params.t.time"


def test_downlink_requests() -> None:
    assert msgspec.json.decode(encode_property_set("5", {"temperature": 30.5})) == {
        "id": "5",
        "version": "1.0",
        "params": {"temperature": 30.5},
        "method": "thing.service.property.set",
    }
    call = msgspec.json.decode(encode_service_call("6", "SetWeight", {"NewWeight": 100.8}))
    assert call["method"] == "thing.service.SetWeight"
    assert call["params"] == {"NewWeight": 100.8}
    with pytest.raises(AlinkError):
        encode_service_call("7", "Set Weight", {})


def test_decode_reply() -> None:
    reply = decode_reply(
        b'{"id": "105917531", "code": 200, "data": {"OldWeight": 100.101}, "message": "ok"}'
    )
    assert (reply.id, reply.code, reply.data, reply.message) == (
        "105917531",
        200,
        {"OldWeight": 100.101},
        "ok",
    )
    assert decode_reply(b'{"id": "1", "code": 460}').data is None
    assert _error(decode_reply, b'{"id": "1"}').field == "code"


# --- topics --------------------------------------------------------------------------

S = "/sys/a1B2c3/CNC-0042"


@pytest.mark.parametrize(
    ("topic", "kind", "identifier", "method", "direction", "reply"),
    [
        (f"{S}/thing/event/property/post", TopicKind.PROPERTY_POST, None,
         "thing.event.property.post", Direction.UP, f"{S}/thing/event/property/post_reply"),
        (f"{S}/thing/event/property/post_reply", TopicKind.PROPERTY_POST_REPLY, None,
         "thing.event.property.post", Direction.DOWN, None),
        (f"{S}/thing/event/alarm/post", TopicKind.EVENT_POST, "alarm",
         "thing.event.alarm.post", Direction.UP, f"{S}/thing/event/alarm/post_reply"),
        (f"{S}/thing/event/alarm/post_reply", TopicKind.EVENT_POST_REPLY, "alarm",
         "thing.event.alarm.post", Direction.DOWN, None),
        (f"{S}/thing/event/property/history/post", TopicKind.HISTORY_POST, None,
         "thing.event.property.history.post", Direction.UP,
         f"{S}/thing/event/property/history/post_reply"),
        (f"{S}/thing/event/property/pack/post", TopicKind.PACK_POST, None,
         "thing.event.property.pack.post", Direction.UP,
         f"{S}/thing/event/property/pack/post_reply"),
        (f"{S}/thing/service/property/set", TopicKind.PROPERTY_SET, None,
         "thing.service.property.set", Direction.DOWN, f"{S}/thing/service/property/set_reply"),
        (f"{S}/thing/service/property/set_reply", TopicKind.PROPERTY_SET_REPLY, None,
         "thing.service.property.set", Direction.UP, None),
        (f"{S}/thing/service/SetWeight", TopicKind.SERVICE_CALL, "SetWeight",
         "thing.service.SetWeight", Direction.DOWN, f"{S}/thing/service/SetWeight_reply"),
        (f"{S}/thing/service/SetWeight_reply", TopicKind.SERVICE_REPLY, "SetWeight",
         "thing.service.SetWeight", Direction.UP, None),
        (f"{S}/rrpc/request/1234", TopicKind.RRPC_REQUEST, "1234", None, Direction.DOWN,
         f"{S}/rrpc/response/1234"),
        (f"{S}/rrpc/response/1234", TopicKind.RRPC_RESPONSE, "1234", None, Direction.UP, None),
        (f"{S}/thing/topo/add", TopicKind.TOPO_ADD, None, "thing.topo.add", Direction.UP,
         f"{S}/thing/topo/add_reply"),
        (f"{S}/thing/topo/delete_reply", TopicKind.TOPO_DELETE_REPLY, None,
         "thing.topo.delete", Direction.DOWN, None),
        (f"{S}/thing/topo/get", TopicKind.TOPO_GET, None, "thing.topo.get", Direction.UP,
         f"{S}/thing/topo/get_reply"),
        ("/ext/session/a1B2c3/CNC-0042/combine/login", TopicKind.SESSION_LOGIN, None,
         "combine.login", Direction.UP, "/ext/session/a1B2c3/CNC-0042/combine/login_reply"),
        ("/ext/session/a1B2c3/CNC-0042/combine/logout_reply", TopicKind.SESSION_LOGOUT_REPLY,
         None, "combine.logout", Direction.DOWN, None),
        ("/ext/session/a1B2c3/CNC-0042/combine/batch_login", TopicKind.SESSION_BATCH_LOGIN,
         None, "combine.batch.login", Direction.UP,
         "/ext/session/a1B2c3/CNC-0042/combine/batch_login_reply"),
        ("/shadow/update/a1B2c3/CNC-0042", TopicKind.SHADOW_UPDATE, None, None, Direction.UP,
         "/shadow/get/a1B2c3/CNC-0042"),
        ("/shadow/get/a1B2c3/CNC-0042", TopicKind.SHADOW_GET, None, None, Direction.DOWN, None),
    ],
)  # fmt: skip
def test_parse_topic(
    topic: str,
    kind: TopicKind,
    identifier: str | None,
    method: str | None,
    direction: Direction,
    reply: str | None,
) -> None:
    parsed = parse_topic(topic)
    assert (parsed.product_key, parsed.device_name) == ("a1B2c3", "CNC-0042")
    assert (parsed.kind, parsed.identifier, parsed.method) == (kind, identifier, method)
    assert parsed.direction is direction
    assert parsed.reply_topic == reply
    if reply is None:
        assert _error(reply_topic, topic).rule == "no_reply"
    else:
        assert reply_topic(topic) == reply


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "/",
        "sys/pk/dn/thing/event/property/post",
        "/sys/pk/dn",
        "/sys/pk/dn/thing/event/property/post/extra",
        "/sys/pk/dn/thing/event/property",
        "/sys/pk/dn/thing/event/a b/post",
        "/sys/pk/dn/thing/service/property",
        "/sys/pk/dn/thing/service/a/b",
        "/sys/pk/dn/rrpc/request/",
        "/sys/p+k/dn/thing/event/property/post",
        "/sys//dn/thing/event/property/post",
        "/shadow/delete/pk/dn",
        "/shadow/get/pk/dn/x",
        "/ext/session/pk/dn/combine/hello",
        "/ext/ntp/pk/dn/request",
        "/pk/dn/user/update",
    ],
)
def test_unknown_topics_answer_6203(topic: str) -> None:
    err = _error(parse_topic, topic)
    assert (err.code, err.field) == (AlinkCode.TOPIC_PARSE_FAILED, "topic")


@pytest.mark.parametrize(
    ("topic", "owner"),
    [
        ("/sys/pk/dn/thing/event/property/post", ("pk", "dn")),
        ("/sys/pk/dn", ("pk", "dn")),
        ("/sys/pk/dn/anything/below", ("pk", "dn")),
        ("/ext/session/pk/dn/combine/login", ("pk", "dn")),
        ("/shadow/update/pk/dn", ("pk", "dn")),
        ("/shadow/get/pk/dn", ("pk", "dn")),
        ("/shadow/get/pk/dn/x", None),
        ("/sys/pk", None),
        ("/sys/+/dn/#", None),
        ("/pk/dn/user/get", None),
        ("$SYS/broker", None),
    ],
)
def test_device_topic_owner(topic: str, owner: tuple[str, str] | None) -> None:
    assert device_topic_owner(topic) == owner


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("/sys/pk/dn/thing/event/property/post", True),
        ("/sys/pk/dn/thing/service/Reboot_reply", True),
        ("/shadow/update/pk/dn", True),
        ("/ext/session/pk/dn/combine/login", True),
        ("/sys/pk/other/thing/event/property/post", False),
        ("/sys/other/dn/thing/event/property/post", False),
        ("/sys/pk/dn/thing/+/post", False),
        ("/sys/pk/dn/#", False),
        ("/sys/pk/dn/a\x00b", False),
        ("", False),
    ],
)
def test_may_publish(topic: str, allowed: bool) -> None:
    assert may_publish(topic, "pk", "dn") is allowed


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        ("/sys/pk/dn/thing/service/property/set", True),
        ("/sys/pk/dn/#", True),
        ("/sys/pk/dn/thing/event/+/post_reply", True),
        ("/sys/pk/dn/thing/service/+", True),
        ("/sys/pk/dn/rrpc/request/+", True),
        ("/ext/session/pk/dn/#", True),
        ("/shadow/get/pk/dn", True),
        ("#", False),
        ("/#", False),
        ("+/sys/pk/dn/#", False),
        ("/sys/#", False),
        ("/sys/pk/#", False),
        ("/sys/pk/+/thing/service/property/set", False),
        ("/sys/+/dn/#", False),
        ("/sys/pk/dn2/#", False),
        ("/sys/pk/dn/a#", False),
        ("/sys/pk/dn/#/x", False),
        ("/sys/pk/dn/a+", False),
        ("/shadow/+/pk/dn", False),
        ("/shadow/get/pk/+", False),
        ("/shadow/get/pk/dn/#", False),
        ("/ext/+/pk/dn/#", False),
        ("$share/g/sys/pk/dn/#", False),
        ("", False),
    ],
)
def test_may_subscribe(topic_filter: str, allowed: bool) -> None:
    assert may_subscribe(topic_filter, "pk", "dn") is allowed
