"""The Alink uplink: the platform's side of the MQTT ingress (`IngressHooks`).

Per message: parse the topic, check it is the session's own device, rate-limit, decode,
validate against the compiled thing model, queue for the store, reply on ``..._reply``
(unless the device sent ``sys.ack: 0``), and log the outcome in the device's message log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from qiantang.ports.ingress import Identity, InboundMessage, MqttIngress
from qiantang.protocols import alink
from qiantang.protocols.alink_topics import (
    AlinkCode,
    AlinkError,
    AlinkTopic,
    TopicKind,
    encode_reply,
    may_publish,
    may_subscribe,
    parse_topic,
)
from qiantang.services.alink_gateway_uplink import (
    gateway_request,
    pack_post,
    topic_matches,
    topic_owner,
)
from qiantang.services.commands import CommandService
from qiantang.services.device_auth import DeviceAuthenticator, DeviceContext
from qiantang.services.gateway import GatewayService, SubDevice, is_gateway
from qiantang.services.ingest import Accepted, IngestCore, Reading
from qiantang.services.ota import OtaService, upgrade_topic
from qiantang.services.rate_limit import RateLimiter
from qiantang.services.shadow import ShadowService, shadow_topic
from qiantang.services.sparkplug_uplink import SparkplugUplink, is_sparkplug
from qiantang.services.telemetry_state import DeviceStates, LogEntry, MessageLog
from qiantang.services.thingsboard_uplink import ThingsBoardUplink, is_thingsboard

__all__ = ["AlinkUplink"]

log = logging.getLogger(__name__)
_UPLINK = {TopicKind.PROPERTY_POST, TopicKind.EVENT_POST, TopicKind.HISTORY_POST}
#: Marks a deferred ThingsBoard message (its topics are not Alink topics).
_THINGSBOARD = AlinkTopic("", TopicKind.PROPERTY_POST, "", "")
_REPLIES = {TopicKind.PROPERTY_SET_REPLY, TopicKind.SERVICE_REPLY, TopicKind.RRPC_RESPONSE}
_LATER = {
    TopicKind.SHADOW_UPDATE,
    TopicKind.PACK_POST,
    TopicKind.TOPO_ADD,
    TopicKind.TOPO_DELETE,
    TopicKind.TOPO_GET,
    TopicKind.SESSION_LOGIN,
    TopicKind.SESSION_LOGOUT,
    TopicKind.SESSION_BATCH_LOGIN,
    TopicKind.SESSION_BATCH_LOGOUT,
    TopicKind.OTA_PROGRESS,
    TopicKind.OTA_INFORM,
}


class AlinkUplink:
    """Implements `IngressHooks` for Alink devices."""

    def __init__(
        self,
        authenticator: DeviceAuthenticator,
        core: IngestCore,
        states: DeviceStates,
        message_log: MessageLog,
        limiter: RateLimiter,
    ) -> None:
        self.authenticator = authenticator
        self.core = core
        self.states = states
        self.log = message_log
        self.limiter = limiter
        self.ingress: MqttIngress | None = None
        self.commands: CommandService | None = None
        self.shadows: ShadowService | None = None
        self.gateways: GatewayService | None = None
        self.ota: OtaService | None = None
        self.thingsboard: ThingsBoardUplink | None = None
        self.sparkplug: SparkplugUplink | None = None
        self._deferred: list[tuple[InboundMessage, AlinkTopic]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # replies go straight to the connection that asked, if it subscribed to them:
        # a broker-wide publish would scan every subscription of every device per reply
        self._subscriptions: dict[int, set[str]] = {}  # connection's device id -> filters
        self._client_device: dict[str, int] = {}  # client id -> connection's device id
        self._connections: dict[int, set[str]] = {}  # device id -> live client ids

    # --- IngressHooks ------------------------------------------------------------------------
    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> Identity | None:
        """Alink signature check against the registry (in a worker thread); a username with
        no password is a ThingsBoard access token."""
        if username and not password and "&" not in username and self.thingsboard is not None:
            identity = await asyncio.to_thread(self.authenticator.authenticate_token, username)
        else:
            identity = await asyncio.to_thread(
                self.authenticator.authenticate_mqtt, client_id, username, password
            )
        if identity is None:
            log.info("refused MQTT connect from %s (client id %.64s)", peer, client_id)
        return identity

    def may_publish(self, identity: Identity, topic: str) -> bool:
        """Only under the device's own topics (a gateway: also its sub-devices')."""
        if self.sparkplug is not None and is_sparkplug(topic):
            return self.sparkplug.may_publish(identity, topic)
        if self.thingsboard is not None and is_thingsboard(identity):
            return self.thingsboard.may_publish(identity, topic)
        if may_publish(topic, identity.product_key, identity.device_name):
            return True
        sub = self._sub_of(identity, topic)
        return sub is not None and may_publish(topic, sub.product_key, sub.device_name)

    def _sub_of(self, identity: Identity, topic: str) -> SubDevice | None:
        if self.gateways is None or not is_gateway(identity):
            return None
        owner = topic_owner(topic)
        return self.gateways.sub(identity.device_id, *owner) if owner else None

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        """Only under the device's own topics, wildcards included (a gateway: also under its
        sub-devices'). Subscribing to its shadow topic also delivers desired state the device
        has not applied yet."""
        if self.sparkplug is not None and is_sparkplug(topic_filter):
            return self.sparkplug.may_subscribe(identity, topic_filter)
        if self.thingsboard is not None and is_thingsboard(identity):
            return self.thingsboard.may_subscribe(identity, topic_filter)
        allowed = self._may_subscribe(identity, topic_filter)
        if allowed:
            self._subscriptions.setdefault(identity.device_id, set()).add(topic_filter)
        return allowed

    def _may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        allowed = may_subscribe(topic_filter, identity.product_key, identity.device_name)
        if not allowed:
            sub = self._sub_of(identity, topic_filter)
            return sub is not None and may_subscribe(topic_filter, sub.product_key, sub.device_name)
        if allowed and topic_filter == shadow_topic(identity.product_key, identity.device_name):
            self._soon(self._push_desired(identity))
        if allowed and topic_filter == upgrade_topic(identity.product_key, identity.device_name):
            self._soon(self._push_upgrades(identity))
        return allowed

    def _soon(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push_upgrades(self, identity: Identity) -> None:
        """Upgrades queued while the device was away, once it listens for them."""
        if self.ota is None or self.ingress is None:
            return
        await asyncio.sleep(0.05)  # let the broker register the subscription first
        pushes = await asyncio.to_thread(self.ota.pushes, [identity.device_id])
        for push in pushes:
            await self.ingress.publish(push.topic, push.payload, qos=1)
        await asyncio.to_thread(self.ota.mark_pushed, [p.job_id for p in pushes])

    async def _push_desired(self, identity: Identity) -> None:
        if self.shadows is None or self.ingress is None:
            return
        await asyncio.sleep(0.05)  # let the broker register the subscription first
        control = await asyncio.to_thread(self.shadows.pending_control, identity.device_id)
        if control is not None:
            topic = shadow_topic(identity.product_key, identity.device_name)
            await self.ingress.publish(topic, control, qos=1)

    async def on_connection(self, identity: Identity, client_id: str, connected: bool) -> None:
        """Online/offline; a change is logged once."""
        now = int(time.time() * 1000)
        # subscriptions are kept across reconnects: connection events reach us through the
        # handover queue and may arrive after the new session's SUBSCRIBE was already checked
        if connected:
            self._client_device[client_id] = identity.device_id
        # a device may hold several connections (different client ids): it goes offline, and a
        # gateway lets go of its sub-devices, only when the last one closes
        clients = self._connections.setdefault(identity.device_id, set())
        if connected:
            clients.add(client_id)  # a takeover reports the same client id again
        else:
            clients.discard(client_id)
            if clients:
                return
            del self._connections[identity.device_id]
        if self.sparkplug is not None:
            await self.sparkplug.connected(identity, client_id, connected)
        if self.thingsboard is not None and is_thingsboard(identity):
            self.thingsboard.connected(identity, client_id, connected)
        elif self.gateways is not None and is_gateway(identity):
            if connected:
                await asyncio.to_thread(self.gateways.load, identity.device_id)
            else:
                self.gateways.disconnected(identity.device_id)
        if self.states.connected(identity.device_id, now, connected):
            log.info(
                "device %s/%s %s",
                identity.product_key,
                identity.device_name,
                "online" if connected else "offline",
            )

    async def on_messages(self, batch: Sequence[InboundMessage]) -> None:
        """Validate a batch, store what passes, reply to each message."""
        await self.core.ensure_models(_product_of(m.identity) for m in batch)
        accepted = Accepted()
        if self.sparkplug is not None and any(is_sparkplug(m.topic) for m in batch):
            sparkplug = [m for m in batch if is_sparkplug(m.topic)]
            accepted.points += (await self.sparkplug.handle(sparkplug)).points
            batch = [m for m in batch if not is_sparkplug(m.topic)]
        replies: list[tuple[str, str, bytes]] = []  # (client id, topic, payload)
        self._deferred = []
        for message in batch:
            reply = self._handle(message, accepted)
            if reply is not None:
                replies.append((message.client_id, *reply))
        while self._deferred:  # handling one may defer another (a sub-device's shadow)
            deferred, self._deferred = self._deferred, []
            for message, topic in deferred:
                reply = await self._handle_later(message, topic, accepted)
                if reply is not None:
                    replies.append((message.client_id, *reply))
        await self.core.store_all(accepted.points, accepted.events)
        if self.ingress is not None:
            for client_id, reply_topic, payload in replies:
                if self._wants(client_id, reply_topic):
                    await self.ingress.publish_to(client_id, reply_topic, payload)

    def _wants(self, client_id: str, topic: str) -> bool:
        """Whether the connection subscribed to a filter matching `topic`."""
        device_id = self._client_device.get(client_id)
        filters = self._subscriptions.get(device_id, ()) if device_id is not None else ()
        return any(topic_matches(f, topic) for f in filters)

    # --- one message -------------------------------------------------------------------------
    def _handle(self, message: InboundMessage, sink: Accepted) -> tuple[str, bytes] | None:
        identity, now = message.identity, message.received_ms
        self.states.seen(identity.device_id, now)
        if self.thingsboard is not None and is_thingsboard(identity):
            self._deferred.append((message, _THINGSBOARD))
            return None
        try:
            topic = parse_topic(message.topic)
        except AlinkError as err:
            self._log(message, err.code, "rejected", err.reply_message())
            return None
        if (topic.product_key, topic.device_name) != (identity.product_key, identity.device_name):
            sub = self._sub_of(identity, message.topic)
            if sub is None:
                refused = AlinkError(AlinkCode.DEVICE_NOT_FOUND, "topic", "owner", "not yours")
                return self._error(message, topic, refused, None)
            message = _as(message, sub.identity())
            identity = message.identity
            if self.core.models.cached(sub.product_id) is None:
                self._deferred.append((message, topic))  # its model loads first
                return None
        if topic.kind in _REPLIES and self.commands is not None:
            hint = topic.identifier if topic.kind is TopicKind.RRPC_RESPONSE else None
            outcome = self.commands.on_reply(identity.device_id, message.payload, hint)
            self._log(message, AlinkCode.SUCCESS, "reply", outcome)
            return None
        if topic.kind in _LATER:
            self._deferred.append((message, topic))
            return None
        if topic.kind not in _UPLINK:
            return self._unsupported(message, topic)
        if not self.limiter.allow(identity.device_id, now):
            limited = AlinkError(AlinkCode.RATE_LIMITED, "", "rate", "too many messages")
            return self._error(message, topic, limited, None)
        try:
            result, request_id, ack = self._decode(message, topic)
        except AlinkError as err:
            return self._error(message, topic, err, err.request_id)
        sink.points.extend(result.points)
        sink.events.extend(result.events)
        return self._outcome(message, topic, result, request_id, ack)

    def _outcome(
        self, message: InboundMessage, topic: AlinkTopic, result: Accepted, rid: str, ack: bool
    ) -> tuple[str, bytes] | None:
        code = AlinkCode.BAD_PARAMS if result.errors else AlinkCode.SUCCESS
        outcome = "accepted" if not result.errors else ("partial" if result.points else "rejected")
        reason = result.reason()
        self._log(message, code, outcome, reason)
        if not ack or topic.reply_topic is None:
            return None
        text = reason if result.errors else "success"
        return topic.reply_topic, encode_reply(rid, code, message=text, method=topic.method)

    def _decode(self, message: InboundMessage, topic: AlinkTopic) -> tuple[Accepted, str, bool]:
        identity, now = message.identity, message.received_ms
        model = self.core.models.cached(_product_of(identity))
        device_id = identity.device_id
        if topic.kind is TopicKind.PROPERTY_POST:
            post = alink.decode_property_post(message.payload, now)
            readings: list[Reading] = [(r.identifier, r.value, r.ts) for r in post.properties]
            return self.core.properties(model, device_id, readings, now), post.id, post.ack
        if topic.kind is TopicKind.EVENT_POST:
            event = alink.decode_event_post(message.payload, now, topic.identifier or "")
            got = event.event
            return (
                self.core.event(model, device_id, got.identifier, got.output, got.ts),
                event.id,
                event.ack,
            )
        history = alink.decode_history_post(message.payload, now)
        merged = Accepted()
        for block in history.devices:
            if (block.product_key, block.device_name) != (
                identity.product_key,
                identity.device_name,
            ):
                raise AlinkError(
                    AlinkCode.DEVICE_NOT_FOUND,
                    "params.identity",
                    "own_device",
                    "history may only carry the device's own data",
                    history.id,
                )
            rows: list[Reading] = [(r.identifier, r.value, r.ts) for r in block.properties]
            part = self.core.properties(model, device_id, rows, now)
            for ev in block.events:
                evp = self.core.event(model, device_id, ev.identifier, ev.output, ev.ts)
                part.events.extend(evp.events)
                part.errors.extend(evp.errors)
            merged.points += part.points
            merged.events += part.events
            merged.errors += part.errors
        return merged, history.id, history.ack

    async def _handle_later(
        self, message: InboundMessage, topic: AlinkTopic, sink: Accepted
    ) -> tuple[str, bytes] | None:
        """Messages that need registry I/O or models not loaded yet."""
        if topic is _THINGSBOARD and self.thingsboard is not None:
            part = await self.thingsboard.handle(message)
            sink.points.extend(part.points)
            return None
        if topic.kind not in _LATER:  # a sub-device message whose model was not loaded
            await self.core.ensure_models([_product_of(message.identity)])
            if self.core.models.cached(_product_of(message.identity)) is None:
                gone = AlinkError(AlinkCode.DEVICE_NOT_FOUND, "product", "exists", "no product")
                return self._error(message, topic, gone, None)
            return self._handle(message, sink)
        if topic.kind is TopicKind.SHADOW_UPDATE:
            if self.shadows is None:
                return self._unsupported(message, topic)
            self._log(message, AlinkCode.SUCCESS, "shadow", "shadow request")
            return await asyncio.to_thread(
                self.shadows.device_request, message.identity, message.payload
            )
        if topic.kind in (TopicKind.OTA_PROGRESS, TopicKind.OTA_INFORM):
            return await self._ota_report(message, topic)
        if self.gateways is None:
            return self._unsupported(message, topic)
        try:
            if topic.kind is TopicKind.PACK_POST:
                result, rid, ack = await pack_post(self.core, self.gateways, message)
                sink.points.extend(result.points)
                sink.events.extend(result.events)
                return self._outcome(message, topic, result, rid, ack)
            payload = await asyncio.to_thread(
                gateway_request, self.gateways, topic.kind, message.identity, message.payload
            )
        except AlinkError as err:
            return self._error(message, topic, err, err.request_id)
        self._log(message, AlinkCode.SUCCESS, "accepted", "")
        return (topic.reply_topic or message.topic + "_reply"), payload

    async def _ota_report(
        self, message: InboundMessage, topic: AlinkTopic
    ) -> tuple[str, bytes] | None:
        if self.ota is None:
            return self._unsupported(message, topic)
        report = self.ota.progress if topic.kind is TopicKind.OTA_PROGRESS else self.ota.inform
        try:
            outcome = await asyncio.to_thread(report, message.identity, message.payload)
        except AlinkError as err:
            self._log(message, err.code, "rejected", err.reply_message())
            return None
        self._log(message, AlinkCode.SUCCESS, "accepted", outcome)
        return None

    def _error(
        self, message: InboundMessage, topic: AlinkTopic, err: AlinkError, request_id: str | None
    ) -> tuple[str, bytes] | None:
        self._log(message, err.code, "rejected", err.reply_message())
        if topic.reply_topic is None:
            return None
        payload = encode_reply(
            request_id or "", err.code, message=err.reply_message(), method=topic.method
        )
        return topic.reply_topic, payload

    def _unsupported(self, message: InboundMessage, topic: AlinkTopic) -> tuple[str, bytes] | None:
        err = AlinkError(
            AlinkCode.REQUEST_ERROR, "topic", "unsupported", f"{topic.kind} is not handled yet"
        )
        return self._error(message, topic, err, None)

    def _log(self, message: InboundMessage, code: int, outcome: str, reason: str) -> None:
        entry = LogEntry(
            message.received_ms, message.topic, int(code), outcome, reason, len(message.payload)
        )
        self.log.add(message.identity.device_id, entry)


def _as(message: InboundMessage, identity: Identity) -> InboundMessage:
    """The message as if its device had sent it (a gateway speaking for a sub-device)."""
    return InboundMessage(
        identity,
        message.client_id,
        message.topic,
        message.payload,
        message.qos,
        message.received_ms,
    )


def _product_of(identity: Identity) -> int:
    context = identity.extra
    assert isinstance(context, DeviceContext)
    return context.product_id
