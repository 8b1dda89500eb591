"""The embedded MQTT ingress (`AmqttIngress`) with real paho-mqtt clients over real sockets.

`FakePlatform` is the platform side of the port (`IngressHooks`), not a stand-in for a
third party: it knows two devices, lets each publish and subscribe under its own topics and
records what the ingress hands it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from qiantang.adapters.broker import AmqttIngress, TlsConfig
from qiantang.domain.errors import InvalidInput
from qiantang.ports.ingress import Identity, InboundMessage, IngressError, MqttIngress

PK = "a1Qiantang"
SECRETS = {"cnc-1": "secret-1", "cnc-2": "secret-2", "probe": "secret-probe"}
REFUSED_CONNACK = {"Not authorized", "Bad user name or password"}  # CONNACK rc 5 / rc 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `predicate()` holds, polling; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


class FakePlatform:
    """`IngressHooks` of a platform with the devices in `SECRETS`."""

    def __init__(self) -> None:
        self.batches: list[list[InboundMessage]] = []
        self.connections: list[tuple[str, str, bool]] = []  # (device, client id, connected)
        self.auth_calls: list[tuple[str, str | None, bytes | None, str]] = []
        self.fail_next_batch = False

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> Identity | None:
        self.auth_calls.append((client_id, username, password, peer))
        if username == "boom":
            raise RuntimeError("registry unavailable")
        name, _, product = (username or "").partition("&")
        secret = SECRETS.get(name)
        if product != PK or secret is None or password != secret.encode():
            return None
        return Identity(
            device_id=list(SECRETS).index(name) + 1,
            product_key=PK,
            device_name=name,
            enterprise_id=7,
            extra={"tier": "gold"},
        )

    def may_publish(self, identity: Identity, topic: str) -> bool:
        return topic.startswith(f"/{identity.product_key}/{identity.device_name}/")

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return topic_filter.startswith(f"/{identity.product_key}/{identity.device_name}/")

    async def on_messages(self, batch: Sequence[InboundMessage]) -> None:
        if self.fail_next_batch:
            self.fail_next_batch = False
            raise RuntimeError("store unavailable")
        self.batches.append(list(batch))

    async def on_connection(self, identity: Identity, client_id: str, connected: bool) -> None:
        self.connections.append((identity.device_name, client_id, connected))

    @property
    def messages(self) -> list[InboundMessage]:
        return [m for batch in self.batches for m in batch]

    def reset(self) -> None:
        self.batches.clear()
        self.connections.clear()
        self.auth_calls.clear()


class Device:
    """A paho-mqtt client (MQTT 3.1.1) in its own network thread, recording what it sees."""

    def __init__(
        self,
        port: int,
        name: str,
        password: str | None = None,
        *,
        client_id: str | None = None,
        keepalive: int = 60,
        tls_ca: Path | None = None,
    ) -> None:
        self.port = port
        self.keepalive = keepalive
        self.client_id = client_id or f"{name}|securemode=3,signmethod=hmacsha1|"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311
        )
        self.client.username_pw_set(
            f"{name}&{PK}", SECRETS.get(name) if password is None else password
        )
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.reconnect_delay_set(60, 120)  # no retries while a test looks
        self.connack: ReasonCode | None = None
        self.disconnected = threading.Event()
        self.subacks: dict[int, list[int]] = {}
        self.received: list[tuple[str, bytes, int]] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload, m.qos))
        self._started = False

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self.connack = reason_code

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: object,
    ) -> None:
        self.subacks[mid] = [rc.value for rc in reason_codes]

    async def connect(self) -> ReasonCode:
        """Connect and wait for the CONNACK."""
        self.client.connect_async("127.0.0.1", self.port, keepalive=self.keepalive)
        self.client.loop_start()
        self._started = True
        await eventually(lambda: self.connack is not None)
        assert self.connack is not None
        return self.connack

    async def subscribe(self, *filters: str) -> list[int]:
        """Subscribe (QoS 1) and wait for the SUBACK's return codes."""
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        await eventually(lambda: mid in self.subacks)
        return self.subacks[mid]

    async def publish_all(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        """Publish, and wait until each QoS 1 message is acknowledged (QoS 0: written)."""
        infos = [self.client.publish(topic, payload, qos) for topic, payload, qos in items]
        await eventually(lambda: all(i.is_published() for i in infos))

    def close(self) -> None:
        if self._started:
            self.client.disconnect()
            self.client.loop_stop()
            self._started = False
        sock = self.client.socket()
        if sock is not None:
            sock.close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
async def no_leftovers() -> AsyncIterator[None]:
    """Fail a test that leaves tasks or threads running (checked after every other fixture)."""
    threads_before = set(threading.enumerate())
    yield
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        if not tasks and not threads:
            return
        if loop.time() > deadline:
            pytest.fail(f"left running: tasks {tasks}, threads {threads}")
        await asyncio.sleep(0.01)


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


class Broker:
    """A started ingress, its port, and a factory of devices closed at teardown."""

    def __init__(self, ingress: AmqttIngress, port: int) -> None:
        self.ingress = ingress
        self.port = port
        self.devices: list[Device] = []

    def device(self, name: str, password: str | None = None, **kw: Any) -> Device:
        device = Device(self.port, name, password, **kw)
        self.devices.append(device)
        return device


async def _started(platform: FakePlatform, **kw: Any) -> Broker:
    port = free_port()
    ingress = AmqttIngress(platform, port=port, keepalive_check_s=0.2, **kw)
    await ingress.start()
    broker = Broker(ingress, port)
    # readiness: a full MQTT round trip with a probe device, then a clean slate
    probe = broker.device("probe")
    assert (await probe.connect()).getName() == "Success"
    probe.close()
    await eventually(lambda: ("probe", probe.client_id, False) in platform.connections)
    platform.reset()
    return broker


@pytest.fixture
async def broker(platform: FakePlatform) -> AsyncIterator[Broker]:
    broker = await _started(platform, batch_size=10, batch_delay_s=0.05)
    yield broker
    for device in broker.devices:
        device.close()
    await broker.ingress.stop()


def own(name: str, leaf: str = "thing/event/property/post") -> str:
    return f"/{PK}/{name}/{leaf}"


# --------------------------------------------------------------------------- tests


def test_adapter_implements_the_port(platform: FakePlatform) -> None:
    assert isinstance(AmqttIngress(platform), MqttIngress)


async def test_good_credentials_connect_and_report_online(
    broker: Broker, platform: FakePlatform
) -> None:
    device = broker.device("cnc-1")
    assert (await device.connect()).getName() == "Success"
    await eventually(lambda: len(platform.connections) == 1)
    assert platform.connections == [("cnc-1", device.client_id, True)]
    assert broker.ingress.connected_count() == 1
    client_id, username, password, peer = platform.auth_calls[0]
    assert (username, password) == (f"cnc-1&{PK}", b"secret-1")
    assert client_id.startswith("cnc-1|") and peer.startswith("127.0.0.1:")


async def test_bad_credentials_are_refused(broker: Broker, platform: FakePlatform) -> None:
    for device in (
        broker.device("cnc-1", "wrong-secret"),
        broker.device("intruder", "x"),
        broker.device("boom", "x"),  # the hook raises: refused, broker carries on
    ):
        assert (await device.connect()).getName() in REFUSED_CONNACK
    assert broker.ingress.counters()["connects_refused"] == 3
    assert broker.ingress.connected_count() == 0
    # amqtt keeps refused sessions for ever; the adapter's housekeeping sweeps them out
    await eventually(lambda: broker.ingress.session_count() == 0)
    good = broker.device("cnc-2")
    assert (await good.connect()).getName() == "Success"
    await eventually(lambda: len(platform.connections) == 1)
    assert [c[0] for c in platform.connections] == ["cnc-2"]


async def test_refused_connect_with_a_live_client_id_closes_the_live_connection(
    broker: Broker, platform: FakePlatform
) -> None:
    # amqtt drops the live client's session (and subscriptions) before authenticating a
    # clean-session CONNECT with its client id; left alone, the device would stay connected
    # but deaf to downlink. The adapter closes it so that it reconnects and resubscribes.
    device = broker.device("cnc-1", client_id="cnc-1")
    await device.connect()
    assert await device.subscribe(own("cnc-1", "thing/service/#")) == [1]
    intruder = broker.device("cnc-1", "guessed", client_id="cnc-1")
    assert (await intruder.connect()).getName() in REFUSED_CONNACK
    await eventually(device.disconnected.is_set)
    await eventually(lambda: [c[2] for c in platform.connections] == [True, False])
    again = broker.device("cnc-1", client_id="cnc-1")
    assert (await again.connect()).getName() == "Success"
    assert await again.subscribe(own("cnc-1", "thing/service/#")) == [1]
    await broker.ingress.publish(own("cnc-1", "thing/service/reboot"), b"{}", qos=1)
    await eventually(lambda: len(again.received) == 1)


async def test_messages_reach_on_messages_in_batches(
    broker: Broker, platform: FakePlatform
) -> None:
    one, two = broker.device("cnc-1"), broker.device("cnc-2")
    await one.connect()
    await two.connect()
    await one.publish_all([(own("cnc-1"), b'{"id":"%d"}' % i, i % 2) for i in range(25)])
    await two.publish_all([(own("cnc-2", "thing/event/alarm/post"), b"{}", 1)])
    await eventually(lambda: len(platform.messages) == 26)

    sizes = [len(b) for b in platform.batches]
    assert max(sizes) <= 10 and max(sizes) > 1  # batch_size=10, and really batched
    from_one = [m for m in platform.messages if m.identity.device_name == "cnc-1"]
    assert [m.payload for m in from_one] == [b'{"id":"%d"}' % i for i in range(25)]
    assert [m.qos for m in from_one] == [i % 2 for i in range(25)]
    assert {m.topic for m in from_one} == {own("cnc-1")}
    assert {m.client_id for m in from_one} == {one.client_id}
    assert from_one[0].identity == Identity(1, PK, "cnc-1", 7, {"tier": "gold"})
    (from_two,) = [m for m in platform.messages if m.identity.device_name == "cnc-2"]
    assert from_two.topic == own("cnc-2", "thing/event/alarm/post")
    assert from_two.identity.device_id == 2
    assert all(m.received_ms > 1_600_000_000_000 for m in platform.messages)
    assert broker.ingress.counters()["messages_in"] == 26


async def test_refused_publish_is_dropped_counted_and_connection_survives(
    broker: Broker, platform: FakePlatform
) -> None:
    device = broker.device("cnc-1")
    await device.connect()
    await device.publish_all([(own("cnc-2"), b"spoofed", 1), ("/elsewhere", b"x", 0)])
    await device.publish_all([(own("cnc-1"), b"mine", 1)])  # PUBACKed after the refused ones
    await eventually(lambda: len(platform.messages) == 1)
    assert [m.payload for m in platform.messages] == [b"mine"]
    assert broker.ingress.counters()["publishes_dropped"] == 2
    assert not device.disconnected.is_set()
    assert broker.ingress.connected_count() == 1
    assert [c[2] for c in platform.connections] == [True]


async def test_publish_to_a_malformed_topic_closes_the_connection(
    broker: Broker, platform: FakePlatform
) -> None:
    device = broker.device("cnc-1")
    await device.connect()
    device.client.publish("$SYS/broker/uptime", b"1", 1)
    await eventually(device.disconnected.is_set)
    await eventually(lambda: len(platform.connections) == 2)
    assert [c[2] for c in platform.connections] == [True, False]
    assert broker.ingress.counters()["publishes_dropped"] == 1
    assert platform.messages == []


async def test_last_will_is_not_sent(broker: Broker, platform: FakePlatform) -> None:
    listener, victim = broker.device("cnc-2"), broker.device("cnc-1")
    victim.client.will_set(own("cnc-2", "thing/service/property/set"), b"forged", 1)
    await listener.connect()
    assert await listener.subscribe(own("cnc-2", "thing/service/#")) == [1]
    await victim.connect()
    victim.client.loop_stop()
    victim.client.socket().close()  # abnormal disconnect: amqtt would publish the will now
    await eventually(lambda: ("cnc-1", victim.client_id, False) in platform.connections)
    await broker.ingress.publish(own("cnc-2", "thing/service/marker"), b"after", qos=1)
    await eventually(lambda: len(listener.received) == 1)  # the broadcast queue is FIFO
    assert listener.received == [(own("cnc-2", "thing/service/marker"), b"after", 1)]


async def test_refused_subscribe_gets_0x80(broker: Broker, platform: FakePlatform) -> None:
    device = broker.device("cnc-1")
    await device.connect()
    codes = await device.subscribe(own("cnc-1", "thing/service/+"), own("cnc-2", "#"), "#")
    assert codes == [1, 0x80, 0x80]
    assert broker.ingress.counters()["subscribes_refused"] == 2
    assert not device.disconnected.is_set()


async def test_broker_side_publish_reaches_the_subscribed_client(
    broker: Broker, platform: FakePlatform
) -> None:
    one, two = broker.device("cnc-1"), broker.device("cnc-2")
    await one.connect()
    await two.connect()
    assert await one.subscribe(own("cnc-1", "thing/service/property/set")) == [1]
    assert await two.subscribe(own("cnc-2", "thing/service/+")) == [1]
    await broker.ingress.publish(own("cnc-1", "thing/service/property/set"), b'{"on":1}', qos=1)
    await broker.ingress.publish(own("cnc-2", "thing/service/reboot"), b"{}", qos=0)
    await eventually(lambda: len(one.received) == 1 and len(two.received) == 1)
    assert one.received == [(own("cnc-1", "thing/service/property/set"), b'{"on":1}', 1)]
    assert two.received == [(own("cnc-2", "thing/service/reboot"), b"{}", 0)]
    with pytest.raises(InvalidInput):
        await broker.ingress.publish(own("cnc-1", "#"), b"x")
    with pytest.raises(InvalidInput):
        await broker.ingress.publish(own("cnc-1"), b"x", qos=3)


async def test_a_retained_publish_reaches_later_subscribers(
    broker: Broker, platform: FakePlatform
) -> None:
    topic = own("cnc-1", "thing/service/property/set")
    await broker.ingress.publish(topic, b'{"state":"on"}', qos=1, retain=True)
    await broker.ingress.publish(own("cnc-2", "thing/service/x"), b"gone", qos=1)  # not kept
    one, two = broker.device("cnc-1"), broker.device("cnc-2")
    await one.connect()
    await two.connect()
    assert await one.subscribe(topic) == [1]
    assert await two.subscribe(own("cnc-2", "thing/service/+")) == [1]
    await eventually(lambda: len(one.received) == 1)
    assert one.received[0][:2] == (topic, b'{"state":"on"}')
    await broker.ingress.publish(topic, b"", qos=1, retain=True)  # clears the retained one
    await eventually(lambda: len(one.received) == 2)
    three = broker.device("cnc-1")
    await three.connect()
    assert await three.subscribe(topic) == [1]
    await broker.ingress.publish(topic, b"live", qos=1)
    await eventually(lambda: len(three.received) == 1)
    assert three.received[0][1] == b"live"
    assert two.received == []


async def test_publish_to_reaches_only_that_connection(
    broker: Broker, platform: FakePlatform
) -> None:
    one, two = broker.device("cnc-1"), broker.device("cnc-2")
    await one.connect()
    await two.connect()
    assert await one.subscribe(own("cnc-1", "rpc/#")) == [1]
    assert await two.subscribe(own("cnc-2", "rpc/#")) == [1]
    assert await broker.ingress.publish_to(one.client_id, own("cnc-1", "rpc/1"), b"only-one", 1)
    await eventually(lambda: len(one.received) == 1)
    assert one.received == [(own("cnc-1", "rpc/1"), b"only-one", 1)]
    assert two.received == []
    assert not await broker.ingress.publish_to("nobody", own("cnc-1", "rpc/2"), b"x")


async def test_uplink_is_not_relayed_to_subscribers(broker: Broker, platform: FakePlatform) -> None:
    device = broker.device("cnc-1")
    await device.connect()
    assert await device.subscribe(own("cnc-1", "#")) == [1]
    await device.publish_all([(own("cnc-1"), b"up", 1)])
    await broker.ingress.publish(own("cnc-1", "down"), b"down", qos=1)
    await eventually(lambda: len(device.received) == 1 and len(platform.messages) == 1)
    assert device.received == [(own("cnc-1", "down"), b"down", 1)]


async def test_disconnect_reports_offline(broker: Broker, platform: FakePlatform) -> None:
    device = broker.device("cnc-1")
    await device.connect()
    await device.publish_all([(own("cnc-1"), b"last words", 1)])
    device.close()
    await eventually(lambda: len(platform.connections) == 2)
    client_id = device.client_id
    assert platform.connections == [("cnc-1", client_id, True), ("cnc-1", client_id, False)]
    assert [m.payload for m in platform.messages] == [b"last words"]
    assert broker.ingress.connected_count() == 0


async def test_keepalive_expiry_reports_offline(broker: Broker, platform: FakePlatform) -> None:
    device = broker.device("cnc-1", keepalive=1)
    await device.connect()
    await eventually(lambda: len(platform.connections) == 1)
    device.client.loop_stop()  # the socket stays open, but no PINGREQ goes out any more
    await eventually(lambda: len(platform.connections) == 2, timeout=10)
    assert platform.connections[-1][2] is False
    assert broker.ingress.counters()["keepalive_timeouts"] == 1
    assert broker.ingress.connected_count() == 0


async def test_takeover_by_same_client_id_keeps_device_online(
    broker: Broker, platform: FakePlatform
) -> None:
    first = broker.device("cnc-1", client_id="cnc-1")
    await first.connect()
    second = broker.device("cnc-1", client_id="cnc-1")
    assert (await second.connect()).getName() == "Success"
    await eventually(first.disconnected.is_set)
    await second.publish_all([(own("cnc-1"), b"after takeover", 1)])
    await eventually(lambda: len(platform.messages) == 1)
    await broker.ingress.stop()  # flushes every pending connection change
    states = [c[2] for c in platform.connections]
    assert states[-1] is False and states[:-1] and states[-2] is True  # online until stop
    assert states.count(False) == 1


async def test_hook_failure_is_counted_and_later_batches_still_flow(
    broker: Broker, platform: FakePlatform
) -> None:
    device = broker.device("cnc-1")
    await device.connect()
    platform.fail_next_batch = True
    await device.publish_all([(own("cnc-1"), b"lost", 1)])
    await eventually(lambda: broker.ingress.counters()["handover_errors"] == 1)
    await device.publish_all([(own("cnc-1"), b"kept", 1)])
    await eventually(lambda: len(platform.messages) == 1)
    assert [m.payload for m in platform.messages] == [b"kept"]


async def test_stop_delivers_every_acknowledged_message(platform: FakePlatform) -> None:
    # batches that would not leave by themselves within the test: only stop() can flush them
    broker = await _started(platform, batch_size=10_000, batch_delay_s=600)
    device = broker.device("cnc-1")
    try:
        await device.connect()
        payloads = [b'{"seq":%d}' % i for i in range(300)]
        await device.publish_all([(own("cnc-1"), p, 1) for p in payloads])  # all PUBACKed
        assert platform.messages == []
        await broker.ingress.stop()
        assert [m.payload for m in platform.messages] == payloads
        assert platform.connections[-1][2] is False
        assert broker.ingress.connected_count() == 0
        await eventually(device.disconnected.is_set)
    finally:
        device.close()
        await broker.ingress.stop()  # a second stop is a no-op


async def test_lifecycle_errors(platform: FakePlatform) -> None:
    port = free_port()
    ingress = AmqttIngress(platform, port=port)
    with pytest.raises(IngressError):
        await ingress.publish("/a/b", b"x")
    await ingress.stop()  # before start: nothing to do
    await ingress.start()
    try:
        with pytest.raises(IngressError):
            await ingress.start()
        with pytest.raises(IngressError):
            await AmqttIngress(platform, port=port).start()  # port taken
    finally:
        await ingress.stop()


OPENSSL_SELF_SIGNED = (
    "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    " -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost"
)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = [openssl, *OPENSSL_SELF_SIGNED.split(), "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


async def test_tls_listener(platform: FakePlatform, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    tls_port = free_port()
    broker = await _started(platform, tls=TlsConfig(certfile=cert, keyfile=key, port=tls_port))
    device = Device(tls_port, "cnc-1", tls_ca=cert)
    try:
        assert (await device.connect()).getName() == "Success"
        await device.publish_all([(own("cnc-1"), b"over tls", 1)])
        await eventually(lambda: len(platform.messages) == 1)
        assert platform.messages[0].payload == b"over tls"
    finally:
        device.close()
        await broker.ingress.stop()


async def test_failed_start_releases_the_ports(
    platform: FakePlatform, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        tls = TlsConfig(certfile=cert, keyfile=key, port=taken.getsockname()[1])
        with pytest.raises(IngressError):
            await AmqttIngress(platform, port=port, tls=tls).start()
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # the plain listener was closed again
