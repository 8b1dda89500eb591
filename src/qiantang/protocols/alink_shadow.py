"""Alink device shadow messages (``/shadow/update/{pk}/{dn}`` up, ``/shadow/get/{pk}/{dn}``
down), in Alibaba's format.

Requests: ``{"method": "update", "state": {"reported": {...}} | {"desired": "null"},
"version": N}``, ``{"method": "get"}``, ``{"method": "delete", "state": {"reported":
{"k": "null"} | "null"}, "version": N}``. Replies: ``{"method": "reply", "payload":
{"status": "success", "version": N}, "timestamp": s}``, errors with
``{"status": "error", "content": {"errorcode": "409", "errormessage": ...}}``, and the
shadow document (``method`` ``reply`` for a get, ``control`` for a desired-state push).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from qiantang.domain.errors import QiantangError

__all__ = [
    "CLEAR",
    "MAX_REPORTED",
    "ShadowError",
    "ShadowRequest",
    "decode_shadow_request",
    "encode_shadow_document",
    "encode_shadow_error",
    "encode_shadow_ok",
]

#: The string Alibaba uses for "remove this" in shadow requests.
CLEAR: Final = "null"
MAX_REPORTED: Final = 128
_METHODS: Final = frozenset(("update", "get", "delete"))
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


class ShadowError(QiantangError):
    """A refused shadow request with Alibaba's shadow error code (400-409)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code} {message}")


@dataclass(frozen=True, slots=True)
class ShadowRequest:
    """A decoded request. `reported`/`desired`: a dict of changes (a value ``"null"``
    removes that key), the string ``"null"`` (clear all), or None (not given)."""

    method: str
    version: int | None
    reported: dict[str, Any] | str | None = None
    desired: dict[str, Any] | str | None = None


def _section(state: dict[str, Any], name: str) -> dict[str, Any] | str | None:
    value = state.get(name)
    if value is None:
        return None
    if value == CLEAR:
        return CLEAR
    if not isinstance(value, dict):
        raise ShadowError(400, f'state.{name} must be an object or "null"')
    if len(value) > MAX_REPORTED:
        raise ShadowError(408, f"state.{name} has more than {MAX_REPORTED} properties")
    return value


def decode_shadow_request(payload: bytes) -> ShadowRequest:
    """Decode a device's shadow request; every failure is a `ShadowError`."""
    try:
        body = _DECODER.decode(payload)
    except (msgspec.DecodeError, RecursionError) as err:
        raise ShadowError(400, "the message is not valid JSON") from err
    if not isinstance(body, dict):
        raise ShadowError(400, "the message must be a JSON object")
    method = body.get("method")
    if not isinstance(method, str):
        raise ShadowError(401, "the message has no method")
    if method not in _METHODS:
        raise ShadowError(406, f"method {method[:32]!r} is not update, get or delete")
    version = body.get("version")
    if version is not None and (type(version) is not int or not -1 <= version < 2**62):
        raise ShadowError(403, "version must be an integer")
    if method == "get":
        return ShadowRequest("get", version)
    state = body.get("state")
    if not isinstance(state, dict):
        raise ShadowError(402, "the message has no state")
    reported, desired = _section(state, "reported"), _section(state, "desired")
    if method == "update" and reported is None and desired is None and version != -1:
        raise ShadowError(404, "state has neither reported nor desired")
    if method == "delete" and reported is None:
        raise ShadowError(404, "a delete names the reported keys to remove")
    return ShadowRequest(method, version, reported, desired)


def encode_shadow_ok(version: int, timestamp_s: int) -> bytes:
    """The success reply to an update or delete."""
    payload = {"status": "success", "version": version}
    return _ENCODER.encode({"method": "reply", "payload": payload, "timestamp": timestamp_s})


def encode_shadow_error(error: ShadowError, timestamp_s: int) -> bytes:
    """The error reply."""
    content = {"errorcode": str(error.code), "errormessage": error.message}
    payload = {"status": "error", "content": content}
    return _ENCODER.encode({"method": "reply", "payload": payload, "timestamp": timestamp_s})


def encode_shadow_document(
    method: str,
    reported: dict[str, Any],
    desired: dict[str, Any],
    metadata: dict[str, Any],
    version: int,
    timestamp_s: int,
) -> bytes:
    """The whole shadow: `method` ``reply`` (answer to get) or ``control`` (desired push)."""
    state: dict[str, Any] = {"reported": reported}
    if desired:
        state["desired"] = desired
    payload = {"status": "success", "state": state, "metadata": metadata}
    return _ENCODER.encode(
        {"method": method, "payload": payload, "version": version, "timestamp": timestamp_s}
    )
