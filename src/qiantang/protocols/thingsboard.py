"""ThingsBoard device and gateway MQTT API payloads, so devices and gateways built for
ThingsBoard connect unchanged (access token as the MQTT username).

Device API (``v1/devices/me/...``): telemetry in four shapes (``{k: v}``, ``[{k: v}, ...]``,
``{"ts", "values"}``, ``[{"ts", "values"}, ...]``), client attributes, attribute requests
(``{"clientKeys": "a,b", "sharedKeys": "c"}``), RPC requests ``{"method", "params"}``.
Gateway API (``v1/gateway/...``): ``connect``/``disconnect`` ``{"device", "type"}``,
``telemetry`` ``{"Device A": [{"ts", "values"}, ...]}``, ``attributes`` ``{"Device A": {...}}``,
``attributes/request`` in both forms (``{"id", "device", "client": true, "key"|"keys"}`` and
``{"id", "device", "client": [...], "shared": [...]}``), RPC replies
``{"device", "id", "data"}``. Every failure is a `ThingsBoardError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from qiantang.domain.errors import QiantangError
from qiantang.domain.telemetry import Value

__all__ = [
    "MAX_DEVICES",
    "MAX_KEYS",
    "SESSION_LIMITS",
    "AttributeRequest",
    "GatewayAttributeRequest",
    "GatewayRpcReply",
    "Rows",
    "ThingsBoardError",
    "client_rpc",
    "decode_attribute_request",
    "decode_attributes",
    "decode_gateway_attribute_request",
    "decode_gateway_attributes",
    "decode_gateway_device",
    "decode_gateway_rpc_reply",
    "decode_gateway_telemetry",
    "decode_rpc",
    "decode_telemetry",
    "encode",
    "rpc_params",
]

MAX_KEYS: Final = 1000
MAX_DEVICES: Final = 1000
MAX_ROWS: Final = 10_000
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
SESSION_LIMITS: dict[str, Any] = {
    "maxPayloadSize": 4 * 1024 * 1024,
    "maxInflightMessages": 100,
    "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
    "gatewayRateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
}

Rows = list[tuple[int, dict[str, Value]]]  # (ts ms, {key: value})


class ThingsBoardError(QiantangError):
    """A payload that cannot be accepted: `field` and `rule` name what is wrong."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        self.field, self.rule, self.message = field, rule, message
        super().__init__(f"{field}: {message} ({rule})")


@dataclass(frozen=True, slots=True)
class AttributeRequest:
    """Which client and shared attributes a device asks for (None: all)."""

    client_keys: list[str] | None
    shared_keys: list[str] | None


@dataclass(frozen=True, slots=True)
class GatewayAttributeRequest:
    """A gateway asking for one device's attributes."""

    id: int | str
    device: str
    client_keys: list[str] = field(default_factory=list)
    shared_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GatewayRpcReply:
    """A gateway's answer to a server-side RPC for one of its devices."""

    device: str
    id: int | str
    data: Value


def _json(payload: bytes) -> Any:
    try:
        return _DECODER.decode(payload)
    except (msgspec.DecodeError, RecursionError) as err:
        raise ThingsBoardError("payload", "json", "the payload is not valid JSON") from err


def _values(raw: object, where: str) -> dict[str, Value]:
    if not isinstance(raw, dict):
        raise ThingsBoardError(where, "type", "must be an object of key: value")
    if len(raw) > MAX_KEYS:
        raise ThingsBoardError(where, "max_items", f"at most {MAX_KEYS} keys")
    for key, value in raw.items():
        if not key or len(key) > 128:
            raise ThingsBoardError(f"{where}.{key[:32]}", "key", "keys are 1-128 characters")
        if isinstance(value, float) and not math.isfinite(value):
            raise ThingsBoardError(f"{where}.{key}", "finite", "NaN and infinity are not values")
    return raw


def _ts(raw: object, where: str) -> int:
    if type(raw) is int and 0 <= raw < 2**53:
        return raw
    raise ThingsBoardError(where, "type", "ts is milliseconds since the epoch (an integer)")


def _row(item: object, where: str, now_ms: int) -> tuple[int, dict[str, Value]]:
    if isinstance(item, dict) and "ts" in item and "values" in item and len(item) == 2:
        return _ts(item["ts"], f"{where}.ts"), _values(item["values"], f"{where}.values")
    return now_ms, _values(item, where)


def _rows(body: object, where: str, now_ms: int) -> Rows:
    if not isinstance(body, list):
        return [_row(body, where, now_ms)]
    if len(body) > MAX_ROWS:
        raise ThingsBoardError(where, "max_items", f"at most {MAX_ROWS} rows")
    return [_row(item, f"{where}[{i}]", now_ms) for i, item in enumerate(body)]


def decode_telemetry(payload: bytes, now_ms: int) -> Rows:
    """Device telemetry in any of the four shapes, as (ts, values) rows."""
    return _rows(_json(payload), "payload", now_ms)


def decode_attributes(payload: bytes) -> dict[str, Value]:
    """Client attributes ``{k: v}``."""
    return _values(_json(payload), "payload")


def _keys(raw: object, where: str) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return [k for k in (p.strip() for p in raw.split(",")) if k][:MAX_KEYS]
    if isinstance(raw, list) and all(isinstance(k, str) for k in raw):
        return list(raw[:MAX_KEYS])
    raise ThingsBoardError(where, "type", "keys are a comma-separated string or a list")


def decode_attribute_request(payload: bytes) -> AttributeRequest:
    """``{"clientKeys": "a,b", "sharedKeys": "c"}`` (either may be absent)."""
    body = _json(payload) if payload.strip() else {}
    if not isinstance(body, dict):
        raise ThingsBoardError("payload", "type", "must be an object")
    return AttributeRequest(
        _keys(body.get("clientKeys"), "clientKeys"), _keys(body.get("sharedKeys"), "sharedKeys")
    )


def decode_rpc(payload: bytes) -> tuple[str, Value]:
    """An RPC request ``{"method", "params"}``."""
    body = _json(payload)
    if not isinstance(body, dict) or not isinstance(body.get("method"), str):
        raise ThingsBoardError("method", "required", "an RPC request names its method")
    return body["method"][:128], body.get("params")


def _device(body: dict[str, Any], where: str = "device") -> str:
    name = body.get("device")
    if not isinstance(name, str) or not 0 < len(name) <= 128:
        raise ThingsBoardError(where, "required", "a device name of 1-128 characters")
    return name


def decode_gateway_device(payload: bytes) -> tuple[str, str | None]:
    """``connect``/``disconnect``: the device name and, optionally, its type."""
    body = _json(payload)
    if not isinstance(body, dict):
        raise ThingsBoardError("payload", "type", "must be an object")
    kind = body.get("type")
    return _device(body), kind if isinstance(kind, str) else None


def _per_device(payload: bytes) -> dict[str, Any]:
    body = _json(payload)
    if not isinstance(body, dict):
        raise ThingsBoardError("payload", "type", "must be an object keyed by device name")
    if len(body) > MAX_DEVICES:
        raise ThingsBoardError("payload", "max_items", f"at most {MAX_DEVICES} devices")
    for name in body:
        if not 0 < len(name) <= 128:
            raise ThingsBoardError("payload", "key", "device names are 1-128 characters")
    return body


def decode_gateway_telemetry(payload: bytes, now_ms: int) -> dict[str, Rows]:
    """``{"Device A": [{"ts", "values"}, ...], ...}``."""
    return {name: _rows(rows, name, now_ms) for name, rows in _per_device(payload).items()}


def decode_gateway_attributes(payload: bytes) -> dict[str, dict[str, Value]]:
    """``{"Device A": {k: v}, ...}``."""
    return {name: _values(values, name) for name, values in _per_device(payload).items()}


def decode_gateway_attribute_request(payload: bytes) -> GatewayAttributeRequest:
    """Both request forms: ``client: true`` with ``key``/``keys``, or ``client``/``shared``
    lists."""
    body = _json(payload)
    if not isinstance(body, dict):
        raise ThingsBoardError("payload", "type", "must be an object")
    rid = body.get("id")
    if not (type(rid) is int or (isinstance(rid, str) and 0 < len(rid) <= 64)):
        raise ThingsBoardError("id", "required", "a request id (integer or string)")
    device = _device(body)
    client, shared = body.get("client"), body.get("shared")
    if isinstance(client, bool) or (client is None and shared is None):
        keys = _keys(body.get("keys", body.get("key")), "keys") or []
        return GatewayAttributeRequest(
            rid, device, keys if client is not False else [], keys if client is False else []
        )
    return GatewayAttributeRequest(
        rid, device, _keys(client, "client") or [], _keys(shared, "shared") or []
    )


def decode_gateway_rpc_reply(payload: bytes) -> GatewayRpcReply:
    """``{"device", "id", "data"}``."""
    body = _json(payload)
    if not isinstance(body, dict):
        raise ThingsBoardError("payload", "type", "must be an object")
    rid = body.get("id")
    if not (type(rid) is int or isinstance(rid, str)):
        raise ThingsBoardError("id", "required", "the RPC id")
    return GatewayRpcReply(_device(body), rid, body.get("data"))


def rpc_params(params: dict[str, Any]) -> Any:
    """The RPC ``params`` for a service call's input. ThingsBoard RPC params are any JSON,
    and many device integrations (the gateway's Modbus connector among them) expect a bare
    value: a service whose only input parameter is named ``params`` sends that value as is;
    any other input goes as the object of its parameters."""
    return params["params"] if params.keys() == {"params"} else params


def client_rpc(method: str, now_ms: int) -> dict[str, Any]:
    """The platform's answer to a client-side RPC: ``getSessionLimits`` (the ThingsBoard SDK
    reports itself connected only once it has this), ``getCurrentTime``, else an error."""
    if method == "getSessionLimits":
        return SESSION_LIMITS
    if method == "getCurrentTime":
        return {"currentTime": now_ms}
    return {"error": f"unsupported method {method}"}


def encode(body: object) -> bytes:
    """JSON for anything the platform sends to ThingsBoard clients."""
    return _ENCODER.encode(body)
