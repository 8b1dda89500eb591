"""MQTT ingress baseline: a bare amqtt relay against `AmqttIngress`, QoS 0 and QoS 1.

    python bench/broker_baseline.py [--messages 40000] [--publishers 2] [--window 200]

For each QoS it runs, on loopback, with P paho-mqtt publisher processes sending M ~200-byte
JSON messages between them (each publisher keeps at most `--window` messages unacknowledged -
for QoS 0, unwritten):

(a) relay   - a bare amqtt 0.12 broker (anonymous auth, no other plugin) in its own process,
              relaying to one paho subscriber process that counts;
(b) ingress - `AmqttIngress` in its own process with hooks that accept everything and only
              count what ``on_messages`` receives.

It prints msgs/s (messages received / time from first to last receipt, at the subscriber or
the hooks), the broker process's CPU time per message, and the ratio (b)/(a). Last, it
measures (c) what handing the same messages to another process would cost: msgspec-encoded
batches of 500 `InboundMessage` sent over a pipe and decoded on the other side - the figure
behind running the broker in process. Machines are noisy: compare figures within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import queue
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import msgspec
import paho.mqtt.client as mqtt

from qiantang.ports.ingress import Identity, InboundMessage

TOPIC = "/a1Bench/dev{n}/thing/event/property/post"
SUBSCRIPTION = "/a1Bench/+/thing/event/property/post"
IDLE_TIMEOUT_S = 5.0  # a sink gives up after this long without a message
RUN_TIMEOUT_S = 120.0  # hard bound on one run
CTX = mp.get_context("spawn")


def payload(seq: int) -> bytes:
    """A ~200-byte Alink-style property post."""
    body = (
        b'{"id":"%d","version":"1.0","method":"thing.event.property.post","params":'
        b'{"temperature":%d.5,"humidity":61.2,"spindle_rpm":11980,"state":"run",'
        b'"alarm":false,"power_kw":17.25,"count":%d},"sys":{"ack":0}}'
    ) % (seq, 20 + seq % 10, seq)
    return body.ljust(200)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- sinks


@dataclass
class Tally:
    """What a sink saw: how many messages, first and last receipt (monotonic)."""

    count: int = 0
    first: float = 0.0
    last: float = 0.0

    def add(self, n: int) -> None:
        now = time.monotonic()
        if self.count == 0:
            self.first = now
        self.count += n
        self.last = now


async def _wait_for_tally(tally: Tally, expected: int, started: Event) -> None:
    while not started.is_set():
        await asyncio.sleep(0.05)
    begin = time.monotonic()
    while tally.count < expected:
        now = time.monotonic()
        if now - begin > RUN_TIMEOUT_S:
            break
        if now - (tally.last if tally.count else begin) > IDLE_TIMEOUT_S:
            break
        await asyncio.sleep(0.05)


def run_relay_broker(port: int, ready: Event, done: Event) -> None:
    """(a) A bare amqtt broker until `done` is set."""

    async def main() -> None:
        from amqtt.broker import Broker

        broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await broker.start()
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.1)
        await broker.shutdown()

    asyncio.run(main())


def run_subscriber(
    port: int, qos: int, expected: int, ready: Event, started: Event, out: Any
) -> None:
    """(a) A paho subscriber that counts until it has `expected` messages or goes idle."""
    tally = Tally()
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with lock:
            tally.add(1)

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=mqtt.MQTTv311
    )
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe(SUBSCRIPTION, qos)
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.wait(30)
    ready.set()
    asyncio.run(_wait_for_tally(tally, expected, started))
    client.disconnect()
    client.loop_stop()
    out.put((tally.count, tally.first, tally.last))


class CountingHooks:
    """(b) Platform hooks that accept every device and only count messages."""

    def __init__(self) -> None:
        self.tally = Tally()

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, peer: str
    ) -> Identity | None:
        return Identity(1, "a1Bench", client_id, 1)

    def may_publish(self, identity: Identity, topic: str) -> bool:
        return topic.startswith("/a1Bench/")

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return False

    async def on_messages(self, batch: Sequence[InboundMessage]) -> None:
        self.tally.add(len(batch))

    async def on_connection(self, identity: Identity, client_id: str, connected: bool) -> None:
        return None


def run_ingress(port: int, expected: int, ready: Event, started: Event, out: Any) -> None:
    """(b) `AmqttIngress` with counting hooks, until it has `expected` messages or goes idle."""

    async def main() -> None:
        from qiantang.adapters.broker import AmqttIngress

        hooks = CountingHooks()
        ingress = AmqttIngress(hooks, port=port)
        await ingress.start()
        ready.set()
        await _wait_for_tally(hooks.tally, expected, started)
        await ingress.stop()
        out.put((hooks.tally.count, hooks.tally.first, hooks.tally.last))

    asyncio.run(main())


# --------------------------------------------------------------------------- publishers


def run_publisher(
    port: int, index: int, qos: int, count: int, window: int, go: Event, out: Any
) -> None:
    """Publish `count` messages with at most `window` in flight; report the seconds taken."""
    slots = threading.BoundedSemaphore(window)
    connected = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{index}", protocol=mqtt.MQTTv311
    )
    client.username_pw_set(f"dev{index}&a1Bench", "bench")
    client.max_inflight_messages_set(window)
    client.on_publish = lambda *a: slots.release()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(30)
    topic = TOPIC.format(n=index)
    go.wait(60)
    begin = time.monotonic()
    for seq in range(count):
        if not slots.acquire(timeout=30):
            break
        client.publish(topic, payload(seq), qos)
    for _ in range(window):  # wait for the last window to drain
        if not slots.acquire(timeout=30):
            break
    elapsed = time.monotonic() - begin
    client.disconnect()
    client.loop_stop()
    out.put(elapsed)


# --------------------------------------------------------------------------- runs


@dataclass
class Result:
    received: int
    rate: float
    broker_cpu_us_per_msg: float
    broker_cpu_share: float


def _join(processes: Sequence[Any]) -> None:
    for p in processes:
        p.join(RUN_TIMEOUT_S)
        if p.is_alive():
            p.terminate()
            p.join(5)


def run_case(mode: str, qos: int, messages: int, publishers: int, window: int) -> Result:
    port = free_port()
    out: Any = CTX.Queue()
    pub_out: Any = CTX.Queue()
    ready, started, done = CTX.Event(), CTX.Event(), CTX.Event()
    helpers: list[Any] = []
    if mode == "relay":
        broker = CTX.Process(target=run_relay_broker, args=(port, ready, done))
        broker.start()
        if not ready.wait(30):
            raise RuntimeError("relay broker did not start")
        sub_ready = CTX.Event()
        sub = CTX.Process(
            target=run_subscriber, args=(port, qos, messages, sub_ready, started, out)
        )
        sub.start()
        if not sub_ready.wait(30):
            raise RuntimeError("subscriber did not subscribe")
        helpers.append(sub)
    else:
        broker = CTX.Process(target=run_ingress, args=(port, messages, ready, started, out))
        broker.start()
        if not ready.wait(30):
            raise RuntimeError("ingress did not start")
    per = messages // publishers
    go = CTX.Event()
    pubs = [
        CTX.Process(target=run_publisher, args=(port, i, qos, per, window, go, pub_out))
        for i in range(publishers)
    ]
    for p in pubs:
        p.start()
    time.sleep(1.0)  # let publishers connect; they wait on `go`, the clock starts there
    cpu_before = cpu_seconds(broker.pid)
    started.set()
    go.set()
    try:
        count, first, last = out.get(timeout=RUN_TIMEOUT_S + 10)
    except queue.Empty:
        count, first, last = 0, 0.0, 0.0
    cpu_used = cpu_seconds(broker.pid) - cpu_before
    done.set()
    _join([*pubs, *helpers, broker])
    wall = max(last - first, 1e-9)
    return Result(
        received=count,
        rate=count / wall if count > 1 else 0.0,
        broker_cpu_us_per_msg=cpu_used / max(count, 1) * 1e6,
        broker_cpu_share=min(cpu_used / wall, 9.99),
    )


# --------------------------------------------------------------------------- (c) IPC cost


def _ipc_child(conn: Connection) -> None:
    decoder = msgspec.msgpack.Decoder(list[InboundMessage])
    total = 0
    while True:
        data = conn.recv_bytes()
        if not data:
            break
        total += len(decoder.decode(data))
    conn.send(total)


def measure_ipc(messages: int, batch: int = 500) -> float:
    """Microseconds per message to encode, send through a pipe, and decode in a child."""
    identity = Identity(1, "a1Bench", "dev0", 1)
    batches = [
        [
            InboundMessage(identity, "dev0|securemode=3|", TOPIC.format(n=0), payload(i), 1, 0)
            for i in range(batch)
        ]
        for _ in range(max(messages // batch, 1))
    ]
    parent, child = CTX.Pipe()
    proc = CTX.Process(target=_ipc_child, args=(child,))
    proc.start()
    encoder = msgspec.msgpack.Encoder()
    begin = time.perf_counter()
    for b in batches:
        parent.send_bytes(encoder.encode(b))
    parent.send_bytes(b"")
    total = parent.recv()
    elapsed = time.perf_counter() - begin
    proc.join(30)
    return elapsed / total * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000, help="messages per run")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--window", type=int, default=200, help="in-flight window per publisher")
    args = parser.parse_args()
    print(
        f"{args.messages} messages of ~200 bytes per run, {args.publishers} publisher "
        f"processes, window {args.window}, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'qos':>3} {'mode':<8} {'received':>9} {'msgs/s':>9} "
        f"{'broker CPU us/msg':>18} {'broker CPU':>10}"
    )
    print(header)
    for qos in (0, 1):
        results = {}
        for mode in ("relay", "ingress"):
            r = run_case(mode, qos, args.messages, args.publishers, args.window)
            results[mode] = r
            print(
                f"{qos:>3} {mode:<8} {r.received:>9} {r.rate:>9,.0f} "
                f"{r.broker_cpu_us_per_msg:>18,.0f} {r.broker_cpu_share:>10.0%}"
            )
        relay = results["relay"].rate
        ratio = results["ingress"].rate / relay if relay else float("nan")
        print(f"    QoS {qos} ingress/relay = {ratio:.2f}")
    ipc = measure_ipc(100_000)
    print(f"(c) child-process handover cost: {ipc:.2f} us/msg (msgspec batches of 500, pipe)")


if __name__ == "__main__":
    main()
