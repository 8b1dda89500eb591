"""Sparkplug B topics: the namespace, the topic parser and builders, and `SparkplugError`.

This is the lowest layer of the Sparkplug B codec (`qiantang.protocols.sparkplug` is the
public face). Topics (Sparkplug 3.0, "Topics and Messages"):

- ``spBv1.0/{group_id}/{NBIRTH|NDEATH|NDATA|NCMD}/{edge_node_id}``;
- ``spBv1.0/{group_id}/{DBIRTH|DDEATH|DDATA|DCMD}/{edge_node_id}/{device_id}``;
- ``spBv1.0/STATE/{host_id}`` (a host application's birth and death, JSON, retained).

Each id is a non-empty UTF-8 string without ``/``, ``+`` or ``#`` (and, as MQTT requires,
without U+0000). Anything else is a `SparkplugError` naming the topic level and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from qiantang.domain.errors import FieldError, QiantangError

__all__ = [
    "DEVICE_MESSAGE_TYPES",
    "NAMESPACE",
    "NODE_MESSAGE_TYPES",
    "MessageType",
    "SparkplugError",
    "SpbTopic",
    "StateTopic",
    "check_id",
    "format_topic",
    "parse_topic",
    "state_topic",
]

NAMESPACE: Final = "spBv1.0"
_RESERVED: Final = frozenset("/+#\x00")


class SparkplugError(QiantangError):
    """A Sparkplug topic or payload that cannot be accepted.

    `field` is a dotted path (``topic.group_id``, ``metrics[3].value``), `rule` a short
    machine-readable name, `message` a sentence.
    """

    def __init__(self, field: str, rule: str, message: str) -> None:
        self.field = field
        self.rule = rule
        self.message = message
        super().__init__(f"{field}: {message} ({rule})")

    def as_field_error(self) -> FieldError:
        """The same problem as a domain `FieldError`."""
        return FieldError(self.field, self.rule, self.message)

    def prefixed(self, prefix: str) -> SparkplugError:
        """The same error with `prefix` put in front of the field path."""
        return SparkplugError(f"{prefix}.{self.field}", self.rule, self.message)


class MessageType(StrEnum):
    """The ``message_type`` topic level."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"
    STATE = "STATE"


_M = MessageType
NODE_MESSAGE_TYPES: Final = frozenset({_M.NBIRTH, _M.NDEATH, _M.NDATA, _M.NCMD})
"""Message types whose topic ends at the edge node id."""
DEVICE_MESSAGE_TYPES: Final = frozenset({_M.DBIRTH, _M.DDEATH, _M.DDATA, _M.DCMD})
"""Message types whose topic carries a device id."""


@dataclass(frozen=True, slots=True)
class SpbTopic:
    """An edge-node or device topic; `device` is set exactly for the D* message types."""

    group: str
    message_type: MessageType
    edge_node: str
    device: str | None = None

    @property
    def topic(self) -> str:
        """The MQTT topic string."""
        base = f"{NAMESPACE}/{self.group}/{self.message_type}/{self.edge_node}"
        return base if self.device is None else f"{base}/{self.device}"


@dataclass(frozen=True, slots=True)
class StateTopic:
    """``spBv1.0/STATE/{host_id}``: a host application's STATE."""

    host_id: str
    message_type: MessageType = MessageType.STATE

    @property
    def topic(self) -> str:
        """The MQTT topic string."""
        return f"{NAMESPACE}/STATE/{self.host_id}"


def check_id(value: str, field: str) -> str:
    """`value` if it is a valid group, edge node, device or host id; else `SparkplugError`."""
    if not value:
        raise SparkplugError(field, "empty_id", "must not be empty")
    if not _RESERVED.isdisjoint(value):
        raise SparkplugError(field, "reserved_char", "must not contain '/', '+', '#' or NUL")
    return value


def parse_topic(topic: str) -> SpbTopic | StateTopic:
    """Parse a Sparkplug B topic; raises `SparkplugError` for anything else."""
    levels = topic.split("/")
    if levels[0] != NAMESPACE:
        raise SparkplugError("topic", "namespace", f"must start with {NAMESPACE}/")
    if len(levels) == 3 and levels[1] == "STATE":
        return StateTopic(check_id(levels[2], "topic.host_id"))
    if len(levels) not in (4, 5):
        raise SparkplugError(
            "topic", "levels", f"must be {NAMESPACE}/group/type/edge_node[/device]"
        )
    try:
        kind = MessageType(levels[2])
    except ValueError:
        raise SparkplugError(
            "topic.message_type", "message_type", f"unknown message type {levels[2]!r}"
        ) from None
    if kind is MessageType.STATE:
        raise SparkplugError("topic", "levels", f"STATE topics are {NAMESPACE}/STATE/host_id")
    device = levels[4] if len(levels) == 5 else None
    _check_device_presence(kind, device)
    return SpbTopic(
        check_id(levels[1], "topic.group_id"),
        kind,
        check_id(levels[3], "topic.edge_node_id"),
        None if device is None else check_id(device, "topic.device_id"),
    )


def _check_device_presence(kind: MessageType, device: str | None) -> None:
    if kind in DEVICE_MESSAGE_TYPES and device is None:
        raise SparkplugError("topic.device_id", "device_required", f"{kind} needs a device id")
    if kind in NODE_MESSAGE_TYPES and device is not None:
        raise SparkplugError("topic.device_id", "device_forbidden", f"{kind} takes no device id")


def format_topic(
    group: str, message_type: MessageType, edge_node: str, device: str | None = None
) -> str:
    """Build an edge-node or device topic, checking every id; raises `SparkplugError`."""
    if message_type is MessageType.STATE:
        raise SparkplugError("message_type", "message_type", "use state_topic for STATE")
    _check_device_presence(message_type, device)
    return SpbTopic(
        check_id(group, "group_id"),
        message_type,
        check_id(edge_node, "edge_node_id"),
        None if device is None else check_id(device, "device_id"),
    ).topic


def state_topic(host_id: str) -> str:
    """``spBv1.0/STATE/{host_id}``, checking the id; raises `SparkplugError`."""
    return StateTopic(check_id(host_id, "host_id")).topic
