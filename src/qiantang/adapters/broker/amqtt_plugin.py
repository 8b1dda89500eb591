"""The amqtt broker plugin that connects amqtt 0.12 to `IngressHooks`.

amqtt loads broker plugins from the ``plugins`` section of its config: each key is the dotted
path of a `BasePlugin` subclass, each value the keyword arguments of that class's ``Config``
dataclass (entry points are deprecated). `AmqttIngress` passes this class's path with a
`PluginBinding` as its only option, so the plugin reaches the hooks without globals.

One class, `QiantangBrokerPlugin`, is both an auth plugin and a topic plugin (the amqtt docs
allow that) and handles three events:

- ``authenticate`` (auth plugin) - calls ``hooks.authenticate`` and keeps the `Identity` in
  ``session.attributes``, the dict amqtt reserves for plugins; ``False`` -> CONNACK 5. It
  also drops the client's last will, which amqtt would publish past the ACL and handover.
- ``on_mqtt_packet_received`` (event, every packet of a connected client) - notes the time
  for the keep-alive watchdog and hands each PUBLISH over: ACL check, then
  `BatchHandover.put_message`. amqtt runs event callbacks as tasks created *before* the task
  that queues the message and writes its PUBACK, and this callback does not await before
  queueing, so a message is in our queue before its PUBACK leaves.
  ``on_broker_message_received`` would be too late: amqtt fires it from a per-client queue
  after the PUBACK, and a shutdown drops what is still in that queue. A PUBLISH to a
  malformed topic closes the connection (amqtt stops serving the client but leaves the
  socket open).
- ``topic_filtering`` (topic plugin) - SUBSCRIBE: ``hooks.may_subscribe`` (``False`` ->
  SUBACK 0x80). PUBLISH: always ``False``, because the message was already handed over and
  uplink is not relayed to other subscribers (relaying would also cost amqtt a scan of every
  subscription per message). RECEIVE (delivery of downlink to a subscriber): ``True``, the
  filter was checked at SUBSCRIBE.
- ``on_broker_client_connected`` / ``on_broker_client_disconnected`` - connection changes,
  counted per client id so that a takeover does not report the device offline; a clean
  session that takes over a live client id has its predecessor closed here (MQTT-3.1.4-2),
  which amqtt 0.12 does only for persistent sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from amqtt.contexts import Action  # type: ignore[import-untyped]
from amqtt.mqtt.publish import PublishPacket  # type: ignore[import-untyped]
from amqtt.plugins.base import (  # type: ignore[import-untyped]
    BaseAuthPlugin,
    BaseTopicPlugin,
)

from qiantang.adapters.broker.handover import BatchHandover
from qiantang.ports.ingress import (
    CONNECTS_REFUSED,
    PUBLISHES_DROPPED,
    SUBSCRIBES_REFUSED,
    Identity,
    InboundMessage,
    IngressHooks,
)

__all__ = [
    "IDENTITY_KEY",
    "LAST_PACKET_KEY",
    "REFUSED_KEY",
    "PluginBinding",
    "QiantangBrokerPlugin",
    "close_connection",
]

logger = logging.getLogger(__name__)

#: ``session.attributes`` key of the connection's `Identity`.
IDENTITY_KEY = "qiantang.identity"
#: ``session.attributes`` key of the loop time of the connection's last packet.
LAST_PACKET_KEY = "qiantang.last_packet"
#: ``session.attributes`` mark of a session amqtt kept for a refused connection.
REFUSED_KEY = "qiantang.refused"
_DROP_LOGGED_KEY = "qiantang.drop_logged"


@dataclass(frozen=True, slots=True)
class _Live:
    """The live connections of one client id (more than one only during a takeover)."""

    count: int
    identity: Identity
    session: Any  # amqtt.session.Session of the newest connection
    handler: Any  # its amqtt BrokerProtocolHandler, None if it could not be found


@dataclass(eq=False)
class PluginBinding:
    """What the plugin shares with `AmqttIngress`: hooks, handover, counters, live clients."""

    hooks: IngressHooks
    handover: BatchHandover
    counters: dict[str, int]
    accepting: bool = True
    live: dict[str, _Live] = field(default_factory=dict)
    broker: Any = None  # the amqtt Broker, set by AmqttIngress before it starts
    context: Any = None  # the plugin's amqtt BrokerContext, set when the plugin is built

    def connection_opened(self, client_id: str, session: Any) -> Any:
        """Count a new connection; return the handler of one it replaces, to be closed."""
        identity = session.attributes.get(IDENTITY_KEY)
        if not isinstance(identity, Identity) or self.handover.closed:
            return None
        found = self.broker.sessions.get(client_id) if self.broker is not None else None
        handler = found[1] if found is not None and found[0] is session else None
        previous = self.live.get(client_id)
        count = (previous.count if previous else 0) + 1
        self.live[client_id] = _Live(count, identity, session, handler)
        self.handover.put_connection(identity, client_id, True)
        if previous is not None and previous.session is not session:
            return previous.handler
        return None

    def connection_closed(self, client_id: str) -> None:
        entry = self.live.get(client_id)
        if entry is None:
            return
        if entry.count > 1:
            self.live[client_id] = _Live(
                entry.count - 1, entry.identity, entry.session, entry.handler
            )
            return
        del self.live[client_id]
        self.handover.put_connection(entry.identity, client_id, False)

    def handler_of(self, session: Any) -> Any:
        """The amqtt protocol handler serving `session`, or ``None``."""
        entry = self.live.get(session.client_id)
        if entry is not None and entry.session is session and entry.handler is not None:
            return entry.handler
        found = self.broker.sessions.get(session.client_id) if self.broker is not None else None
        return found[1] if found is not None and found[0] is session else None

    def close_all(self) -> None:
        """Report every connection still counted as closed (at shutdown)."""
        live, self.live = self.live, {}
        for client_id, entry in live.items():
            self.handover.put_connection(entry.identity, client_id, False)

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


async def close_connection(handler: Any) -> None:
    """Close a client connection the way amqtt drops a session taken over by a new one."""
    try:
        await handler.handle_connection_closed()
    except Exception:
        logger.exception("closing a client connection failed")


def _publishable(topic: str | None) -> TypeGuard[str]:
    """A topic a client may publish to: non-empty, no wildcard, no leading ``$``."""
    if not topic:
        return False
    return not topic.startswith("$") and "+" not in topic and "#" not in topic


class QiantangBrokerPlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]
    """Authentication, topic ACL and message handover for `AmqttIngress`."""

    @dataclass
    class Config:
        """Set by `AmqttIngress` in the broker config's ``plugins`` section."""

        binding: PluginBinding

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        config = context.config
        if not isinstance(config, QiantangBrokerPlugin.Config):
            raise TypeError("QiantangBrokerPlugin needs a PluginBinding in its config")
        self._binding: PluginBinding = config.binding
        self._binding.context = context
        self._loop_time = asyncio.get_running_loop().time

    async def authenticate(self, *, session: Any) -> bool:
        binding = self._binding
        client_id: str = session.client_id or ""
        if not binding.accepting:
            binding.count(CONNECTS_REFUSED)
            return False
        password = session.password.encode() if session.password is not None else None
        peer = f"{session.remote_address}:{session.remote_port}"
        try:
            identity = await binding.hooks.authenticate(client_id, session.username, password, peer)
        except Exception:
            logger.exception("authenticate hook failed for client %s", client_id)
            identity = None
        if identity is None:
            await self._refuse(session, client_id, peer)
            return False
        session.attributes[IDENTITY_KEY] = identity
        session.attributes[LAST_PACKET_KEY] = self._loop_time()
        session.attributes.pop(_DROP_LOGGED_KEY, None)
        if session.will_flag:
            # amqtt publishes a will straight to subscribers, past the topic ACL and the
            # handover; Alink has no wills, so none is kept
            logger.info("client %s: last-will message ignored", client_id)
            session.will_flag = False
            session.will_topic = None
            session.will_message = None
        return True

    async def _refuse(self, session: Any, client_id: str, peer: str) -> None:
        binding = self._binding
        binding.count(CONNECTS_REFUSED)
        logger.info("connection refused: client %s from %s", client_id, peer)
        if IDENTITY_KEY not in session.attributes:
            # amqtt keeps a refused connection's session, marked connected, for ever;
            # AmqttIngress sweeps the marked ones out
            session.attributes[REFUSED_KEY] = True
        live = binding.live.get(client_id)
        if live is not None and live.session is not session and live.handler is not None:
            # before authenticating a clean-session CONNECT, amqtt already dropped the live
            # client's session and subscriptions: it would stay connected but get no downlink
            logger.warning(
                "refused CONNECT used the client id of live client %s, whose session amqtt "
                "dropped; closing that connection so that it reconnects",
                client_id,
            )
            await close_connection(live.handler)

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        if action == Action.RECEIVE:
            return True
        if action != Action.SUBSCRIBE or session is None or topic is None:
            return False  # PUBLISH: handed over in on_mqtt_packet_received, never relayed
        identity = session.attributes.get(IDENTITY_KEY)
        try:
            allowed = identity is not None and self._binding.hooks.may_subscribe(identity, topic)
        except Exception:
            logger.exception("may_subscribe hook failed for client %s", session.client_id)
            allowed = False
        if not allowed:
            self._binding.count(SUBSCRIBES_REFUSED)
            logger.info("subscribe refused: client %s, filter %s", session.client_id, topic)
        return allowed

    async def on_mqtt_packet_received(self, *, packet: Any, session: Any = None) -> None:
        if session is None:
            return  # the CONNECT, before a session exists
        session.attributes[LAST_PACKET_KEY] = self._loop_time()
        if isinstance(packet, PublishPacket) and not self._hand_over(session, packet):
            # amqtt stops serving a client that publishes to such a topic but leaves its
            # socket open (and keeps reading from it); close the connection properly
            handler = self._binding.handler_of(session)
            if handler is not None:
                await close_connection(handler)

    def _hand_over(self, session: Any, packet: Any) -> bool:
        """Queue or drop one PUBLISH, without awaiting; ``False`` if its topic is malformed."""
        binding = self._binding
        identity = session.attributes.get(IDENTITY_KEY)
        topic: str | None = packet.topic_name
        if not _publishable(topic):
            self._drop(session, topic, "malformed topic, closing the connection")
            return False
        allowed = False
        if identity is not None:
            try:
                allowed = binding.hooks.may_publish(identity, topic)
            except Exception:
                logger.exception("may_publish hook failed for client %s", session.client_id)
        if not allowed:
            self._drop(session, topic, "not allowed")
            return True
        binding.handover.put_message(
            InboundMessage(
                identity=identity,
                client_id=session.client_id,
                topic=topic,
                payload=bytes(packet.data or b""),
                qos=packet.qos or 0,
                received_ms=time.time_ns() // 1_000_000,
            )
        )
        return True

    def _drop(self, session: Any, topic: str | None, why: str) -> None:
        self._binding.count(PUBLISHES_DROPPED)
        if session.attributes.get(_DROP_LOGGED_KEY):
            logger.debug("publish dropped: client %s, topic %r: %s", session.client_id, topic, why)
            return
        session.attributes[_DROP_LOGGED_KEY] = True
        logger.warning(
            "publish dropped: client %s, topic %r: %s (logged once per connection)",
            session.client_id,
            topic,
            why,
        )

    async def on_broker_client_connected(self, *, client_id: str, client_session: Any) -> None:
        replaced = self._binding.connection_opened(client_id, client_session)
        if replaced is not None:
            # MQTT-3.1.4-2: a new connection with a live client id takes over. amqtt 0.12 does
            # that itself only for persistent sessions; with a clean session it forgets the
            # old session but leaves its connection open, so close it here.
            logger.info("client %s connected again: closing its previous connection", client_id)
            await close_connection(replaced)

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: Any) -> None:
        self._binding.connection_closed(client_id)
