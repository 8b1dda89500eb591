"""Alink messages a gateway sends and reads, pure: topics, pack posts for live data, history
posts for the backlog, replies.

A pack post (``thing.event.property.pack.post``) carries the gateway's own properties and up
to 20 sub-devices', at most 200 properties in all, one value per property; `take_pack` fills
one from rows in sequence order and stops at the first row that does not fit, so samples
leave in the order they were taken. A history post (``thing.event.property.history.post``,
on the device's own topic, which a gateway may use for its sub-devices) carries many samples
of one device, each with its time, which is what a backlog needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from qiantang.edge.outbox import Row

__all__ = [
    "MAX_PACK_PROPERTIES",
    "MAX_PACK_SUB_DEVICES",
    "GatewayTopics",
    "Reply",
    "downlink_filters",
    "encode_history",
    "encode_pack",
    "encode_reply",
    "encode_request",
    "history_topic",
    "parse_reply",
    "take_pack",
]

_encoder: Final = msgspec.json.Encoder()
MAX_PACK_PROPERTIES: Final = 200
MAX_PACK_SUB_DEVICES: Final = 20


@dataclass(frozen=True, slots=True)
class GatewayTopics:
    """The topics of gateway ``product_key/device_name``."""

    product_key: str
    device_name: str

    @property
    def sys(self) -> str:
        """``/sys/{pk}/{dn}``."""
        return f"/sys/{self.product_key}/{self.device_name}"

    @property
    def session(self) -> str:
        """``/ext/session/{pk}/{dn}``."""
        return f"/ext/session/{self.product_key}/{self.device_name}"

    @property
    def topo_add(self) -> str:
        """Adding sub-devices to the topology."""
        return f"{self.sys}/thing/topo/add"

    @property
    def batch_login(self) -> str:
        """Logging sub-devices in."""
        return f"{self.session}/combine/batch_login"

    @property
    def pack_post(self) -> str:
        """Live data of the gateway and its sub-devices."""
        return f"{self.sys}/thing/event/property/pack/post"


def history_topic(device: str) -> str:
    """A device's history post topic (`device` is ``pk/dn``)."""
    return f"/sys/{device}/thing/event/property/history/post"


def downlink_filters(device: str) -> list[str]:
    """What a gateway subscribes to for a sub-device's property sets and service calls."""
    return [
        f"/sys/{device}/thing/service/property/set",
        f"/sys/{device}/thing/service/+",
        f"/sys/{device}/rrpc/request/+",
    ]


def encode_request(msg_id: str, method: str, params: Any) -> bytes:
    """An Alink request envelope."""
    body = {"id": msg_id, "version": "1.0", "params": params, "method": method}
    return _encode(body)


def encode_reply(msg_id: str, code: int, data: Any = None, message: str = "") -> bytes:
    """An answer to a downlink request."""
    body = {"id": msg_id, "code": code, "data": data if data is not None else {}}
    if message:
        body["message"] = message
    return _encode(body)


def _encode(body: Any) -> bytes:
    """Compact JSON (msgspec: a large history post encodes several times faster than with
    the standard library; NaN and infinities become null, which JSON cannot carry)."""
    return _encoder.encode(body)


def take_pack(rows: Sequence[Row], gateway: str) -> list[Row]:
    """The longest prefix of `rows` that fits one pack post."""
    taken: list[Row] = []
    seen: set[tuple[str, str]] = set()
    subs: set[str] = set()
    for row in rows:
        key = (row.device, row.property)
        new_sub = row.device != gateway and row.device not in subs
        if key in seen or len(taken) == MAX_PACK_PROPERTIES:
            break
        if new_sub and len(subs) == MAX_PACK_SUB_DEVICES:
            break
        seen.add(key)
        if new_sub:
            subs.add(row.device)
        taken.append(row)
    return taken


def encode_pack(msg_id: str, rows: Sequence[Row], gateway: str) -> bytes:
    """A pack post of `rows` (as `take_pack` chose them)."""
    own: dict[str, Any] = {}
    blocks: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = {"value": row.value, "time": row.ts}
        if row.device == gateway:
            own[row.property] = entry
            continue
        pk, _, dn = row.device.partition("/")
        block = blocks.setdefault(
            row.device, {"identity": {"productKey": pk, "deviceName": dn}, "properties": {}}
        )
        block["properties"][row.property] = entry
    params = {"properties": own, "subDevices": list(blocks.values())}
    return encode_request(msg_id, "thing.event.property.pack.post", params)


def encode_history(msg_id: str, device: str, rows: Sequence[Row]) -> bytes:
    """A history post of one device's rows, in order.

    The rows are split into blocks in which no property repeats: the platform validates a
    block's readings as one map, so a second reading of a property in the same block would
    be stored with the other's value (see the test ``test_platform_history``)."""
    pk, _, dn = device.partition("/")
    identity = {"productKey": pk, "deviceName": dn}
    blocks: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in rows:
        if not blocks or row.property in seen:
            blocks.append({"identity": identity, "properties": []})
            seen = set()
        seen.add(row.property)
        blocks[-1]["properties"].append({row.property: {"value": row.value, "time": row.ts}})
    return encode_request(msg_id, "thing.event.property.history.post", blocks)


@dataclass(frozen=True, slots=True)
class Reply:
    """A platform reply: `data` as sent."""

    id: str
    code: int
    message: str
    data: Any


def parse_reply(payload: bytes) -> Reply | None:
    """A reply, or None when the payload is not one."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(body, dict) or "id" not in body or not isinstance(body.get("code"), int):
        return None
    return Reply(str(body["id"]), body["code"], str(body.get("message", "")), body.get("data"))
