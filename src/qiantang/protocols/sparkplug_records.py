"""What a Sparkplug B host application makes of the messages it receives.

The records `qiantang.services.sparkplug_host.SparkplugHost` returns (in a ``HostOutput``)
and the messages it asks the broker glue to publish. Plain frozen structs, no behaviour
beyond building a `Publish`.
"""

from __future__ import annotations

import msgspec

from qiantang.protocols.sparkplug_payload import MetricValue, PropertyValue
from qiantang.protocols.sparkplug_values import DataType, ThingType

__all__ = [
    "BirthDefinition",
    "HostSession",
    "MetricDefinition",
    "Publish",
    "Reading",
    "Rebirth",
    "Rejected",
    "StateChange",
]


class Publish(msgspec.Struct, frozen=True):
    """An MQTT message for the broker glue to publish."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class Reading(msgspec.Struct, frozen=True):
    """One metric value: `device` None for the edge node's own metrics; `ts_ms` is the
    metric's timestamp, else the payload's, else the arrival time. `historical` values
    (Sparkplug ``is_historical``) should not update the latest state; `transient` ones
    (``is_transient``) are for the live view, not for the historian."""

    group: str
    edge_node: str
    device: str | None
    metric: str
    value: MetricValue
    ts_ms: int
    datatype: DataType
    historical: bool = False
    transient: bool = False


class StateChange(msgspec.Struct, frozen=True):
    """A node (`device` None) or device came online or went offline at `ts_ms` (arrival)."""

    group: str
    edge_node: str
    device: str | None
    online: bool
    ts_ms: int
    reason: str


class MetricDefinition(msgspec.Struct, frozen=True):
    """A metric as a birth defines it. `thing_type` is the thing-model type it maps to (None
    where there is none); `control` marks bdSeq and the ``Node Control/`` and
    ``Device Control/`` metrics of the Sparkplug conventions."""

    name: str
    alias: int | None
    datatype: DataType
    thing_type: ThingType | None
    control: bool
    properties: dict[str, PropertyValue] = {}


class BirthDefinition(msgspec.Struct, frozen=True):
    """The metrics an NBIRTH (`device` None) or DBIRTH defines, for the thing model."""

    group: str
    edge_node: str
    device: str | None
    metrics: tuple[MetricDefinition, ...]
    ts_ms: int


class Rebirth(msgspec.Struct, frozen=True):
    """Send NCMD ``Node Control/Rebirth`` = true to ``group/edge_node``: `topic` and
    `payload` are ready to publish (QoS 0, not retained)."""

    group: str
    edge_node: str
    reason: str
    topic: str
    payload: bytes

    def publish(self) -> Publish:
        """The message to publish."""
        return Publish(self.topic, self.payload)


class Rejected(msgspec.Struct, frozen=True):
    """A message that could not be read; nothing changed. `field`/`rule`/`message` as in
    `SparkplugError`."""

    topic: str
    field: str
    rule: str
    message: str


class HostSession(msgspec.Struct, frozen=True):
    """The host's STATE death (the MQTT will of its CONNECT, also to publish on a clean
    disconnect) and birth (to publish once subscribed), QoS 1, retained."""

    will: Publish
    birth: Publish
