"""Alink topics, topic ACL, reply codes and reply encoding.

This is the lower half of the Alink codec (`qiantang.protocols.alink` decodes payloads and
builds on it): the reply codes and `AlinkError` every Alink failure is raised as, the topic
parser, the topic ACL a broker applies to each device session, and the reply envelope.

Topics (Alibaba Cloud IoT Platform, Alink protocol), ``{pk}``/``{dn}`` the device identity:

- ``/sys/{pk}/{dn}/thing/event/property/post`` (and ``/history/post``, ``/pack/post``),
  ``/sys/{pk}/{dn}/thing/event/{eventId}/post``, each with its ``_reply``;
- ``/sys/{pk}/{dn}/thing/service/property/set`` and ``/thing/service/{serviceId}`` downlink,
  with the device's ``set_reply`` / ``{serviceId}_reply``;
- ``/sys/{pk}/{dn}/rrpc/request/{messageId}`` and ``/rrpc/response/{messageId}``;
- ``/sys/{pk}/{dn}/thing/topo/add|delete|get`` (gateways), with ``_reply``;
- ``/ext/session/{pk}/{dn}/combine/login|logout|batch_login|batch_logout``, with ``_reply``;
- ``/shadow/update/{pk}/{dn}`` (device to cloud) and ``/shadow/get/{pk}/{dn}`` (cloud to device).

A service whose identifier itself ends in ``_reply`` cannot be told from a reply on the wire;
``thing/service/x_reply`` is always read as the reply of service ``x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

import msgspec

from qiantang.domain.errors import FieldError, QiantangError

__all__ = [
    "AlinkCode",
    "AlinkError",
    "AlinkTopic",
    "Direction",
    "TopicKind",
    "device_topic_owner",
    "encode_error_reply",
    "encode_reply",
    "is_device_name",
    "is_identifier",
    "may_publish",
    "may_subscribe",
    "parse_topic",
    "reply_topic",
]


class AlinkCode(IntEnum):
    """Reply codes the platform sends to devices (Alibaba's device error-code tables)."""

    SUCCESS = 200
    REQUEST_ERROR = 400
    RATE_LIMITED = 429
    BAD_PARAMS = 460
    SYSTEM_ERROR = 500
    DEVICE_NOT_FOUND = 6100
    TOO_MANY_PROPERTIES = 6106
    TOPIC_PARSE_FAILED = 6203
    DEVICE_DISABLED = 6204
    TSL_UNAVAILABLE = 6313
    PACK_TOO_MANY_ITEMS = 6356
    PACK_TOO_MANY_SUB_DEVICES = 6357
    TOPIC_ILLEGAL = 6813
    DEVICE_OFFLINE = 9201


_DEFAULT_MESSAGES: Final[dict[int, str]] = {
    200: "success",
    400: "request error",
    429: "too many requests",
    460: "request parameter error",
    500: "system error",
    6100: "device not found",
    6106: "map size must less than 200",
    6203: "topic parse failed",
    6204: "device is disabled",
    6313: "tsl service not available",
    6356: "too many properties or events in pack post",
    6357: "too many sub-devices in pack post",
    6813: "topic illegal",
    9201: "device offline",
}


class AlinkError(QiantangError):
    """A message that cannot be accepted, with the Alink reply `code` to answer it with.

    `field` is a dotted path into the payload (``params.temp.time``) or ``topic``, `rule` a
    short machine-readable name, `message` a sentence. `request_id` is the message id when
    the envelope got far enough to have one, so the caller can still address a reply.
    """

    def __init__(
        self, code: int, field: str, rule: str, message: str, request_id: str | None = None
    ) -> None:
        self.code = int(code)
        self.field = field
        self.rule = rule
        self.message = message
        self.request_id = request_id
        super().__init__(f"{self.code} {self.reply_message()}")

    def reply_message(self) -> str:
        """The text for the reply's ``message``: field, sentence and rule."""
        return f"{self.field}: {self.message} ({self.rule})" if self.field else self.message

    def as_field_error(self) -> FieldError:
        """The same problem as a domain `FieldError`."""
        return FieldError(self.field, self.rule, self.message)


_ENCODER = msgspec.json.Encoder()


def encode_reply(
    id: str,
    code: int,
    data: object = None,
    message: str | None = None,
    version: str = "1.0",
    method: str | None = None,
) -> bytes:
    """Encode ``{"id", "code", "data", "message", ["method",] "version"}``.

    `data` defaults to ``{}``; `message` to the code's standard text (``success`` for 200).
    Recent Alibaba replies echo the request ``method``; pass it to include it.
    """
    reply: dict[str, object] = {
        "id": id,
        "code": int(code),
        "data": {} if data is None else data,
        "message": _DEFAULT_MESSAGES.get(int(code), "error") if message is None else message,
    }
    if method is not None:
        reply["method"] = method
    reply["version"] = version
    return _ENCODER.encode(reply)


def encode_error_reply(
    error: AlinkError, id: str | None = None, method: str | None = None
) -> bytes:
    """Encode the reply for `error`, addressed to `id` or else to the id the error carries."""
    rid = id if id is not None else (error.request_id or "")
    return encode_reply(rid, error.code, message=error.reply_message(), method=method)


class Direction(StrEnum):
    """Who publishes on a topic: the device (``up``) or the platform (``down``)."""

    UP = "up"
    DOWN = "down"


class TopicKind(StrEnum):
    """What a recognised Alink topic carries."""

    PROPERTY_POST = "property_post"
    PROPERTY_POST_REPLY = "property_post_reply"
    EVENT_POST = "event_post"
    EVENT_POST_REPLY = "event_post_reply"
    HISTORY_POST = "history_post"
    HISTORY_POST_REPLY = "history_post_reply"
    PACK_POST = "pack_post"
    PACK_POST_REPLY = "pack_post_reply"
    PROPERTY_SET = "property_set"
    PROPERTY_SET_REPLY = "property_set_reply"
    SERVICE_CALL = "service_call"
    SERVICE_REPLY = "service_reply"
    RRPC_REQUEST = "rrpc_request"
    RRPC_RESPONSE = "rrpc_response"
    TOPO_ADD = "topo_add"
    TOPO_ADD_REPLY = "topo_add_reply"
    TOPO_DELETE = "topo_delete"
    TOPO_DELETE_REPLY = "topo_delete_reply"
    TOPO_GET = "topo_get"
    TOPO_GET_REPLY = "topo_get_reply"
    SESSION_LOGIN = "session_login"
    SESSION_LOGIN_REPLY = "session_login_reply"
    SESSION_LOGOUT = "session_logout"
    SESSION_LOGOUT_REPLY = "session_logout_reply"
    SESSION_BATCH_LOGIN = "session_batch_login"
    SESSION_BATCH_LOGIN_REPLY = "session_batch_login_reply"
    SESSION_BATCH_LOGOUT = "session_batch_logout"
    SESSION_BATCH_LOGOUT_REPLY = "session_batch_logout_reply"
    SHADOW_UPDATE = "shadow_update"
    SHADOW_GET = "shadow_get"
    OTA_UPGRADE = "ota_upgrade"
    OTA_PROGRESS = "ota_progress"
    OTA_INFORM = "ota_inform"


_K = TopicKind
# topic tail after /sys/{pk}/{dn}/ (or /ext/session/{pk}/{dn}/) -> (kind, method)
_FIXED: Final[dict[str, tuple[TopicKind, str | None]]] = {
    "thing/event/property/post": (_K.PROPERTY_POST, "thing.event.property.post"),
    "thing/event/property/history/post": (_K.HISTORY_POST, "thing.event.property.history.post"),
    "thing/event/property/pack/post": (_K.PACK_POST, "thing.event.property.pack.post"),
    "thing/service/property/set": (_K.PROPERTY_SET, "thing.service.property.set"),
    "thing/topo/add": (_K.TOPO_ADD, "thing.topo.add"),
    "thing/topo/delete": (_K.TOPO_DELETE, "thing.topo.delete"),
    "thing/topo/get": (_K.TOPO_GET, "thing.topo.get"),
}
_SESSION: Final[dict[str, tuple[TopicKind, str | None]]] = {
    "combine/login": (_K.SESSION_LOGIN, "combine.login"),
    "combine/logout": (_K.SESSION_LOGOUT, "combine.logout"),
    "combine/batch_login": (_K.SESSION_BATCH_LOGIN, "combine.batch.login"),
    "combine/batch_logout": (_K.SESSION_BATCH_LOGOUT, "combine.batch.logout"),
}
_OTA: Final[dict[str, TopicKind]] = {
    "upgrade": _K.OTA_UPGRADE,
    "progress": _K.OTA_PROGRESS,
    "inform": _K.OTA_INFORM,
}
_KIND_VALUES: Final = frozenset(kind.value for kind in TopicKind)
_REPLY_OF: Final[dict[TopicKind, TopicKind]] = {
    kind: TopicKind(f"{kind.value}_reply")
    for kind in TopicKind
    if f"{kind.value}_reply" in _KIND_VALUES
}
_REPLY_OF[TopicKind.SERVICE_CALL] = TopicKind.SERVICE_REPLY
_DOWNLINK: Final = frozenset(
    {_K.PROPERTY_SET, _K.SERVICE_CALL, _K.RRPC_REQUEST, _K.SHADOW_GET, _K.OTA_UPGRADE}
    | {_REPLY_OF[k] for k in _REPLY_OF if k not in (_K.PROPERTY_SET, _K.SERVICE_CALL)}
)
_NAME_RE = re.compile(r"[A-Za-z0-9_\-@.:]{1,64}")
_IDENT_RE = re.compile(r"(?:[A-Za-z0-9_]{1,30}:)?[A-Za-z0-9_]{1,50}")
_MSG_ID_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def is_identifier(text: str) -> bool:
    """True for a thing-model identifier: ``[A-Za-z0-9_]{1,50}``, optionally ``module:`` first."""
    return _IDENT_RE.fullmatch(text) is not None


def is_device_name(text: str) -> bool:
    """True for a product key or device name usable in topics: 1-64 of ``A-Za-z0-9_-@.:``."""
    return _NAME_RE.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class AlinkTopic:
    """A recognised topic: `identifier` is the event or service id, or the rrpc message id."""

    topic: str
    kind: TopicKind
    product_key: str
    device_name: str
    identifier: str | None = None
    method: str | None = None

    @property
    def direction(self) -> Direction:
        """Whether devices publish on this topic (``up``) or receive on it (``down``)."""
        return Direction.DOWN if self.kind in _DOWNLINK else Direction.UP

    @property
    def reply_topic(self) -> str | None:
        """Where the answer to a message on this topic goes; None for replies themselves."""
        if self.kind is _K.RRPC_REQUEST:
            return self.topic.replace("/rrpc/request/", "/rrpc/response/", 1)
        if self.kind is _K.SHADOW_UPDATE:
            return f"/shadow/get/{self.product_key}/{self.device_name}"
        return f"{self.topic}_reply" if self.kind in _REPLY_OF else None


def _unknown(
    topic: str, rule: str = "unknown_topic", why: str = "is not an Alink topic"
) -> AlinkError:
    shown = topic if len(topic) <= 120 else topic[:117] + "..."
    return AlinkError(AlinkCode.TOPIC_PARSE_FAILED, "topic", rule, f"{shown!r} {why}")


def _lookup(
    table: dict[str, tuple[TopicKind, str | None]], tail: str
) -> tuple[TopicKind, str | None] | None:
    if tail in table:
        return table[tail]
    if tail.endswith("_reply") and tail[:-6] in table:
        kind, method = table[tail[:-6]]
        return _REPLY_OF[kind], method
    return None


def _sys_tail(topic: str, pk: str, dn: str, tail: str) -> AlinkTopic:
    fixed = _lookup(_FIXED, tail)
    if fixed is not None:
        return AlinkTopic(topic, fixed[0], pk, dn, None, fixed[1])
    parts = tail.split("/")
    if len(parts) == 4 and parts[:2] == ["thing", "event"] and parts[3] in ("post", "post_reply"):
        kind = _K.EVENT_POST if parts[3] == "post" else _K.EVENT_POST_REPLY
        return _with_identifier(topic, kind, pk, dn, parts[2], "thing.event.{}.post")
    if len(parts) == 3 and parts[:2] == ["thing", "service"]:
        name, kind = parts[2], _K.SERVICE_CALL
        if name.endswith("_reply"):
            name, kind = name[:-6], _K.SERVICE_REPLY
        return _with_identifier(topic, kind, pk, dn, name, "thing.service.{}")
    if len(parts) == 3 and parts[0] == "rrpc" and parts[1] in ("request", "response"):
        if _MSG_ID_RE.fullmatch(parts[2]) is None:
            raise _unknown(topic, "message_id", "has a malformed rrpc message id")
        kind = _K.RRPC_REQUEST if parts[1] == "request" else _K.RRPC_RESPONSE
        return AlinkTopic(topic, kind, pk, dn, parts[2])
    raise _unknown(topic)


def _with_identifier(
    topic: str, kind: TopicKind, pk: str, dn: str, name: str, method: str
) -> AlinkTopic:
    if name == "property" or _IDENT_RE.fullmatch(name) is None:
        raise _unknown(topic, "identifier", "has a malformed identifier")
    return AlinkTopic(topic, kind, pk, dn, name, method.format(name))


def _checked(topic: str, pk: str, dn: str) -> None:
    if _NAME_RE.fullmatch(pk) is None or _NAME_RE.fullmatch(dn) is None:
        raise _unknown(topic, "device", "has a malformed product key or device name")


def parse_topic(topic: str) -> AlinkTopic:
    """Recognise an Alink topic, or raise `AlinkError` with code 6203."""
    parts = topic.split("/", 5)
    if len(parts) < 5 or parts[0] != "":
        raise _unknown(topic)
    root = parts[1]
    if root == "sys":
        pk, dn = parts[2], parts[3]
        _checked(topic, pk, dn)
        return _sys_tail(topic, pk, dn, "/".join(parts[4:]))
    if root == "shadow" and len(parts) == 5 and parts[2] in ("update", "get"):
        _checked(topic, parts[3], parts[4])
        kind = _K.SHADOW_UPDATE if parts[2] == "update" else _K.SHADOW_GET
        return AlinkTopic(topic, kind, parts[3], parts[4])
    if root == "ota" and len(parts) == 6 and parts[2] == "device" and parts[3] in _OTA:
        _checked(topic, parts[4], parts[5])
        return AlinkTopic(topic, _OTA[parts[3]], parts[4], parts[5])
    if root == "ext" and parts[2] == "session" and len(parts) == 6:
        _checked(topic, parts[3], parts[4])
        found = _lookup(_SESSION, parts[5])
        if found is not None:
            return AlinkTopic(topic, found[0], parts[3], parts[4], None, found[1])
    raise _unknown(topic)


def reply_topic(topic: str) -> str:
    """The topic on which to answer a message received on `topic`.

    ``..._reply`` appended for posts, topo, session, property set and service calls; the rrpc
    response topic for an rrpc request; ``/shadow/get/..`` for a shadow update. A topic that is
    itself an answer raises `AlinkError` (6203).
    """
    parsed = parse_topic(topic)
    answer = parsed.reply_topic
    if answer is None:
        raise _unknown(topic, "no_reply", "is itself a reply")
    return answer


def device_topic_owner(topic: str) -> tuple[str, str] | None:
    """The ``(product_key, device_name)`` whose subtree holds `topic`, or None.

    Owned subtrees: ``/sys/{pk}/{dn}`` and everything under it, ``/ext/session/{pk}/{dn}`` and
    everything under it, and exactly ``/shadow/update/{pk}/{dn}``, ``/shadow/get/{pk}/{dn}``
    and ``/ota/device/{upgrade,progress,inform}/{pk}/{dn}``.
    A wildcard in the product key or device name level is not a name, so it owns nothing.
    """
    parts = topic.split("/", 5)
    if len(parts) < 4 or parts[0] != "":
        return None
    shadow = len(parts) == 5 and parts[1] == "shadow" and parts[2] in ("update", "get")
    session = len(parts) >= 5 and parts[1] == "ext" and parts[2] == "session"
    ota = len(parts) == 6 and parts[1] == "ota" and parts[2] == "device" and parts[3] in _OTA
    if parts[1] == "sys":
        pk, dn = parts[2], parts[3]
    elif shadow or session:
        pk, dn = parts[3], parts[4]
    elif ota:
        pk, dn = parts[4], parts[5]
    else:
        return None
    if _NAME_RE.fullmatch(pk) is None or _NAME_RE.fullmatch(dn) is None:
        return None
    return pk, dn


def _mqtt_ok(text: str) -> bool:
    return bool(text) and "\x00" not in text and len(text.encode("utf-8", "replace")) <= 65535


def _valid_filter(topic_filter: str) -> bool:
    if not _mqtt_ok(topic_filter):
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def may_publish(topic: str, product_key: str, device_name: str) -> bool:
    """True when the device may publish on `topic`: a wildcard-free topic in its own subtree."""
    if not _mqtt_ok(topic) or "+" in topic or "#" in topic:
        return False
    return device_topic_owner(topic) == (product_key, device_name)


def may_subscribe(topic_filter: str, product_key: str, device_name: str) -> bool:
    """True when every topic `topic_filter` can match lies in the device's own subtree.

    Wildcards are allowed only below the ``{pk}/{dn}`` levels of ``/sys`` and ``/ext/session``;
    shadow filters must be exact; shared subscriptions (``$share/...``) are refused.
    """
    if not _valid_filter(topic_filter):
        return False
    return device_topic_owner(topic_filter) == (product_key, device_name)
