"""The gateway's MQTT session with the platform (aiomqtt, over paho-mqtt).

aiomqtt is asyncio-native, so the uplink shares one event loop with the asyncua and pymodbus
clients; it is a thin layer over paho-mqtt, which the project already trusts, and its
``publish`` at QoS 1 returns only after the broker's PUBACK. `AlinkSession` adds Alink
request/reply matching by message id and the gateway handshake: topology add, batch login,
downlink subscriptions.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiomqtt

from qiantang.edge.alink_messages import (
    GatewayTopics,
    Reply,
    downlink_filters,
    encode_request,
    history_topic,
    parse_reply,
)
from qiantang.edge.config import DeviceConfig, GatewayConfig, UplinkConfig
from qiantang.edge.errors import UplinkError
from qiantang.protocols.alink_auth import make_credentials
from qiantang.protocols.alink_gateway import make_sub_device_auth

__all__ = ["AlinkSession", "DownlinkCallback", "RefusedError", "ReplyCallback", "mqtt_client"]

DownlinkCallback = Callable[[str, bytes], None]
ReplyCallback = Callable[[str, Reply], Awaitable[None]]
_CHUNK = 50  # sub-devices per topology / login request


def mqtt_client(config: UplinkConfig, client_id: str | None = None) -> aiomqtt.Client:
    """A client signed in as the gateway device (connect with ``async with``); `client_id`
    defaults to ``{productKey}.{deviceName}``."""
    secure_mode = 2 if config.tls.enabled else 3
    mqtt_id, username, password = make_credentials(
        config.product_key,
        config.device_name,
        config.device_secret.get_secret_value(),
        client_id=client_id,
        timestamp=int(time.time() * 1000),
        secure_mode=secure_mode,
    )
    tls: ssl.SSLContext | None = None
    if config.tls.enabled:
        tls = ssl.create_default_context(
            cafile=str(config.tls.ca_file) if config.tls.ca_file else None
        )
        if config.tls.cert_file:
            tls.load_cert_chain(config.tls.cert_file, config.tls.key_file)
        tls.check_hostname = not config.tls.insecure
    return aiomqtt.Client(
        config.host,
        config.port,
        identifier=mqtt_id,
        username=username,
        password=password,
        keepalive=config.keepalive_s,
        clean_session=True,
        tls_context=tls,
        timeout=config.reply_timeout_s,
    )


class AlinkSession:
    """One connection: requests with replies, publishes, and the incoming-message loop."""

    def __init__(self, client: aiomqtt.Client, config: GatewayConfig) -> None:
        self.client = client
        self.config = config
        self.topics = GatewayTopics(config.uplink.product_key, config.uplink.device_name)
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._next_id = int(time.time()) % 1_000_000 * 1000
        self.on_reply: ReplyCallback | None = None
        self.refused: dict[str, str] = {}
        """Sub-devices the platform would not add to the topology, and why."""
        self.on_downlink: DownlinkCallback | None = None

    def new_id(self) -> str:
        """A fresh message id."""
        self._next_id = (self._next_id + 1) % 4_000_000_000
        return str(self._next_id)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for PUBACK."""
        try:
            await self.client.publish(topic, payload, qos=1)
        except aiomqtt.MqttError as err:
            raise UplinkError(f"publish to {topic} failed: {err}") from err

    async def request(self, topic: str, method: str, params: Any) -> Reply:
        """Publish a request and wait for its reply; a non-200 code raises `UplinkError`."""
        msg_id = self.new_id()
        with self._expect(msg_id) as reply:
            await self.publish(topic, encode_request(msg_id, method, params))
            try:
                answer = await asyncio.wait_for(reply, self.config.uplink.reply_timeout_s)
            except TimeoutError as err:
                raise UplinkError(f"no reply to {method} in time") from err
        if answer.code != 200:
            raise RefusedError(f"{method} refused: {answer.code} {answer.message}")
        return answer

    @contextmanager
    def _expect(self, msg_id: str) -> Iterator[asyncio.Future[Reply]]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        try:
            yield future
        finally:
            self._waiting.pop(msg_id, None)

    async def subscribe(self, filters: list[str]) -> None:
        """Subscribe at QoS 1; a refused filter raises `UplinkError`."""
        try:
            granted = await self.client.subscribe([(f, 1) for f in filters])
        except aiomqtt.MqttError as err:
            raise UplinkError(f"subscribe failed: {err}") from err
        for topic_filter, code in zip(filters, granted, strict=False):
            if _granted(code) >= 0x80:
                raise UplinkError(f"subscription to {topic_filter} refused")

    async def handshake(self) -> set[str]:
        """Reply topics, topology add, batch login, then the sub-devices' downlink topics.

        Returns the sub-devices the platform admitted. The platform adds a topology batch
        all or nothing, so a refused batch is retried one device at a time: a sub-device
        with a wrong secret (or unknown, or disabled) is left out and reported, and the
        others go on."""
        t = self.topics
        own = [f"{t.topo_add}_reply", f"{t.batch_login}_reply", f"{t.pack_post}_reply"]
        await self.subscribe([*own, f"{history_topic(self.config.uplink.key)}_reply"])
        devices = list(self.config.devices)
        admitted: list[DeviceConfig] = []
        for start in range(0, len(devices), _CHUNK):
            admitted += await self._admit(devices[start : start + _CHUNK])
        for start in range(0, len(admitted), _CHUNK):
            auths = [_auth(d) for d in admitted[start : start + _CHUNK]]
            await self.request(t.batch_login, "combine.batch.login", {"deviceList": auths})
        for d in admitted:
            await self.subscribe([f"{history_topic(d.key)}_reply", *downlink_filters(d.key)])
        return {d.key for d in admitted}

    async def _admit(self, chunk: list[DeviceConfig]) -> list[DeviceConfig]:
        try:
            await self.request(self.topics.topo_add, "thing.topo.add", [_auth(d) for d in chunk])
            return chunk
        except RefusedError as err:
            if len(chunk) == 1:
                self.refused[chunk[0].key] = str(err)
                return []
        admitted = []
        for device in chunk:
            admitted += await self._admit([device])
        return admitted

    async def dispatch(self) -> None:
        """Route incoming messages until the connection drops (raises `UplinkError`)."""
        try:
            async for message in self.client.messages:
                await self._route(str(message.topic), _payload(message.payload))
        except aiomqtt.MqttError as err:
            raise UplinkError(f"connection lost: {err}") from err
        raise UplinkError("connection closed")

    async def _route(self, topic: str, payload: bytes) -> None:
        if "/thing/service/" in topic and topic.endswith("_reply"):
            return  # our own answer to a downlink request, echoed by the broker
        if topic.endswith("_reply"):
            reply = parse_reply(payload)
            if reply is None:
                return
            future = self._waiting.get(reply.id)
            if future is not None and not future.done():
                future.set_result(reply)
            elif self.on_reply is not None:
                await self.on_reply(topic, reply)
            return
        if self.on_downlink is not None:
            self.on_downlink(topic, payload)


class RefusedError(UplinkError):
    """The platform answered a request with an error code."""


def _auth(device: DeviceConfig) -> dict[str, str]:
    stamp = str(int(time.time() * 1000))
    secret = device.device_secret.get_secret_value()
    return make_sub_device_auth(device.product_key, device.device_name, secret, stamp)


def _granted(code: object) -> int:
    if isinstance(code, int):
        return code
    value = getattr(code, "value", 0x80)
    return value if isinstance(value, int) else 0x80


def _payload(raw: Any) -> bytes:
    if isinstance(raw, bytes | bytearray):
        return bytes(raw)
    return str(raw).encode() if raw is not None else b""
