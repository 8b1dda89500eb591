"""The MQTT ingress port: how device traffic gets from an MQTT broker into the platform.

The platform implements `IngressHooks`; a broker adapter implements `MqttIngress` and calls
the hooks. The embedded adapter runs amqtt inside the process
(`qiantang.adapters.broker.AmqttIngress`); a scale-out adapter can put an external broker
cluster behind the same two interfaces.

Shared semantics, which every adapter honours:

- **Authentication** happens once, at CONNECT: ``authenticate`` returns the device's
  `Identity` or ``None``; ``None`` (or an exception) refuses the connection (CONNACK
  return code 5, "not authorised"). Every later decision uses that identity; nothing is
  looked up per message.
- **Publish ACL.** A PUBLISH whose topic ``may_publish`` refuses is dropped, logged and
  counted (``publishes_dropped``); MQTT 3.1.1 cannot refuse a publish, so a QoS 1 publish is
  still acknowledged and the connection stays open. A PUBLISH to a malformed topic (empty,
  with a wildcard, or starting with ``$``) is dropped and counted the same way, and its
  connection closed.
- **Subscribe ACL.** A topic filter ``may_subscribe`` refuses gets SUBACK return code 0x80
  and is counted (``subscribes_refused``).
- **Uplink is handed over, not relayed.** Accepted messages go to ``on_messages`` only; the
  broker does not forward device uplink to other MQTT subscribers, keeps no retained
  messages from devices and sends no last-will messages (Alink has neither; the platform
  learns of an abnormal disconnect from ``on_connection``). Downlink goes through
  ``MqttIngress.publish``.
- **Batches.** ``on_messages`` receives messages in arrival order, in batches bounded by the
  adapter's batch size and delay. ``on_messages`` and ``on_connection`` are awaited one call
  at a time, in the order the broker saw the events, so for one client a ``connected=True``
  comes before its messages and its messages before its ``connected=False``. A hook that
  raises is logged and counted (``handover_errors``); its batch is not retried.
- **Connections.** ``on_connection(connected=True)`` follows every accepted CONNECT (a
  reconnect that takes over a live session reports ``True`` again); ``connected=False`` is
  reported once the client id has no live connection left - after DISCONNECT, a dropped
  socket, keep-alive expiry (1.5 x the client's keep-alive without a packet) or `stop`.
- **Acknowledged is delivered.** A message the broker has acknowledged (PUBACK for QoS 1)
  is handed to ``on_messages`` before ``stop`` returns. Between the acknowledgement and the
  end of ``on_messages`` the message lives in memory only: a crash loses that window
  (normally at most one batch delay of traffic plus the batch being handed over).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

from qiantang.domain.errors import QiantangError

__all__ = [
    "CONNECTS_REFUSED",
    "MESSAGES_IN",
    "PUBLISHES_DROPPED",
    "REQUIRED_COUNTERS",
    "SUBSCRIBES_REFUSED",
    "Identity",
    "InboundMessage",
    "IngressError",
    "IngressHooks",
    "MqttIngress",
]

#: CONNECTs refused (unknown device, bad signature, authenticate hook failed, shutting down).
CONNECTS_REFUSED = "connects_refused"
#: PUBLISH packets dropped: refused by ``may_publish``, malformed topic, or no identity.
PUBLISHES_DROPPED = "publishes_dropped"
#: Topic filters refused by ``may_subscribe`` (answered with SUBACK 0x80).
SUBSCRIBES_REFUSED = "subscribes_refused"
#: Messages accepted and queued for ``on_messages``.
MESSAGES_IN = "messages_in"
#: Keys every adapter's ``counters()`` contains; an adapter may add its own.
REQUIRED_COUNTERS: tuple[str, ...] = (
    CONNECTS_REFUSED,
    PUBLISHES_DROPPED,
    SUBSCRIBES_REFUSED,
    MESSAGES_IN,
)


class IngressError(QiantangError):
    """The ingress cannot do what was asked: not started, already started, cannot bind."""


class Identity(msgspec.Struct, frozen=True):
    """Who is behind a connection, as the platform resolved it at CONNECT.

    `extra` is the platform's own: the adapter carries it and never looks inside.
    """

    device_id: int
    product_key: str
    device_name: str
    enterprise_id: int
    extra: object | None = None


class InboundMessage(msgspec.Struct, frozen=True):
    """One accepted PUBLISH. `received_ms` is the broker's receive time, ms since the epoch."""

    identity: Identity
    client_id: str
    topic: str
    payload: bytes
    qos: int
    received_ms: int


@runtime_checkable
class IngressHooks(Protocol):
    """What the platform provides to an ingress adapter.

    ``may_publish`` and ``may_subscribe`` are plain functions because the broker calls them
    for every packet: they must decide from the identity and the topic alone, without I/O.
    """

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> Identity | None:
        """The identity behind these credentials, or ``None`` to refuse the connection.

        `peer` is the remote ``host:port``.
        """
        ...

    def may_publish(self, identity: Identity, topic: str) -> bool:
        """Whether this device may publish to `topic`."""
        ...

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        """Whether this device may subscribe to `topic_filter` (which may hold wildcards)."""
        ...

    async def on_messages(self, batch: Sequence[InboundMessage]) -> None:
        """Take a batch of accepted messages, oldest first."""
        ...

    async def on_connection(self, identity: Identity, client_id: str, connected: bool) -> None:
        """A device came online (`connected`) or its last connection went away."""
        ...


@runtime_checkable
class MqttIngress(Protocol):
    """An MQTT broker, seen from the platform."""

    async def start(self) -> None:
        """Start accepting connections; returns once the listeners are bound."""
        ...

    async def stop(self) -> None:
        """Stop accepting, close every connection, and hand every message received so far to
        ``on_messages`` (and every pending connection change to ``on_connection``) before
        returning. Calling it again, or before `start`, does nothing."""
        ...

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Send `payload` to every client subscribed to `topic` (downlink, replies).

        With `retain`, the broker also keeps it as the topic's retained message, delivered to
        every later subscriber (an empty payload clears it, as in MQTT).
        Returns once the broker has queued the message; it does not wait for delivery.
        Raises `IngressError` when not running and `InvalidInput` for a topic with a wildcard
        or a QoS outside 0-2.
        """
        ...

    async def publish_to(self, client_id: str, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Send `payload` on `topic` to one connection only (per-session topics such as
        ThingsBoard's ``v1/devices/me/...``); False when that client is not connected."""
        ...

    def connected_count(self) -> int:
        """Client ids with a live, authenticated connection."""
        ...

    def counters(self) -> dict[str, int]:
        """Running totals since `start`; holds at least the `REQUIRED_COUNTERS` keys."""
        ...
