"""The MQTT side of `bench/ingest.py`: a lean MQTT 3.1.1 client on raw asyncio sockets (one
`asyncio.Protocol` per connection, so one process drives thousands of devices), publisher and
idle-connection worker processes, a counting subscriber, and a bare amqtt relay broker.

Why not paho-mqtt: one paho client needs a network thread, so a process cannot hold 1,000 or
5,000 device connections, and one paho process tops out near 15,000 msgs/s (BASELINES.md).
This client speaks exactly what the bench needs: CONNECT/CONNACK, PUBLISH (QoS 0/1) with a
bounded in-flight window per connection, PUBACK, SUBSCRIBE/SUBACK, PINGREQ, DISCONNECT.

Every loop here is bounded in count and time; everything connects to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from qiantang.protocols.alink_auth import make_credentials

__all__ = [
    "PubResult",
    "PubSpec",
    "make_payloads",
    "publisher_main",
    "relay_broker_main",
    "subscriber_main",
]

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 15.0  # after the run, wait at most this long for outstanding PUBACKs
GO_TIMEOUT_S = 300.0  # a worker waits at most this long for the start signal
TICK_S = 0.005  # pacing tick of a rate-limited publisher
SUB_IDLE_S = 15.0  # a subscriber that has received nothing this long stops counting
MAX_BUFFERED = 256 * 1024  # a connection with more unsent bytes than this counts as blocked
CTX = mp.get_context("spawn")


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --------------------------------------------------------------------------- packets


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id: str, username: str, password: str, keepalive: int) -> bytes:
    flags = 0x80 | 0x40 | 0x02  # username, password, clean session
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive.to_bytes(2, "big")
    body += _str(client_id.encode()) + _str(username.encode()) + _str(password.encode())
    return b"\x10" + _varint(len(body)) + body


def subscribe_packet(pid: int, topic_filter: str, qos: int) -> bytes:
    body = pid.to_bytes(2, "big") + _str(topic_filter.encode()) + bytes([qos])
    return b"\x82" + _varint(len(body)) + body


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


# --------------------------------------------------------------------------- the client


class MqttClient(asyncio.Protocol):
    """One MQTT connection. Publishing is synchronous (`publish` writes at once); the PUBACKs
    that come back free the in-flight window; `on_ack` (if set) is called after each."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.suback: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.inflight = 0
        self.published = 0
        self.acked = 0
        self.received = 0  # PUBLISH packets received (subscriber)
        self.first_rx = 0.0
        self.last_rx = 0.0
        self._pid = itertools.cycle(range(1, 65536))
        self.on_ack: Any = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
                fut.exception()  # retrieved here: nobody may be waiting for it
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        acks = 0
        while end - pos >= 2:
            kind = buf[pos]
            i, length, mult, complete = pos + 1, 0, 1, False
            while i < end and i < pos + 5:
                byte = buf[i]
                i += 1
                length += (byte & 0x7F) * mult
                mult *= 128
                if not byte & 0x80:
                    complete = True
                    break
            if not complete or i + length > end:
                break  # an incomplete packet: wait for more bytes
            body_start, pos = i, i + length
            ptype = kind & 0xF0
            if ptype == 0x40:  # PUBACK
                acks += 1
            elif ptype == 0x30:  # PUBLISH (subscriber side)
                self._on_publish(kind, buf, body_start)
            elif ptype == 0x20 and not self.connack.done():
                self.connack.set_result(buf[body_start + 1])
            elif ptype == 0x90 and not self.suback.done():
                self.suback.set_result(buf[body_start + 2])
        del buf[:pos]
        if acks:
            self.inflight -= acks
            self.acked += acks
            if self.on_ack is not None:
                self.on_ack(self)

    def _on_publish(self, kind: int, buf: bytearray, start: int) -> None:
        now = time.time()
        if not self.received:
            self.first_rx = now
        self.received += 1
        self.last_rx = now
        qos = (kind >> 1) & 3
        if qos and self.transport is not None:
            tlen = int.from_bytes(buf[start : start + 2], "big")
            pid = bytes(buf[start + 2 + tlen : start + 4 + tlen])
            self.transport.write(b"\x40\x02" + pid)

    # publishing
    def can_publish(self) -> bool:
        t = self.transport
        if t is None or t.is_closing():
            return False
        return self.inflight < self.window and t.get_write_buffer_size() < MAX_BUFFERED

    def publish(self, topic: bytes, payload: bytes, qos: int) -> None:
        assert self.transport is not None
        if qos:
            pid = next(self._pid)
            body_len = len(topic) + 4 + len(payload)
            head = bytes([0x32]) + _varint(body_len) + len(topic).to_bytes(2, "big") + topic
            self.transport.write(head + pid.to_bytes(2, "big") + payload)
            self.inflight += 1
        else:
            body_len = len(topic) + 2 + len(payload)
            head = b"\x30" + _varint(body_len) + len(topic).to_bytes(2, "big") + topic
            self.transport.write(head + payload)
        self.published += 1

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(DISCONNECT)
            self.transport.close()


async def open_client(
    port: int, client_id: str, username: str, password: str, window: int, keepalive: int
) -> MqttClient:
    """Connect and wait for CONNACK; raise ConnectionError unless it accepts."""
    loop = asyncio.get_running_loop()
    _transport, client = await asyncio.wait_for(
        loop.create_connection(lambda: MqttClient(window), LOOPBACK, port), CONNECT_TIMEOUT_S
    )
    assert client.transport is not None
    client.transport.write(connect_packet(client_id, username, password, keepalive))
    try:
        rc = await asyncio.wait_for(client.connack, CONNECT_TIMEOUT_S)
    except (TimeoutError, ConnectionError):
        client.transport.close()
        raise
    if rc != 0:
        client.transport.close()
        raise ConnectionError(f"CONNACK {rc}")
    return client


# --------------------------------------------------------------------------- payloads


def make_payloads(props: int, variants: int = 16) -> list[tuple[bytes, bytes]]:
    """Alink property-post bodies of `props` double properties, split around p0's value and
    the message id: ``head % (id) + p0 + tail``. p0 carries the send time in ms."""
    out = []
    for v in range(variants):
        rest = b"".join(
            b',"p%d":%d.%d' % (i, 20 + (i + v) % 60, (i * 7 + v) % 10) for i in range(1, props)
        )
        head = b'{"id":"%d","version":"1.0","params":{"p0":'
        tail = rest + b'},"method":"thing.event.property.post","sys":{"ack":0}}'
        out.append((head, tail))
    return out


# --------------------------------------------------------------------------- workers


@dataclass
class PubSpec:
    """One worker process's share of the devices and what to do with them."""

    port: int
    product_key: str
    devices: list[tuple[str, str]]  # (device name, secret)
    props: int = 1
    qos: int = 1
    window: int = 8  # unacknowledged QoS 1 messages per connection
    rate: float = 0.0  # messages/s for this process; 0 = as fast as the windows allow
    seconds: float = 10.0  # publish this long (with `count`: at most this long)
    count: int = 0  # as-fast-as-possible mode: stop after this many messages (0: no limit)
    keepalive: int = 120
    connect_concurrency: int = 64
    idle: bool = False  # only connect and hold (the connections scenario)
    hold_s: float = 60.0  # idle: hold at most this long after `go`


@dataclass
class PubResult:
    """What a worker did (monotonic times are per process; wall times compare across)."""

    connected: int = 0
    connect_failed: int = 0
    connect_s: float = 0.0
    published: int = 0
    acked: int = 0
    behind: int = 0  # messages due (paced mode) but not sent: every window was full
    start_wall: float = 0.0
    end_wall: float = 0.0  # when the last message was written
    drained_wall: float = 0.0  # when the last PUBACK came back (or the drain gave up)
    cpu_s: float = 0.0  # this worker's CPU time while publishing
    errors: list[str] = field(default_factory=list)


async def _connect_all(spec: PubSpec, result: PubResult) -> list[tuple[MqttClient, bytes]]:
    sem = asyncio.Semaphore(spec.connect_concurrency)
    pk = spec.product_key

    async def one(name: str, secret: str) -> tuple[MqttClient, bytes] | None:
        client_id, username, password = make_credentials(pk, name, secret)
        async with sem:
            try:
                c = await open_client(
                    spec.port, client_id, username, password, spec.window, spec.keepalive
                )
            except (OSError, TimeoutError, ConnectionError) as err:
                result.connect_failed += 1
                if len(result.errors) < 5:
                    result.errors.append(f"connect {name}: {err!r}")
                return None
        return c, f"/sys/{pk}/{name}/thing/event/property/post".encode()

    begin = time.monotonic()
    got = await asyncio.gather(*(one(n, s) for n, s in spec.devices))
    result.connect_s = time.monotonic() - begin
    clients = [g for g in got if g is not None]
    result.connected = len(clients)
    return clients


async def _wait_event(event: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not event.is_set():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


class _Sender:
    """Builds and sends messages round-robin over the connections."""

    def __init__(self, spec: PubSpec, clients: list[tuple[MqttClient, bytes]]) -> None:
        self.spec = spec
        self.clients = clients
        self.payloads = make_payloads(spec.props)
        self.seq = 0
        self.index = 0
        self.stopped = False

    def send(self, client: MqttClient, topic: bytes) -> None:
        seq = self.seq
        self.seq += 1
        head, tail = self.payloads[seq & 15]
        body = head % (seq % 4_000_000_000) + b"%d.0" % (time.time_ns() // 1_000_000) + tail
        client.publish(topic, body, self.spec.qos)

    def send_next(self) -> bool:
        """Send one message on the next connection that may publish; False if none may."""
        n = len(self.clients)
        for _ in range(n):
            client, topic = self.clients[self.index]
            self.index = (self.index + 1) % n
            if client.can_publish():
                self.send(client, topic)
                return True
        return False


async def _run_paced(spec: PubSpec, sender: _Sender, result: PubResult) -> None:
    sent = 0
    begin = time.monotonic()
    deadline = begin + spec.seconds
    while (now := time.monotonic()) < deadline:
        due = int((now - begin) * spec.rate)
        while sent < due:
            if not sender.send_next():
                break
            sent += 1
        await asyncio.sleep(TICK_S)
    result.behind = max(0, int(spec.seconds * spec.rate) - sent)


async def _run_max(spec: PubSpec, sender: _Sender, result: PubResult) -> None:
    topics = {id(c): t for c, t in sender.clients}

    limit = spec.count or 1 << 62

    def refill(client: MqttClient) -> None:
        if sender.stopped:
            return
        topic = topics[id(client)]
        while client.can_publish():
            if sender.seq >= limit:
                sender.stopped = True
                return
            sender.send(client, topic)

    for client, _topic in sender.clients:
        client.on_ack = refill
        refill(client)
    deadline = time.monotonic() + spec.seconds
    while not sender.stopped and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    sender.stopped = True


async def _publisher(spec: PubSpec, ready: Any, go: Any, out: Any) -> None:
    result = PubResult()
    clients = await _connect_all(spec, result)
    ready.put(("ready", result.connected, result.connect_failed, result.connect_s))
    if not await _wait_event(go, GO_TIMEOUT_S):
        result.errors.append("no start signal")
    elif spec.idle:
        await _hold(spec, clients, go)
    else:
        sender = _Sender(spec, clients)
        result.start_wall = time.time()
        cpu0 = time.process_time()
        if spec.rate > 0:
            await _run_paced(spec, sender, result)
        else:
            await _run_max(spec, sender, result)
        result.end_wall = time.time()
        result.cpu_s = time.process_time() - cpu0
        drain_until = time.monotonic() + DRAIN_TIMEOUT_S
        while any(c.inflight for c, _ in clients) and time.monotonic() < drain_until:
            await asyncio.sleep(0.01)
        result.drained_wall = time.time()
    result.published = sum(c.published for c, _ in clients)
    result.acked = sum(c.acked for c, _ in clients)
    for c, _ in clients:
        c.close()
    await asyncio.sleep(0.2)
    out.put(result)


async def _hold(spec: PubSpec, clients: list[tuple[MqttClient, bytes]], release: Any) -> None:
    """Idle connections: ping each every keepalive/2 while `release` (the start signal) stays
    set, at most hold_s."""
    deadline = time.monotonic() + spec.hold_s
    next_ping = time.monotonic() + spec.keepalive / 2
    while release.is_set() and time.monotonic() < deadline:
        if time.monotonic() >= next_ping:
            for c, _ in clients:
                if c.transport is not None and not c.transport.is_closing():
                    c.transport.write(PINGREQ)
            next_ping += spec.keepalive / 2
        await asyncio.sleep(0.1)


def publisher_main(spec: PubSpec, ready: Any, go: Any, out: Any) -> None:
    """Worker process entry: connect, report ready, wait for `go`, publish (or hold)."""
    _raise_nofile()
    asyncio.run(_publisher(spec, ready, go, out))


# --------------------------------------------------------------------------- subscriber


async def _subscriber(
    port: int, topic_filter: str, qos: int, expected: int, ready: Any, done: Any, out: Any
) -> None:
    client = await open_client(port, "bench-relay-sub", "sub", "sub", 1 << 30, 120)
    assert client.transport is not None
    client.transport.write(subscribe_packet(1, topic_filter, qos))
    granted = await asyncio.wait_for(client.suback, CONNECT_TIMEOUT_S)
    ready.put(("subscribed", granted))
    deadline = time.monotonic() + GO_TIMEOUT_S + 600
    while client.received < expected and not done.is_set() and time.monotonic() < deadline:
        if client.received and time.time() - client.last_rx > SUB_IDLE_S:
            break  # nothing for a while: what was lost stays lost
        await asyncio.sleep(0.01)
    out.put((client.received, client.first_rx, client.last_rx))
    client.close()


def subscriber_main(
    port: int, topic_filter: str, qos: int, expected: int, ready: Any, done: Any, out: Any
) -> None:
    """A plain subscriber that counts what it receives (acking QoS 1) until it has
    `expected` messages, goes idle for SUB_IDLE_S, or `done` is set."""
    asyncio.run(_subscriber(port, topic_filter, qos, expected, ready, done, out))


# --------------------------------------------------------------------------- bare relay


def relay_broker_main(port: int, ready: Any, done: Any) -> None:
    """A bare amqtt 0.12 broker (anonymous auth, no other plugin) until `done` is set; the
    same broker as ``bench/broker_baseline.py``'s relay."""
    _raise_nofile()

    async def main() -> None:
        from amqtt.broker import Broker

        broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await broker.start()
        ready.put(("broker", 0))
        deadline = time.monotonic() + 3_600
        while not done.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        with contextlib.suppress(Exception):
            await broker.shutdown()

    asyncio.run(main())
