"""The embedded MQTT ingress: an amqtt 0.12 broker (MQTT 3.1.1) inside the platform process,
with MQTT 5 clients translated (`qiantang.adapters.broker.mqtt5_streams`).

How it hooks in. amqtt is started with a config whose ``plugins`` section names one plugin,
`QiantangBrokerPlugin`, with a `PluginBinding` (hooks, handover queue, counters) as its
option - the supported, config-based way to register a plugin class in amqtt 0.12; no entry
point is needed. That plugin authenticates CONNECTs, applies the topic ACL and hands every
accepted PUBLISH to a `BatchHandover`, which calls the platform's hooks in batches (see
`qiantang.adapters.broker.amqtt_plugin` for the exact amqtt hooks). Downlink uses the
plugin context's ``broadcast_message``: the broker publishes to its subscribers directly,
with no loop-back client connection.

Listeners. amqtt's listeners are of its ``external`` type: `MqttListener` binds the MQTT
(and TLS) port itself, reads each connection's CONNECT and hands the connection to
``Broker.external_connected`` - MQTT 3.1.1 as it came, MQTT 5 through a `Mqtt5Translator`
(see `qiantang.adapters.broker.mqtt5_translation` for what MQTT 5 clients get). It also
closes a connection that sends no CONNECT within 30 s, which amqtt alone never does.

In process, not in a child process - measured with ``python bench/broker_baseline.py`` on a
shared 2-core machine. amqtt costs about 120-135 µs of CPU per QoS 1 message handed over
(60-65 µs at QoS 0); a bare amqtt relay costs about twice that (~260 / ~115 µs), since it
also writes every message to a subscriber. Moving a message to another process costs about
2 µs (msgspec-encoded batches of 500 over a pipe). So a child process would be cheap in IPC
and would give the broker a core of its own, but all it can win back is the platform's share
of the broker's core: with the pipeline estimated from BASELINES.md (msgspec decode ~1.2 µs,
a DuckDB append of ~10 points ~7 µs per message) roughly 10-15% at QoS 1. Against that it
costs: ``authenticate`` and the per-packet ACL calls crossing the process boundary (or an
ACL policy shipped to the child and kept in sync), a second place where acknowledged
messages can be lost, and a child to supervise. Revisit when the real pipeline takes a
larger share of the core; past one amqtt core, use the scale-out adapter (external broker).

Delivery guarantee. A PUBLISH is queued for handover before amqtt writes its PUBACK, so
`stop` hands every acknowledged message to ``on_messages``. A crash loses what is queued:
at most `batch_delay_s` of traffic plus the batch being delivered, unless the hooks are
slower than the broker (then the queue grows; see `BatchHandover`). QoS 2 publishes are
handed over when the PUBLISH arrives, so a retransmitted QoS 2 message can arrive twice
(Alink devices use QoS 0 and 1).

Working around amqtt 0.12. Every `keepalive_check_s` a housekeeping task

- closes connections silent for 1.5 x their keep-alive, as MQTT 3.1.1 requires: amqtt never
  does (Yakifo/amqtt issue #308: a device that loses power stays "connected" until the
  broker stops);
- removes the sessions amqtt keeps, in the "connected" state and so for ever, for refused
  connections (one per refused client id: a memory leak an attacker could drive).

And the plugin closes a live connection whose client id a *refused* clean-session CONNECT
reused: amqtt drops the live client's session and subscriptions before it authenticates the
newcomer, so the device would stay connected but receive no downlink. Closed, it reconnects
and subscribes again. An unauthenticated client that knows a device's client id can thus
still make it reconnect; fixing that needs amqtt to authenticate before touching sessions.

Other amqtt behaviour to know: a broker-side `publish` goes to each subscriber at the QoS
given to `publish`, not the lower of that and the subscription's; passwords must be UTF-8
(amqtt decodes them as strings; the hook gets them re-encoded); uplink is not relayed to
other MQTT subscribers (see `qiantang.ports.ingress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.broker import Broker  # type: ignore[import-untyped]

from qiantang.adapters.broker.amqtt_plugin import (
    LAST_PACKET_KEY,
    REFUSED_KEY,
    PluginBinding,
    QiantangBrokerPlugin,
    close_connection,
)
from qiantang.adapters.broker.handover import BatchHandover
from qiantang.adapters.broker.mqtt5_streams import MqttListener
from qiantang.domain.errors import InvalidInput
from qiantang.ports.ingress import (
    MESSAGES_IN,
    REQUIRED_COUNTERS,
    IngressError,
    IngressHooks,
)

__all__ = ["HANDOVER_ERRORS", "KEEPALIVE_TIMEOUTS", "AmqttIngress", "TlsConfig"]

logger = logging.getLogger(__name__)

#: Extra counter: hook calls (``on_messages`` / ``on_connection``) that raised.
HANDOVER_ERRORS = "handover_errors"
#: Extra counter: connections closed because their keep-alive lapsed.
KEEPALIVE_TIMEOUTS = "keepalive_timeouts"

_PLUGIN_PATH = f"{QiantangBrokerPlugin.__module__}.{QiantangBrokerPlugin.__qualname__}"
_KEEPALIVE_GRACE = 1.5  # MQTT 3.1.1 §3.1.2.10


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """A second, TLS listener on `port` (same host). `cafile` enables client certificates
    (optional: a client without one is still accepted and authenticates by password)."""

    certfile: Path
    keyfile: Path
    port: int = 8883
    cafile: Path | None = None


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_topic(topic: str, qos: int) -> None:
    if qos not in (0, 1, 2):
        raise InvalidInput.of("qos", "qos_range", "QoS must be 0, 1 or 2")
    if not topic or "+" in topic or "#" in topic:
        raise InvalidInput.of(
            "topic", "topic_name", "a topic to publish to is non-empty and has no wildcard"
        )


def _ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """As amqtt builds it for a TLS listener: client certificates optional."""
    context = ssl.create_default_context(
        ssl.Purpose.CLIENT_AUTH, cafile=str(tls.cafile) if tls.cafile else None
    )
    context.load_cert_chain(str(tls.certfile), str(tls.keyfile))
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


@dataclass(slots=True)
class _Running:
    broker: Any  # amqtt.broker.Broker
    binding: PluginBinding
    handover: BatchHandover
    watchdog: asyncio.Task[None]
    listeners: list[MqttListener]


# amqtt logs one INFO line per uplink message ("not allowed to publish"), because the plugin
# refuses to relay every device PUBLISH on purpose: keep its broker logger to warnings.
logging.getLogger("amqtt.broker").setLevel(logging.WARNING)


class AmqttIngress:
    """`MqttIngress` on an amqtt broker running in this process and event loop."""

    def __init__(
        self,
        hooks: IngressHooks,
        host: str = "127.0.0.1",
        port: int = 1883,
        tls: TlsConfig | None = None,
        batch_size: int = 500,
        batch_delay_s: float = 0.005,
        *,
        keepalive_check_s: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if batch_delay_s < 0:
            raise ValueError("batch_delay_s must not be negative")
        if keepalive_check_s <= 0:
            raise ValueError("keepalive_check_s must be positive")
        self._hooks = hooks
        self._host = host
        self._port = port
        self._tls = tls
        self._batch_size = batch_size
        self._batch_delay_s = batch_delay_s
        self._keepalive_check_s = keepalive_check_s
        self._counters: dict[str, int] = dict.fromkeys(REQUIRED_COUNTERS, 0)
        self._running: _Running | None = None
        self._last_handover: BatchHandover | None = None
        self._sends: set[asyncio.Future[Any]] = set()

    def _broker_config(self, binding: PluginBinding) -> dict[str, Any]:
        # "external": amqtt serves connections handed to it by `MqttListener` (its "bind"
        # is only the key amqtt registers an external listener under)
        listeners: dict[str, dict[str, Any]] = {
            "default": {"type": "external", "bind": _bind(self._host, self._port)},
        }
        if self._tls is not None:
            listeners["tls"] = {"type": "external", "bind": _bind(self._host, self._tls.port)}
        return {"listeners": listeners, "plugins": {_PLUGIN_PATH: {"binding": binding}}}

    def _listeners(self, broker: Any) -> list[MqttListener]:
        def handoff(name: str) -> Any:
            async def connected(reader: Any, writer: Any) -> None:
                await broker.external_connected(reader, writer, name)

            return connected

        found = [MqttListener(handoff("default"), self._host, self._port)]
        if self._tls is not None:
            found.append(
                MqttListener(handoff("tls"), self._host, self._tls.port, _ssl_context(self._tls))
            )
        return found

    async def start(self) -> None:
        """Bind the listeners and start accepting connections."""
        if self._running is not None:
            raise IngressError("the MQTT ingress is already running")
        self._counters = dict.fromkeys(REQUIRED_COUNTERS, 0)
        handover = BatchHandover(self._hooks, self._batch_size, self._batch_delay_s)
        binding = PluginBinding(self._hooks, handover, self._counters)
        broker: Any = None
        listeners: list[MqttListener] = []
        try:
            broker = Broker(self._broker_config(binding))
            binding.broker = broker
            await broker.start()
            for listener in self._listeners(broker):
                await listener.start()
                listeners.append(listener)
        except Exception as err:  # amqtt wraps bind and plugin errors in its own types
            for listener in listeners:
                await listener.close()
            if broker is not None:
                with contextlib.suppress(Exception):
                    await broker.shutdown()
            raise IngressError(
                f"cannot start the MQTT broker on {_bind(self._host, self._port)}: {err}"
            ) from err
        handover.start()
        watchdog = asyncio.create_task(
            self._housekeeping(binding), name="qiantang-ingress-housekeeping"
        )
        self._running = _Running(broker, binding, handover, watchdog, listeners)
        self._last_handover = handover
        logger.info("MQTT ingress listening on %s", _bind(self._host, self._port))

    async def stop(self) -> None:
        """Refuse new connections, close the broker, then deliver everything queued."""
        running, self._running = self._running, None
        if running is None:
            return
        running.binding.accepting = False
        running.watchdog.cancel()
        await asyncio.gather(running.watchdog, return_exceptions=True)
        for listener in running.listeners:
            await listener.close()
        try:
            await running.broker.shutdown()
        except Exception:
            logger.exception("amqtt broker shutdown failed; delivering what was queued")
        finally:
            running.binding.close_all()
            await running.handover.close()
        logger.info("MQTT ingress stopped")

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Queue `payload` for every client subscribed to `topic` (and keep it as the topic's
        retained message when `retain`)."""
        _check_topic(topic, qos)
        running = self._running
        if running is None or running.binding.context is None:
            raise IngressError("the MQTT ingress is not running")
        if retain:
            await running.binding.context.retain_message(topic, bytes(payload), qos)
        await running.binding.context.broadcast_message(topic, bytes(payload), qos)

    async def publish_to(self, client_id: str, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Send to one live connection through its amqtt protocol handler (not awaiting the
        client's acknowledgement)."""
        _check_topic(topic, qos)
        running = self._running
        if running is None:
            raise IngressError("the MQTT ingress is not running")
        entry = running.binding.live.get(client_id)
        handler = entry.handler if entry is not None else None
        if handler is None:
            return False
        task = asyncio.ensure_future(handler.mqtt_publish(topic, bytes(payload), qos, retain=False))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        return True

    def connected_count(self) -> int:
        """Client ids with a live, authenticated connection."""
        return len(self._running.binding.live) if self._running is not None else 0

    def counters(self) -> dict[str, int]:
        """Running totals since `start` (they survive `stop` until the next `start`)."""
        result = dict(self._counters)
        handover = self._last_handover
        result[MESSAGES_IN] = handover.messages_in if handover else 0
        result[HANDOVER_ERRORS] = handover.errors if handover else 0
        result.setdefault(KEEPALIVE_TIMEOUTS, 0)
        return result

    def session_count(self) -> int:
        """Sessions amqtt holds: live connections and persistent sessions not yet expired."""
        return len(self._running.broker.sessions) if self._running is not None else 0

    async def _housekeeping(self, binding: PluginBinding) -> None:
        """Every `keepalive_check_s`: expire silent connections, sweep refused sessions."""
        while True:
            await asyncio.sleep(self._keepalive_check_s)
            await self._expire_silent(binding)
            _sweep_refused(binding.broker)

    async def _expire_silent(self, binding: PluginBinding) -> None:
        """Close connections that sent nothing for 1.5 x their keep-alive."""
        now = asyncio.get_running_loop().time()
        for client_id, entry in list(binding.live.items()):
            keep_alive = entry.session.keep_alive
            if keep_alive <= 0 or entry.handler is None:
                continue
            silent = now - entry.session.attributes.get(LAST_PACKET_KEY, now)
            if silent > _KEEPALIVE_GRACE * keep_alive:
                entry.session.attributes[LAST_PACKET_KEY] = now  # once per lapse
                self._counters[KEEPALIVE_TIMEOUTS] = self._counters.get(KEEPALIVE_TIMEOUTS, 0) + 1
                logger.info(
                    "client %s silent for %.1f s, past 1.5 x its keep-alive: closing",
                    client_id,
                    silent,
                )
                await close_connection(entry.handler)


def _sweep_refused(broker: Any) -> None:
    """Forget the sessions amqtt 0.12 keeps for refused connections (marked by the plugin).

    amqtt stores a refused client's session in its session table in the "connected" state,
    so its session monitor never expires it: without this, every refused client id would
    stay in memory until the broker stops.
    """
    sessions = broker.sessions
    for client_id, (session, _handler) in list(sessions.items()):
        if session.attributes.get(REFUSED_KEY):
            del sessions[client_id]
