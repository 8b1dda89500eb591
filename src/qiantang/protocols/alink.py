"""Alink JSON payload codec: the request envelope, uplink posts, device replies, downlink requests.

Topics, reply codes, `AlinkError` and reply encoding live in `qiantang.protocols.alink_topics`.

Formats follow Alibaba Cloud IoT Platform's "Device properties, events, and services" and
"Error codes for devices" pages. Decoding uses a typed msgspec decoder for the envelope (as
fast as orjson here, and unlike orjson it keeps integer literals past 64 bits as ints, so they
can be refused instead of silently becoming floats). Every failure, whatever the input, is an
`AlinkError` carrying the reply code to send back; nothing else escapes a decoder.

Interpretation choices the docs leave open:

- A property entry is long form when it is an object whose keys are ``value`` and optionally
  ``time`` and nothing else; any other value (a struct included) is short form, stamped `now_ms`.
- ``time`` must be an int (not a bool, float or string) in ``[0, now_ms + 24 h]``: the docs say
  reports dated more than 24 hours ahead fail.
- ``id`` may be a string of 1..64 characters or an int in ``0..4294967295`` (Alibaba's own
  history example sends an int); it is returned as a string.
- Pack post limits count the whole message (gateway plus sub-devices), on raw map sizes before
  parsing: more than 200 properties or 20 events answers 6356, more than 20 sub-devices 6357.
  (The docs give the limits; which code answers which is our reading of the code table.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from qiantang.domain.telemetry import Value
from qiantang.protocols.alink_topics import AlinkCode, AlinkError, is_device_name, is_identifier

__all__ = [
    "MAX_FUTURE_MS",
    "MAX_HISTORY_ITEMS",
    "MAX_PACK_EVENTS",
    "MAX_PACK_PROPERTIES",
    "MAX_PACK_SUB_DEVICES",
    "MAX_PROPERTIES",
    "MAX_VALUE_DEPTH",
    "AlinkReply",
    "DeviceReadings",
    "EventPost",
    "EventReading",
    "HistoryPost",
    "PackPost",
    "PropertyPost",
    "PropertyReading",
    "decode_envelope",
    "decode_event_post",
    "decode_history_post",
    "decode_pack_post",
    "decode_property_post",
    "decode_reply",
    "encode_property_set",
    "encode_service_call",
]


MAX_PROPERTIES: Final = 200
MAX_PACK_PROPERTIES: Final = 200
MAX_PACK_EVENTS: Final = 20
MAX_PACK_SUB_DEVICES: Final = 20
MAX_HISTORY_ITEMS: Final = 10_000
MAX_VALUE_DEPTH: Final = 16
MAX_FUTURE_MS: Final = 86_400_000
_MAX_ID = 4_294_967_295
_INT64 = 2**63
_PATH_RE = re.compile(r" - at `\$(.*)`$")
_MISSING_RE = re.compile(r"missing required field `([^`]*)`")
_IDENT_RE = re.compile(r"(?:[A-Za-z0-9_]{1,30}:)?[A-Za-z0-9_]{1,50}")  # as alink_topics
_LONG_KEYS: Final = frozenset(("value", "time"))
_PLAIN: Final = frozenset((str, float, bool, type(None)))
_GOOD_IDENTS: Final[dict[str, None]] = {}


class PropertyReading(msgspec.Struct, frozen=True):
    """One property value a device reported, with its timestamp in ms."""

    identifier: str
    value: Value
    ts: int


class EventReading(msgspec.Struct, frozen=True):
    """One event a device reported: its output parameters and timestamp in ms."""

    identifier: str
    output: dict[str, Value]
    ts: int


class DeviceReadings(msgspec.Struct, frozen=True):
    """Readings that name their device (history entries, a gateway's sub-devices)."""

    product_key: str
    device_name: str
    properties: list[PropertyReading]
    events: list[EventReading]


class PropertyPost(msgspec.Struct, frozen=True):
    """``thing.event.property.post``; `ack` false means the device asked for no reply."""

    id: str
    ack: bool
    properties: list[PropertyReading]


class EventPost(msgspec.Struct, frozen=True):
    """``thing.event.{identifier}.post``."""

    id: str
    ack: bool
    event: EventReading


class HistoryPost(msgspec.Struct, frozen=True):
    """``thing.event.property.history.post``: one entry per device block in ``params``."""

    id: str
    ack: bool
    devices: list[DeviceReadings]


class PackPost(msgspec.Struct, frozen=True):
    """``thing.event.property.pack.post``: a gateway's own readings plus its sub-devices'."""

    id: str
    ack: bool
    properties: list[PropertyReading]
    events: list[EventReading]
    sub_devices: list[DeviceReadings]


class AlinkReply(msgspec.Struct, frozen=True):
    """A device's reply to a downlink request (``..._reply`` topics)."""

    id: str
    code: int
    data: Value
    message: str


class _Sys(msgspec.Struct):
    ack: int = 1


class _Request(msgspec.Struct):
    id: str | int
    params: Any
    version: str = "1.0"
    sys: _Sys | None = None
    method: str | None = None


class _Reply(msgspec.Struct):
    id: str | int
    code: int
    data: Any = None
    message: str = ""
    version: str = "1.0"
    method: str | None = None


class _IdOnly(msgspec.Struct):
    id: str | int = ""


_ID_DECODER = msgspec.json.Decoder(_IdOnly)
_REQUEST_DECODER = msgspec.json.Decoder(_Request)
_REPLY_DECODER = msgspec.json.Decoder(_Reply)
_ENCODER = msgspec.json.Encoder()


def _bad(field: str, rule: str, message: str, rid: str | None = None) -> AlinkError:
    return AlinkError(AlinkCode.BAD_PARAMS, field, rule, message, rid)


def _too_many(code: AlinkCode, field: str, message: str, rid: str) -> AlinkError:
    return AlinkError(code, field, "max_items", message, rid)


def _decode(decoder: msgspec.json.Decoder[Any], payload: bytes) -> Any:
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as err:
        raise _validation_error(str(err), payload) from err
    except msgspec.DecodeError as err:
        raise _bad("payload", "json", f"malformed JSON: {err}") from err
    except RecursionError as err:
        raise _bad("payload", "depth", "JSON nesting is too deep") from err


def _validation_error(text: str, payload: bytes) -> AlinkError:
    try:  # the JSON is well formed: recover the id, if it is one, to address the reply
        rid: str | None = _request_id(_ID_DECODER.decode(payload).id)
    except (msgspec.DecodeError, AlinkError, RecursionError):
        rid = None
    missing = _MISSING_RE.search(text)
    if missing:
        return _bad(missing.group(1), "required", "is required", rid)
    found = _PATH_RE.search(text)
    field = (found.group(1).lstrip(".") if found else "") or "payload"
    reason = text[: found.start()] if found else text
    return _bad(field, "range" if "out of range" in reason else "type", reason, rid)


def _request_id(raw: str | int) -> str:
    if type(raw) is int:
        if not 0 <= raw <= _MAX_ID:
            raise _bad("id", "range", f"must be between 0 and {_MAX_ID}")
        return str(raw)
    text = str(raw)
    if not 1 <= len(text) <= 64:
        raise _bad("id", "length", "must be 1 to 64 characters")
    return text


def _envelope(payload: bytes) -> tuple[str, bool, Any]:
    req: _Request = _decode(_REQUEST_DECODER, payload)
    rid = _request_id(req.id)
    ack = 1 if req.sys is None else req.sys.ack
    if ack not in (0, 1):
        raise _bad("sys.ack", "enum", "must be 0 or 1", rid)
    return rid, ack == 1, req.params


def decode_envelope(payload: bytes) -> tuple[str, bool, Any]:
    """The request envelope: ``(id, ack wanted, params)``; params are not checked here."""
    return _envelope(payload)


class _BadValue(Exception):
    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message
        self.parts: list[str] = []


def _check_value(value: object, depth: int) -> None:
    if type(value) is int:
        if not -_INT64 <= value < _INT64:
            raise _BadValue("range", "integer outside the signed 64-bit range")
    elif type(value) is float:
        if not math.isfinite(value):
            raise _BadValue("finite", "number must be finite")
    elif isinstance(value, (dict, list)):
        if depth >= MAX_VALUE_DEPTH:
            raise _BadValue("depth", f"nested deeper than {MAX_VALUE_DEPTH} levels")
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in pairs:
            try:
                _check_value(item, depth + 1)
            except _BadValue as bad:
                bad.parts.append(f".{key}" if isinstance(value, dict) else f"[{key}]")
                raise
    # str, bool and None need no check: JSON has no other types


def _value(value: object, field: str, rid: str) -> Value:
    try:
        _check_value(value, 0)
    except _BadValue as bad:
        raise _bad(field + "".join(reversed(bad.parts)), bad.rule, bad.message, rid) from None
    return value  # type: ignore[return-value]


def _time(entry: dict[str, Any], field: str, now_ms: int, rid: str, required: bool) -> int:
    if "time" not in entry:
        if required:
            raise _bad(f"{field}.time", "required", "is required", rid)
        return now_ms
    ts = entry["time"]
    if type(ts) is not int:
        raise _bad(f"{field}.time", "type", "must be an integer of milliseconds", rid)
    if not 0 <= ts <= now_ms + MAX_FUTURE_MS:
        raise _bad(f"{field}.time", "range", "must be from 0 to 24 hours ahead", rid)
    return ts


def _object(value: object, field: str, rid: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad(field, "type", "must be a JSON object", rid)
    return value


def _list(value: object, field: str, rid: str) -> list[Any]:
    if type(value) is not list:
        raise _bad(field, "type", "must be a JSON array", rid)
    return value


def _ident(key: str, field: str, rid: str) -> None:
    if key in _GOOD_IDENTS:
        return
    if _IDENT_RE.fullmatch(key) is None:
        raise _bad(f"{field}.{key[:64]}", "identifier", "is not a valid identifier", rid)
    if len(_GOOD_IDENTS) < 4096:  # a memo: the same few identifiers arrive all day
        _GOOD_IDENTS[key] = None


def _properties(
    params: object, field: str, now_ms: int, rid: str, *, time_required: bool = False
) -> list[PropertyReading]:
    props = _object(params, field, rid)
    if len(props) > MAX_PROPERTIES:
        message = f"{len(props)} properties; at most {MAX_PROPERTIES} per message"
        raise _too_many(AlinkCode.TOO_MANY_PROPERTIES, field, message, rid)
    out: list[PropertyReading] = []
    for key, raw in props.items():
        if key not in _GOOD_IDENTS:
            _ident(key, field, rid)
        ts, value, suffix = now_ms, raw, ""
        if type(raw) is dict and "value" in raw and raw.keys() <= _LONG_KEYS:
            value, suffix = raw["value"], ".value"
            if time_required or "time" in raw:
                ts = _time(raw, f"{field}.{key}", now_ms, rid, time_required)
        elif time_required:
            raise _bad(f"{field}.{key}", "type", "must be an object with value and time", rid)
        if type(value) not in _PLAIN:  # msgspec floats are always finite
            value = _value(value, f"{field}.{key}{suffix}", rid)
        out.append(PropertyReading(key, value, ts))
    return out


def _event(key: str, raw: object, field: str, now_ms: int, rid: str) -> EventReading:
    body = _object(raw, field, rid)
    if "value" not in body:
        raise _bad(f"{field}.value", "required", "is required", rid)
    output = _object(body["value"], f"{field}.value", rid)
    if len(output) > MAX_PROPERTIES:
        message = f"{len(output)} output parameters; at most {MAX_PROPERTIES}"
        raise _too_many(AlinkCode.TOO_MANY_PROPERTIES, f"{field}.value", message, rid)
    for name, item in output.items():
        _ident(name, f"{field}.value", rid)
        _value(item, f"{field}.value.{name}", rid)
    return EventReading(key, output, _time(body, field, now_ms, rid, False))


def _events(params: object, field: str, now_ms: int, rid: str) -> list[EventReading]:
    out: list[EventReading] = []
    for key, raw in _object(params, field, rid).items():
        _ident(key, field, rid)
        out.append(_event(key, raw, f"{field}.{key}", now_ms, rid))
    return out


def _identity(entry: dict[str, Any], field: str, rid: str) -> tuple[str, str]:
    identity = _object(entry.get("identity"), f"{field}.identity", rid)
    names: list[str] = []
    for key in ("productKey", "deviceName"):
        value = identity.get(key)
        if type(value) is not str or not is_device_name(value):
            raise _bad(f"{field}.identity.{key}", "format", "must be 1-64 of A-Za-z0-9_-@.:", rid)
        names.append(value)
    return names[0], names[1]


def decode_property_post(payload: bytes, now_ms: int) -> PropertyPost:
    """Decode ``thing.event.property.post``; params in short, long or mixed form."""
    rid, ack, params = _envelope(payload)
    return PropertyPost(rid, ack, _properties(params, "params", now_ms, rid))


def decode_event_post(payload: bytes, now_ms: int, identifier: str) -> EventPost:
    """Decode ``thing.event.{identifier}.post``: params ``{"value": {...}, "time": ms}``.

    `identifier` is the event id taken from the topic.
    """
    rid, ack, params = _envelope(payload)
    if not is_identifier(identifier):
        code = AlinkCode.TOPIC_PARSE_FAILED
        raise AlinkError(code, "topic", "identifier", "bad event identifier", rid)
    return EventPost(rid, ack, _event(identifier, params, "params", now_ms, rid))


def _history_entry(raw: object, field: str, now_ms: int, rid: str) -> DeviceReadings:
    entry = _object(raw, field, rid)
    product_key, device_name = _identity(entry, field, rid)
    props: list[PropertyReading] = []
    for i, block in enumerate(_list(entry.get("properties", []), f"{field}.properties", rid)):
        where = f"{field}.properties[{i}]"
        props.extend(_properties(block, where, now_ms, rid, time_required=True))
    events: list[EventReading] = []
    for i, block in enumerate(_list(entry.get("events", []), f"{field}.events", rid)):
        events.extend(_events(block, f"{field}.events[{i}]", now_ms, rid))
    return DeviceReadings(product_key, device_name, props, events)


def decode_history_post(payload: bytes, now_ms: int) -> HistoryPost:
    """Decode ``thing.event.property.history.post``.

    params is a list of ``{"identity": {"productKey", "deviceName"}, "properties": [{id:
    {"value", "time"}}, ...], "events": [{id: {"value": {...}, "time"}}, ...]}``; ``time`` is
    required on history properties. At most `MAX_HISTORY_ITEMS` readings per message.
    """
    rid, ack, params = _envelope(payload)
    devices: list[DeviceReadings] = []
    total = 0
    for i, raw in enumerate(_list(params, "params", rid)):
        entry = _history_entry(raw, f"params[{i}]", now_ms, rid)
        total += len(entry.properties) + len(entry.events)
        if total > MAX_HISTORY_ITEMS:
            raise _bad("params", "max_items", f"more than {MAX_HISTORY_ITEMS} readings", rid)
        devices.append(entry)
    return HistoryPost(rid, ack, devices)


def _pack_readings(
    block: dict[str, Any], field: str, seen: list[int], now_ms: int, rid: str
) -> tuple[list[PropertyReading], list[EventReading]]:
    """Parse one pack block, counting raw map sizes against the pack limits first."""
    raw_props, raw_events = block.get("properties", {}), block.get("events", {})
    seen[0] += len(raw_props) if type(raw_props) is dict else 0
    seen[1] += len(raw_events) if type(raw_events) is dict else 0
    if seen[0] > MAX_PACK_PROPERTIES or seen[1] > MAX_PACK_EVENTS:
        message = f"at most {MAX_PACK_PROPERTIES} properties and {MAX_PACK_EVENTS} events per pack"
        raise _too_many(AlinkCode.PACK_TOO_MANY_ITEMS, field, message, rid)
    props = _properties(raw_props, f"{field}.properties", now_ms, rid)
    return props, _events(raw_events, f"{field}.events", now_ms, rid)


def decode_pack_post(payload: bytes, now_ms: int) -> PackPost:
    """Decode a gateway's ``thing.event.property.pack.post``.

    params: ``{"properties": {...}, "events": {...}, "subDevices": [{"identity": {...},
    "properties": {...}, "events": {...}}]}``, every part optional.
    """
    rid, ack, params = _envelope(payload)
    body = _object(params, "params", rid)
    subs = _list(body.get("subDevices", []), "params.subDevices", rid)
    if len(subs) > MAX_PACK_SUB_DEVICES:
        message = f"{len(subs)} sub-devices; at most {MAX_PACK_SUB_DEVICES} per pack"
        raise _too_many(AlinkCode.PACK_TOO_MANY_SUB_DEVICES, "params.subDevices", message, rid)
    seen = [0, 0]
    props, events = _pack_readings(body, "params", seen, now_ms, rid)
    sub_devices: list[DeviceReadings] = []
    for i, raw in enumerate(subs):
        field = f"params.subDevices[{i}]"
        entry = _object(raw, field, rid)
        product_key, device_name = _identity(entry, field, rid)
        sub_props, sub_events = _pack_readings(entry, field, seen, now_ms, rid)
        sub_devices.append(DeviceReadings(product_key, device_name, sub_props, sub_events))
    return PackPost(rid, ack, props, events, sub_devices)


def decode_reply(payload: bytes) -> AlinkReply:
    """Decode a device's reply to a property set or service call."""
    reply: _Reply = _decode(_REPLY_DECODER, payload)
    rid = _request_id(reply.id)
    return AlinkReply(rid, reply.code, _value(reply.data, "data", rid), reply.message)


def _request(id: str, method: str, params: Mapping[str, Value]) -> bytes:
    return _ENCODER.encode({"id": id, "version": "1.0", "params": params, "method": method})


def encode_property_set(id: str, params: Mapping[str, Value]) -> bytes:
    """Encode a downlink ``thing.service.property.set`` request."""
    return _request(id, "thing.service.property.set", params)


def encode_service_call(id: str, service_id: str, params: Mapping[str, Value]) -> bytes:
    """Encode a downlink ``thing.service.{service_id}`` call; `service_id` must be an identifier."""
    if not is_identifier(service_id):
        raise _bad("service_id", "identifier", "is not a valid identifier")
    return _request(id, f"thing.service.{service_id}", params)
