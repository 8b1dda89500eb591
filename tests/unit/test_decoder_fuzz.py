"""Fuzzing the protocol decoders: only the documented error type may escape.

Each test runs 10,000 examples, on arbitrary input and on structurally plausible input, for the
Alink payload decoders, the topic parser and ACL, the CONNECT parser and the line-protocol
decoder. Strategies draw mostly from pools of awkward values: every primitive draw costs time,
and the whole file has to stay near a minute on a 2-core machine.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from random import Random
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from qiantang.domain.errors import InvalidInput
from qiantang.protocols.alink import (
    MAX_FUTURE_MS,
    MAX_PROPERTIES,
    decode_event_post,
    decode_history_post,
    decode_pack_post,
    decode_property_post,
    decode_reply,
)
from qiantang.protocols.alink_auth import parse_connect, sign, verify
from qiantang.protocols.alink_topics import (
    AlinkCode,
    AlinkError,
    device_topic_owner,
    is_identifier,
    may_publish,
    may_subscribe,
    parse_topic,
    reply_topic,
)
from qiantang.protocols.line_protocol import LinePoint, decode_lines

NOW = 1_700_000_000_000
FUZZ = settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CODES = {int(code) for code in AlinkCode}


def _event(payload: bytes, now_ms: int) -> object:
    return decode_event_post(payload, now_ms, "alarm")


def _reply(payload: bytes, now_ms: int) -> object:
    return decode_reply(payload)


DECODERS: dict[str, Callable[[bytes, int], object]] = {
    "property": decode_property_post,
    "event": _event,
    "history": decode_history_post,
    "pack": decode_pack_post,
    "reply": _reply,
}


def _check_readings(readings: list[Any]) -> None:
    for reading in readings:
        assert is_identifier(reading.identifier)
        assert type(reading.ts) is int
        assert 0 <= reading.ts <= NOW + MAX_FUTURE_MS


def _check_result(result: Any) -> None:
    """Whatever a decoder accepts must satisfy the documented guarantees."""
    assert isinstance(result.id, str)
    for name in ("properties", "events"):
        _check_readings(getattr(result, name, []))
    if hasattr(result, "event"):
        _check_readings([result.event])
    for device in getattr(result, "devices", []) + getattr(result, "sub_devices", []):
        _check_readings(device.properties + device.events)
    assert len(getattr(result, "properties", [])) <= MAX_PROPERTIES


def _run_alink(kind: str, payload: bytes) -> None:
    try:
        result = DECODERS[kind](payload, NOW)
    except AlinkError as err:
        error = err
    else:
        _check_result(result)
        return
    assert error.code in CODES
    assert error.field
    assert error.rule


@FUZZ
@given(st.binary(max_size=80))
def test_alink_decoders_on_arbitrary_bytes(payload: bytes) -> None:
    for kind in DECODERS:
        _run_alink(kind, payload)


# --- structurally plausible Alink JSON ---------------------------------------------------
# Hypothesis draws the message kind and a seeded `random.Random`; plain Python builds the
# message. One draw per example instead of dozens keeps 10,000 examples to seconds; the payload
# is `note()`d, since shrinking a seed tells little. Each message gets a chaos level: at every
# choice it takes an awkward value (huge ints, NaN, deep nesting, wrong types...) with that
# probability, so accepted and refused messages both come up often.

GOOD_KEYS = ["Power", "WF", "temp", "m:p", "a_1"]
BAD_KEYS = ["value", "time", "x y", "", "a" * 51, "温度", "a/b", "m:", ":p"]
GOOD_VALUES: list[Any] = [0, 1, -5, 2.5, -0.0, "on", "", True, False, None, [1, 2], {"x": 1}]
_DEEP_LIST: list[Any] = []
_DEEP_DICT: dict[str, Any] = {}
for _ in range(20):
    _DEEP_LIST, _DEEP_DICT = [_DEEP_LIST], {"d": _DEEP_DICT}
BAD_VALUES: list[Any] = [
    2**63, -(2**63) - 1, 2**64, 10**30, 1e308, float("nan"), float("inf"), float("-inf"),
    "\x00", "a" * 300, {"value": 1}, {"value": 1, "time": 5}, {"x y": 1}, [float("nan")],
    {"a": [2**64]}, _DEEP_LIST, _DEEP_DICT,
]  # fmt: skip
GOOD_TIMES: list[Any] = [0, NOW, NOW - 86_400_000, NOW + MAX_FUTURE_MS]
BAD_TIMES: list[Any] = [-1, NOW + MAX_FUTURE_MS + 1, 2**63, 2**64, 1.5, "1", True, None]


class _Gen:
    def __init__(self, rnd: Random) -> None:
        self.rnd = rnd
        self.chaos = rnd.choice([0.0, 0.01, 0.05, 0.2, 0.5])

    def bad(self) -> bool:
        return self.rnd.random() < self.chaos

    def pick(self, good: list[Any], bad: list[Any]) -> Any:
        return self.rnd.choice(bad if self.bad() else good)

    def key(self) -> str:
        return str(self.pick(GOOD_KEYS, BAD_KEYS))

    def wild(self, depth: int = 0) -> Any:
        """Anything JSON can carry, awkward values first."""
        roll = self.rnd.random()
        if roll < 0.5 or depth > 2:
            return self.rnd.choice(BAD_VALUES + GOOD_VALUES)
        if roll < 0.6:
            return self.rnd.randint(-(2**70), 2**70)
        if roll < 0.7:
            return struct.unpack("<d", self.rnd.randbytes(8))[0]  # NaN and inf included
        if roll < 0.85:
            return [self.wild(depth + 1) for _ in range(self.rnd.randint(0, 3))]
        return {self.key(): self.wild(depth + 1) for _ in range(self.rnd.randint(0, 3))}

    def value(self) -> Any:
        return self.wild() if self.bad() else self.rnd.choice(GOOD_VALUES)

    def many(self, build: Callable[[], Any], most: int) -> list[Any]:
        return [build() for _ in range(self.rnd.randint(0, most))]

    def shaped(self, build: Callable[[], Any]) -> Any:
        """Usually the structure `build` makes, sometimes anything at all."""
        return self.wild() if self.bad() else build()

    def entry(self) -> Any:
        if self.rnd.random() < 0.4:
            return self.value()
        entry = {"value": self.value()}
        if self.rnd.random() < 0.8:
            entry["time"] = self.pick(GOOD_TIMES, BAD_TIMES)
        return entry

    def props(self) -> Any:
        return self.shaped(
            lambda: {self.key(): self.entry() for _ in range(self.rnd.randint(0, 4))}
        )

    def event(self) -> Any:
        body: dict[str, Any] = {"value": {self.key(): self.value() for _ in range(2)}}
        if self.rnd.random() < 0.6:
            body["time"] = self.pick(GOOD_TIMES, BAD_TIMES)
        return self.shaped(lambda: body)

    def events(self) -> Any:
        return self.shaped(
            lambda: {self.key(): self.event() for _ in range(self.rnd.randint(0, 3))}
        )

    def identity(self) -> Any:
        names = (["pk", "dn", "sub-1"], ["a/b", "", "x" * 65, "a+b", 7, None])
        return self.shaped(
            lambda: {"productKey": self.pick(*names), "deviceName": self.pick(*names)}
        )

    def history(self) -> Any:
        def entry() -> dict[str, Any]:
            return {"identity": self.identity(), "properties": self.many(self.props, 2),
                    "events": self.many(self.events, 2)}  # fmt: skip

        return self.shaped(lambda: self.many(entry, 3))

    def pack(self) -> Any:
        def sub() -> dict[str, Any]:
            return {
                "identity": self.identity(),
                "properties": self.props(),
                "events": self.events(),
            }

        return self.shaped(lambda: {"properties": self.props(), "events": self.events(),
                                    "subDevices": self.many(sub, 3)})  # fmt: skip

    def message(self, kind: str) -> str:
        params = {"property": self.props, "event": self.event, "history": self.history,
                  "pack": self.pack, "reply": self.value}[kind]  # fmt: skip
        message = {
            "id": self.pick(["123", "abc", 0, 4294967295], ["", "x" * 65, 4294967296, -1, 1.5]),
            "version": "1.0",
            "sys": {"ack": self.pick([0, 1], [2, True, "1", None])},
            "params": params(),
            "method": "thing.event.property.post",
            "code": self.pick([200, 460], ["200", None, 2**64]),
            "data": self.value(),
        }
        for name in list(message):
            if self.bad():  # drop a field, or move it to the end of the object
                value = message.pop(name)
                if self.rnd.random() < 0.5:
                    message[name] = value
        text = json.dumps(message, allow_nan=True)  # NaN, Infinity and huge ints on the wire
        return text[: self.rnd.randint(0, len(text))] if self.bad() else text


@FUZZ
@given(st.sampled_from(sorted(DECODERS)), st.randoms(use_true_random=True))
def test_alink_decoders_on_plausible_json(kind: str, rnd: Random) -> None:
    payload = _Gen(rnd).message(kind).encode()
    note(repr(payload))
    _run_alink(kind, payload)


# --- topics and topic ACL ----------------------------------------------------------------

LEVELS = [
    "", "sys", "pk", "dn", "thing", "event", "property", "post", "post_reply", "service", "set",
    "set_reply", "history", "pack", "topo", "add", "get", "rrpc", "request", "response", "123",
    "shadow", "update", "ext", "session", "combine", "login", "batch_login", "Reboot_reply",
    "ota", "device", "upgrade", "progress", "inform",
    "+", "#", "$share", "a b", "p+k", "x#", "\x00", "é", "a" * 70, "_reply", "property_reply",
]  # fmt: skip
CONCRETE = ["", "a", "thing", "post", "sys", "pk", "dn", "x_reply", "$SYS"]


PREFIXES = [
    ["", "sys", "pk", "dn"],
    ["", "ext", "session", "pk", "dn"],
    ["", "shadow", "update", "pk", "dn"],
    ["", "shadow", "get", "pk", "dn"],
    ["", "ota", "device", "upgrade", "pk", "dn"],
    ["", "ota", "device", "progress", "pk", "dn"],
    ["", "ota", "device", "inform", "pk", "dn"],
]


def _random_topic(rnd: Random) -> str:
    """Random levels, or a real prefix and tail with a few levels swapped (ACL edge cases)."""
    if rnd.random() < 0.1:
        return "".join(rnd.choice("/+#pkdnsy é\x00") for _ in range(rnd.randint(0, 12)))
    if rnd.random() < 0.4:
        return "/".join(rnd.choice(LEVELS) for _ in range(rnd.randint(0, 8)))
    levels = rnd.choice(PREFIXES) + [rnd.choice(LEVELS) for _ in range(rnd.randint(0, 3))]
    for _ in range(rnd.randint(0, 2)):
        levels[rnd.randrange(len(levels))] = rnd.choice(LEVELS)
    if rnd.random() < 0.2:
        del levels[rnd.randrange(len(levels))]
    return "/".join(levels)


def _matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 topic matching, written out plainly as the oracle."""
    want, have = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or (level != "+" and level != have[i]):
            return False
    return len(want) == len(have)


def _owned(topic: str) -> bool:
    """Independent oracle: is `topic` in device (pk, dn)'s own subtree, per the ACL rules?"""
    levels = topic.split("/")
    return (
        levels[:4] == ["", "sys", "pk", "dn"]
        or levels[:5] == ["", "ext", "session", "pk", "dn"]
        or levels in (["", "shadow", "update", "pk", "dn"], ["", "shadow", "get", "pk", "dn"])
        or (
            levels[:3] == ["", "ota", "device"]
            and levels[3:]
            in (["upgrade", "pk", "dn"], ["progress", "pk", "dn"], ["inform", "pk", "dn"])
        )
    )


def _check_parse(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except AlinkError as err:
        code = err.code
    else:
        assert device_topic_owner(topic) == (parsed.product_key, parsed.device_name)
        if parsed.reply_topic is not None:
            assert reply_topic(topic) == parsed.reply_topic
        return
    assert code == AlinkCode.TOPIC_PARSE_FAILED


def _concrete(topic_filter: str, rnd: Random) -> str:
    levels: list[str] = []
    for level in topic_filter.split("/"):
        if level == "#":
            levels.extend(rnd.choice(CONCRETE) for _ in range(rnd.randint(0, 2)))
        else:
            levels.append(rnd.choice(CONCRETE) if level == "+" else level)
    return "/".join(levels)


@FUZZ
@given(st.none() | st.text(max_size=12), st.randoms(use_true_random=True))
def test_topic_parser_and_acl(text: str | None, rnd: Random) -> None:
    topic = _random_topic(rnd) if text is None else text
    _check_parse(topic)
    owner = device_topic_owner(topic)
    assert owner is None or (isinstance(owner, tuple) and len(owner) == 2)
    if may_publish(topic, "pk", "dn"):
        assert "+" not in topic and "#" not in topic
        assert owner == ("pk", "dn")
        assert _owned(topic)
    if may_subscribe(topic, "pk", "dn"):
        # every concrete topic the filter matches must lie in the device's own subtree
        for _ in range(3):
            concrete = _concrete(topic, rnd)
            if _matches(topic, concrete):
                assert _owned(concrete)


# --- CONNECT -----------------------------------------------------------------------------

PARAM_ITEMS = [
    "securemode=2", "securemode=3", "securemode=-2", "secureMode=3", "signmethod=hmacsha1",
    "signmethod=hmacsha256", "signmethod=HMACMD5", "signmethod=sha256", "timestamp=1",
    "timestamp=01", "timestamp=99999999999999999999", "_v=sdk-c-3.0.1", "lan=C", "gw=0",
    "authtype=id2", "", "x", "=", "a=b=c", "é=1", "|", "timestamp=", "ext=1", "_ss=1",
]  # fmt: skip


def _random_connect(rnd: Random) -> tuple[str, str, str]:
    cid = rnd.choice(["c", "pk.dn", "", "a b", "x" * 65, "é", "SN1928339"])
    items = [rnd.choice(PARAM_ITEMS) for _ in range(rnd.randint(0, 5))]
    client_id = f"{cid}|{','.join(items)}{rnd.choice(['|', '|', '', '||', '|x'])}"
    username = rnd.choice(["dn&pk", "&", "a&b&c", "dn", "d/n&pk", "é&p", "dn&", "&pk"])
    password = rnd.choice(["", "zz", "é", "a" * 64, "0" * 40, "ÿ" * 64])
    return client_id, username, password


@FUZZ
@given(st.text(max_size=20).map(lambda t: (t, t[::-1], t[:8]))
       | st.builds(_random_connect, st.randoms(use_true_random=True)))  # fmt: skip
def test_parse_connect(case: tuple[str, str, str]) -> None:
    client_id, username, password = case
    try:
        connect = parse_connect(client_id, username)
    except InvalidInput as err:
        errors = err.errors
    else:
        assert connect.secure_mode in (2, 3)
        assert verify(connect, "secret", sign(connect, "secret"))
        assert isinstance(verify(connect, "secret", password), bool)
        return
    assert errors


# --- line protocol -----------------------------------------------------------------------


def _check_batch(body: str | bytes, precision: str = "ns") -> None:
    batch = decode_lines(body, precision, now_ms=NOW)  # type: ignore[arg-type]
    numbers = [p.line for p in batch.points] + [n for n, _ in batch.errors]
    assert len(numbers) == len(set(numbers))
    for point in batch.points:
        assert point.fields
        assert type(point.ts_ms) is int


@FUZZ
@given(st.text(max_size=64) | st.binary(max_size=64))
def test_line_protocol_on_arbitrary_input(body: str | bytes) -> None:
    _check_batch(body)


SPECIAL = ' ,="\\#_iuTtFfe.-+0\t\r\n'
NAMES = [
    "a", "temp", "x y", "a,b", "k=v", "back\\", "\\", "\\\\", 'q"t', "#h", "é", "温度", "t",
    "true", "1", "1i", "-", " lead", "trail ", "a\\,b", "=", ",", " ", "💡", "a\\ b", "x=y,z w",
    '"', 'a"b"', "i", "u", "\\n", "a_b", "a\\", "#", "=\\", "\\,", "\\ ", 'x"', "é ,=", "1.5",
]  # fmt: skip
FLOATS = [0.0, -0.0, 1.0, -1.5, 1e308, -1e308, 5e-324, 1e16, 123456789.125, 0.1]
INTS = [0, -1, 2**63 - 1, -(2**63), 42]


def _name(rnd: Random) -> str:
    if rnd.random() < 0.7:
        return rnd.choice(NAMES)
    return "".join(rnd.choice(' ,="\\#iu.-é') for _ in range(rnd.randint(1, 4)))


def _field_value(rnd: Random) -> tuple[Any, str]:
    kind = rnd.randrange(5)
    if kind == 0:
        value = rnd.choice(FLOATS) if rnd.random() < 0.5 else rnd.uniform(-1e9, 1e9)
        return value, repr(value)
    if kind == 1:
        value = rnd.choice(INTS) if rnd.random() < 0.5 else rnd.randint(-(2**63), 2**63 - 1)
        return value, f"{value}i"
    if kind == 2:
        value = rnd.choice([0, 2**64 - 1]) if rnd.random() < 0.5 else rnd.randint(0, 2**64 - 1)
        return value, f"{value}u"
    if kind == 3:
        word = rnd.choice(["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"])
        return word[0] in "tT", word
    text = "" if rnd.random() < 0.1 else _name(rnd)
    return text, '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape(text: str, specials: str) -> str:
    text = text.replace("\\", "\\\\")
    for char in specials:
        text = text.replace(char, "\\" + char)
    return text


def _valid_line(rnd: Random) -> tuple[str, str, LinePoint]:
    """A valid line built by escaping generated names, with the point it must decode to."""
    measurement = _name(rnd)
    while measurement.startswith(("#", "_")):
        measurement = _name(rnd)
    tags = {k: v for k, v in ((_name(rnd), _name(rnd)) for _ in range(rnd.randint(0, 3)))
            if not k.startswith("_")}  # fmt: skip
    fields = {k: v for k, v in ((_name(rnd), _field_value(rnd)) for _ in range(rnd.randint(1, 3)))
              if not k.startswith("_")} or {"f": (1.0, "1")}  # fmt: skip
    precision, divide = rnd.choice([("ns", 10**6), ("us", 10**3), ("ms", 1)])
    ts = rnd.choice([None, None, 0, -1, 2**63 - 1, -(2**63), rnd.randint(-(2**63), 2**63 - 1)])
    line = _escape(measurement, ", ")
    line += "".join(f",{_escape(k, ',= ')}={_escape(v, ',= ')}" for k, v in tags.items())
    line += " " + ",".join(f"{_escape(k, ',= ')}={raw}" for k, (_, raw) in fields.items())
    line += "" if ts is None else f" {ts}"
    values = {k: value for k, (value, _) in fields.items()}
    expected = LinePoint(measurement, tags, values, NOW if ts is None else ts // divide, 1)
    return line, precision, expected


@FUZZ
@given(st.randoms(use_true_random=True))
def test_line_protocol_on_near_valid_lines(rnd: Random) -> None:
    line, precision, expected = _valid_line(rnd)
    note(repr(line))
    batch = decode_lines(line, precision, now_ms=NOW)  # type: ignore[arg-type]
    assert batch.errors == []
    assert batch.points == [expected]
    for _ in range(rnd.randint(1, 3)):  # then break it a little: decoding must still not raise
        position = rnd.randint(0, len(line))
        line = line[:position] + rnd.choice(SPECIAL) + line[position + rnd.randint(0, 1) :]
    note(repr(line))
    _check_batch(line, precision)
