"""Alink gateway messages: topology (``thing/topo/add|delete|get``) and sub-device sessions
(``/ext/session/{pk}/{dn}/combine/login|logout|batch_login|batch_logout``).

A sub-device entry proves its identity with a signature made like the MQTT password: HMAC,
keyed by the sub-device's secret, of ``clientId{c}deviceName{d}productKey{p}timestamp{t}``.
Topology entries spell the method ``signmethod``, login entries ``signMethod``; both are
accepted, in any letter case (``hmacSha256``, ``hmacsha1``, ``hmacMd5``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Final

from qiantang.protocols.alink import decode_envelope
from qiantang.protocols.alink_topics import AlinkCode, AlinkError, is_device_name

__all__ = [
    "MAX_SUB_DEVICES",
    "SubDeviceAuth",
    "decode_device_list",
    "decode_login",
    "decode_logout",
    "decode_sub_device_auths",
    "make_sub_device_auth",
    "verify_sub_device",
]

MAX_SUB_DEVICES: Final = 50
_HASHES: Final = {"hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256, "hmacmd5": hashlib.md5}


@dataclass(frozen=True, slots=True)
class SubDeviceAuth:
    """A sub-device's signed identity."""

    product_key: str
    device_name: str
    client_id: str
    timestamp: str
    sign_method: str
    sign: str


def _bad(field: str, rule: str, message: str, rid: str) -> AlinkError:
    return AlinkError(AlinkCode.BAD_PARAMS, field, rule, message, rid)


def _text(entry: dict[str, Any], keys: tuple[str, ...], field: str, rid: str) -> str:
    for key in keys:
        value = entry.get(key)
        if isinstance(value, str) and 0 < len(value) <= 128:
            return value
        if type(value) is int and key == "timestamp":
            return str(value)
    raise _bad(f"{field}.{keys[0]}", "required", "is required (a string of 1-128)", rid)


def _identity(entry: object, field: str, rid: str) -> tuple[str, str]:
    if not isinstance(entry, dict):
        raise _bad(field, "type", "must be an object", rid)
    pk = _text(entry, ("productKey",), field, rid)
    dn = _text(entry, ("deviceName",), field, rid)
    if not (is_device_name(pk) and is_device_name(dn)):
        raise _bad(field, "pattern", "productKey/deviceName has characters not allowed", rid)
    return pk, dn


def _auth(entry: object, field: str, rid: str) -> SubDeviceAuth:
    pk, dn = _identity(entry, field, rid)
    assert isinstance(entry, dict)
    method = _text(entry, ("signmethod", "signMethod"), field, rid).lower()
    if method not in _HASHES:
        raise _bad(f"{field}.signmethod", "enum", "is hmacSha1, hmacSha256 or hmacMd5", rid)
    return SubDeviceAuth(
        pk,
        dn,
        _text(entry, ("clientId",), field, rid),
        _text(entry, ("timestamp",), field, rid),
        method,
        _text(entry, ("sign",), field, rid),
    )


def _entries(params: object, field: str, rid: str) -> list[Any]:
    if not isinstance(params, list) or not params:
        raise _bad(field, "type", "must be a non-empty list", rid)
    if len(params) > MAX_SUB_DEVICES:
        raise _bad(field, "max_items", f"at most {MAX_SUB_DEVICES} sub-devices", rid)
    return params


def decode_sub_device_auths(payload: bytes) -> tuple[str, bool, list[SubDeviceAuth]]:
    """``thing.topo.add`` (params: a list) or ``combine.batch.login`` (params.deviceList)."""
    rid, ack, params = decode_envelope(payload)
    if isinstance(params, dict):
        entries = _entries(params.get("deviceList"), "params.deviceList", rid)
        return rid, ack, [_auth(e, f"params.deviceList[{i}]", rid) for i, e in enumerate(entries)]
    entries = _entries(params, "params", rid)
    return rid, ack, [_auth(e, f"params[{i}]", rid) for i, e in enumerate(entries)]


def decode_login(payload: bytes) -> tuple[str, bool, SubDeviceAuth]:
    """``combine.login``: params is one signed entry."""
    rid, ack, params = decode_envelope(payload)
    return rid, ack, _auth(params, "params", rid)


def decode_device_list(payload: bytes) -> tuple[str, bool, list[tuple[str, str]]]:
    """``thing.topo.delete`` / ``combine.batch.logout`` (a list, or params.deviceList); an
    empty list is allowed for ``thing.topo.get``-style requests."""
    rid, ack, params = decode_envelope(payload)
    if isinstance(params, dict) and "deviceList" in params:
        params = params["deviceList"]
    if params is None or params == {}:
        return rid, ack, []
    entries = _entries(params, "params", rid)
    return rid, ack, [_identity(e, f"params[{i}]", rid) for i, e in enumerate(entries)]


def decode_logout(payload: bytes) -> tuple[str, bool, tuple[str, str]]:
    """``combine.logout``: params names one sub-device."""
    rid, ack, params = decode_envelope(payload)
    return rid, ack, _identity(params, "params", rid)


def _content(pk: str, dn: str, client_id: str, timestamp: str) -> bytes:
    parts = {"clientId": client_id, "deviceName": dn, "productKey": pk, "timestamp": timestamp}
    return "".join(k + v for k, v in sorted(parts.items())).encode()


def verify_sub_device(auth: SubDeviceAuth, secret: str) -> bool:
    """Whether the entry's signature was made with `secret`."""
    content = _content(auth.product_key, auth.device_name, auth.client_id, auth.timestamp)
    expected = hmac.new(secret.encode(), content, _HASHES[auth.sign_method]).hexdigest()
    return hmac.compare_digest(expected, auth.sign.lower())


def make_sub_device_auth(
    product_key: str,
    device_name: str,
    secret: str,
    timestamp: str,
    client_id: str | None = None,
    sign_method: str = "hmacSha256",
) -> dict[str, str]:
    """A signed sub-device entry, as a gateway sends it (for gateways, tests, simulators)."""
    cid = client_id or f"{product_key}&{device_name}"
    digest = _HASHES[sign_method.lower()]
    sign = hmac.new(
        secret.encode(), _content(product_key, device_name, cid, timestamp), digest
    ).hexdigest()
    return {
        "productKey": product_key,
        "deviceName": device_name,
        "clientId": cid,
        "timestamp": timestamp,
        "signmethod": sign_method,
        "signMethod": sign_method,
        "sign": sign,
    }
