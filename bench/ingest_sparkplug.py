"""Sparkplug B DDATA against Alink property posts: stored points/s of both, in one run.

    python bench/ingest_sparkplug.py                         # defaults below, ~3 min
    python bench/ingest_sparkplug.py --seconds 30 --rounds 3 --props 50

One ``qiantang serve`` (fresh temp data dir, loopback ports, the per-device rate limit
raised) takes turns: an Alink phase, then a Sparkplug phase, --rounds times, so both paths
see the same server, store and machine load. Each phase publishes as fast as the QoS 1
in-flight windows allow for --seconds and then waits until every acknowledged point is
stored and queryable (``GET /platforms/{base}/indicators``, as ``bench/ingest.py`` counts).

- Alink: --devices devices, each one MQTT connection (Alink-signed CONNECT), posting
  --props double properties per message: ``bench/ingest.py``'s publisher workers.
- Sparkplug: --nodes edge nodes (gateway devices, access token as MQTT username), each with
  --node-devices devices provisioned by their DBIRTHs; after NBIRTH and the DBIRTHs (metrics
  ``p0``.. with aliases and data types), DDATA carries --props double metrics by alias only
  (no names, no data types), round-robin over the node's devices, seq counting on. Each node
  also subscribes to its NCMD topic: a rebirth request (a seq gap or unknown alias seen by
  the host) is counted and must stay at zero. --nodes x --node-devices = --devices, so both
  phases write to as many devices.

Figures per phase: points/s accepted (PUBACK) while publishing, points/s stored (all
acknowledged points / time until the last one was stored), server CPU, and points stored
per server CPU-second (less sensitive to what else the shared machine runs); per round the
ratio Sparkplug/Alink of the stored rates (the target: >= 50 %) and of the points per
CPU-second. Everything stays on 127.0.0.1; every
loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ingest import Report, Row, StoredWatch, Workers, machine, split, sum_results, wait_stored
from ingest_mqtt import (
    CONNECT_TIMEOUT_S,
    GO_TIMEOUT_S,
    MqttClient,
    PubResult,
    PubSpec,
    open_client,
    publisher_main,
    subscribe_packet,
)
from ingest_server import Sampler, ServerHandle, register_fleet, start_server

from qiantang.protocols import sparkplug_b_pb2 as pb

DOUBLE = 10  # Sparkplug DataType.Double
INT64 = 4


# --------------------------------------------------------------------------- payloads


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def birth_payload(props: int, seq: int, now_ms: int, bd_seq: int | None) -> bytes:
    """An NBIRTH (with `bd_seq`) or DBIRTH (metrics p0.. double, aliases 1..)."""
    payload = pb.Payload(timestamp=now_ms, seq=seq)
    if bd_seq is not None:
        m = payload.metrics.add(name="bdSeq", datatype=INT64, timestamp=now_ms)
        m.long_value = bd_seq
        return payload.SerializeToString()
    for i in range(props):
        m = payload.metrics.add(name=f"p{i}", alias=i + 1, datatype=DOUBLE, timestamp=now_ms)
        m.double_value = 20.0 + i % 60
    return payload.SerializeToString()


def metric_blocks(props: int, variants: int = 16) -> list[bytes]:
    """The metrics part of DDATA payloads (by alias only), `variants` value sets."""
    out = []
    for v in range(variants):
        payload = pb.Payload()
        for i in range(props):
            payload.metrics.add(
                alias=i + 1, double_value=20 + (i + v) % 60 + ((i * 7 + v) % 10) / 10
            )
        out.append(payload.SerializeToString())
    return out


def ddata(metrics: bytes, now_ms: int, seq: int) -> bytes:
    """timestamp (field 1), the metrics (field 2), seq (field 3): protobuf takes any order."""
    return b"\x08" + _varint(now_ms) + metrics + b"\x18" + _varint(seq)


# --------------------------------------------------------------------------- the publisher


@dataclass
class SpbSpec:
    """One worker's edge nodes."""

    port: int
    group: str
    nodes: list[tuple[str, str]]  # (node name, access token)
    node_devices: int
    props: int
    window: int
    seconds: float


@dataclass
class _Node:
    client: MqttClient
    name: str
    seq: int = 0
    next_device: int = 0
    last_ms: list[int] = field(default_factory=list)


async def _open_node(spec: SpbSpec, name: str, token: str, result: PubResult) -> _Node | None:
    try:
        client = await open_client(spec.port, f"bench-spb-{name}", token, "", spec.window, 120)
    except (OSError, TimeoutError, ConnectionError) as err:
        result.connect_failed += 1
        result.errors.append(f"connect {name}: {err!r}")
        return None
    assert client.transport is not None
    client.transport.write(subscribe_packet(1, f"spBv1.0/{spec.group}/NCMD/{name}", 0))
    await asyncio.wait_for(client.suback, CONNECT_TIMEOUT_S)
    node = _Node(client, name, last_ms=[0] * spec.node_devices)
    now = time.time_ns() // 1_000_000
    base = f"spBv1.0/{spec.group}"
    client.window = 1 << 30  # births are not counted against the window
    client.publish(f"{base}/NBIRTH/{name}".encode(), birth_payload(0, 0, now, 0), 1)
    for d in range(spec.node_devices):
        topic = f"{base}/DBIRTH/{name}/{device_name(name, d)}".encode()
        client.publish(topic, birth_payload(spec.props, d + 1, now, None), 1)
    node.seq = spec.node_devices + 1
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while client.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    client.window = spec.window
    client.published = client.acked = 0
    return node


def device_name(node: str, index: int) -> str:
    return f"{node}-D{index:03d}"


async def _spb_publisher(spec: SpbSpec, ready: Any, go: Any, out: Any) -> None:
    result = PubResult()
    opened = await asyncio.gather(*(_open_node(spec, n, t, result) for n, t in spec.nodes))
    nodes = [n for n in opened if n is not None]
    result.connected = len(nodes)
    ready.put(("ready", result.connected, result.connect_failed, 0.0))
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not go.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    blocks = metric_blocks(spec.props)
    base = f"spBv1.0/{spec.group}"
    topics = {
        n.name: [
            f"{base}/DDATA/{n.name}/{device_name(n.name, d)}".encode()
            for d in range(spec.node_devices)
        ]
        for n in nodes
    }
    by_client = {id(n.client): n for n in nodes}
    stopped = False
    sent = 0

    def refill(client: MqttClient) -> None:
        nonlocal sent
        node = by_client[id(client)]
        while not stopped and client.can_publish():
            d = node.next_device
            node.next_device = (d + 1) % spec.node_devices
            now = max(time.time_ns() // 1_000_000, node.last_ms[d] + 1)  # one point per ms
            node.last_ms[d] = now
            client.publish(topics[node.name][d], ddata(blocks[sent & 15], now, node.seq), 1)
            node.seq = (node.seq + 1) & 0xFF
            sent += 1

    result.start_wall = time.time()
    cpu0 = time.process_time()
    for n in nodes:
        n.client.on_ack = refill
        refill(n.client)
    end = time.monotonic() + spec.seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.005)
    stopped = True
    result.end_wall = time.time()
    result.cpu_s = time.process_time() - cpu0
    drain = time.monotonic() + 15
    while any(n.client.inflight for n in nodes) and time.monotonic() < drain:
        await asyncio.sleep(0.01)
    result.drained_wall = time.time()
    result.published = sum(n.client.published for n in nodes)
    result.acked = sum(n.client.acked for n in nodes)
    result.behind = sum(n.client.received for n in nodes)  # here: rebirth requests received
    for n in nodes:
        n.client.close()
    await asyncio.sleep(0.2)
    out.put(result)


def spb_publisher_main(spec: SpbSpec, ready: Any, go: Any, out: Any) -> None:
    """Worker process entry: connect the nodes, send their births, then DDATA on `go`."""
    asyncio.run(_spb_publisher(spec, ready, go, out))


# --------------------------------------------------------------------------- setup


@dataclass
class SpbFleet:
    group: str
    nodes: list[tuple[str, str]]
    device_product: int
    token: str  # the enterprise admin's


def register_nodes(server: ServerHandle, args: argparse.Namespace) -> SpbFleet:
    """An enterprise (via `register_fleet`, no devices) with a gateway product for the edge
    nodes and a device product (p0.. doubles) the nodes provision their devices in."""
    fleet = register_fleet(server, "spb", 0, args.props)
    with server.client(fleet.token) as admin:
        gw = (
            admin.post(
                "/products",
                json={
                    "enterprise_id": fleet.enterprise_id,
                    "name": "压测边缘节点",
                    "node_type": "gateway",
                    "thing_model": {"properties": [], "events": [], "services": []},
                },
            )
            .raise_for_status()
            .json()
        )
        nodes = []
        for i in range(args.nodes):
            node = (
                admin.post(
                    "/devices", json={"product_id": gw["id"], "device_name": f"NODE-{i:03d}"}
                )
                .raise_for_status()
                .json()
            )
            admin.patch(
                f"/devices/{node['id']}", json={"provision_product_id": fleet.product_id}
            ).raise_for_status()
            token = admin.post(f"/devices/{node['id']}/access-token").raise_for_status().json()
            nodes.append((node["device_name"], token["access_token"]))
    return SpbFleet(gw["product_key"], nodes, fleet.product_id, fleet.token)


def provisioned(server: ServerHandle, fleet: SpbFleet) -> int:
    with server.client(fleet.token) as admin:
        page = admin.get("/devices", params={"product_id": fleet.device_product, "limit": 1})
        page = page.raise_for_status().json()
    return int(page["total"])


# --------------------------------------------------------------------------- phases


@dataclass
class Phase:
    points: int  # acknowledged
    stored: int
    accepted_rate: float
    stored_rate: float
    cpu: float  # server CPU share while publishing (1.0 = one core)
    per_cpu_s: float  # points stored per server CPU second, from go to the last stored
    extra: int  # Sparkplug: rebirth requests received


def run_phase(
    server: ServerHandle,
    watch: StoredWatch,
    sampler: Sampler,
    worker: Any,
    specs: list[Any],
    props: int,
    timeout_s: float,
    preload: int = 0,
) -> Phase:
    """Connect the workers (`preload`: points their connecting stores, e.g. births; waited
    for before the clock starts), publish, and wait until every acknowledged point is
    stored."""
    before = watch.count()
    workers = Workers(worker, specs)
    infos = workers.start()
    failed = sum(i[2] for i in infos)
    if failed:
        raise RuntimeError(f"{failed} connections failed")
    base, _ = wait_stored(watch, before + preload, 60, 0.1)
    if base < before + preload:
        raise RuntimeError(f"births stored {base - before} of {preload} points")
    t_go = time.time()
    t_go_mono = time.monotonic()
    workers.go.set()
    results = workers.results(timeout_s)
    workers.kill()
    total = sum_results(results)
    end = total.end_wall
    points = total.acked * props
    # the clock stops at 99.9 %: points of one device and property with one timestamp (two
    # Alink posts in the same millisecond) are one point in the store
    stored, t_all = wait_stored(watch, base + int(points * 0.999), 120, 0.1)
    if stored < base + int(points * 0.999):
        raise RuntimeError(f"stored {stored - base} of {points} acknowledged points")
    with contextlib.suppress(Exception):
        stored = max(stored, wait_stored(watch, base + points, 2, 0.2)[0])
    cpu = sampler.cpu_share(t_go_mono, t_go_mono + (end - t_go))
    time.sleep(1.0)  # one more CPU sample past the last stored point
    whole = sampler.cpu_share(t_go_mono, t_go_mono + (t_all - t_go)) * (t_all - t_go)
    rate = (stored - base) / (t_all - t_go)
    per_cpu = (stored - base) / whole if whole > 0 else float("nan")
    return Phase(points, stored - base, points / (end - t_go), rate, cpu, per_cpu, total.behind)


def alink_specs(args: argparse.Namespace, server: ServerHandle, fleet: Any) -> list[PubSpec]:
    return [
        PubSpec(
            port=server.mqtt_port,
            product_key=fleet.product_key,
            devices=[(d[1], d[2]) for d in part],
            props=args.props,
            qos=1,
            window=args.window,
            seconds=args.seconds,
        )
        for part in split(fleet.devices, args.publishers)
    ]


def spb_specs(args: argparse.Namespace, server: ServerHandle, fleet: SpbFleet) -> list[SpbSpec]:
    return [
        SpbSpec(
            server.mqtt_port,
            fleet.group,
            part,
            args.node_devices,
            args.props,
            args.node_window,
            args.seconds,
        )
        for part in split(fleet.nodes, args.publishers)
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=20.0, help="publishing time per phase")
    p.add_argument("--rounds", type=int, default=2, help="Alink phase + Sparkplug phase, N times")
    p.add_argument("--props", type=int, default=50, help="properties / metrics per message")
    p.add_argument("--nodes", type=int, default=20, help="Sparkplug edge nodes")
    p.add_argument("--node-devices", type=int, default=10, help="devices per edge node")
    p.add_argument("--window", type=int, default=8, help="Alink QoS 1 in-flight per device")
    p.add_argument("--node-window", type=int, default=32, help="Sparkplug in-flight per node")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes per phase")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"qiantang bench/ingest_sparkplug.py: {info['cpus']} CPUs ({info['cpu_model']}), "
        f"{info['memory']}, Python {info['python']}, load {info['load_at_start']}"
    )
    print(
        f"command: python bench/ingest_sparkplug.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    )
    devices = args.nodes * args.node_devices
    report = Report()
    server = start_server()
    print(f"  server pid {server.pid} on {server.url}, MQTT {server.mqtt_port}", flush=True)
    ok = True
    try:
        alink = register_fleet(server, "alk", devices, args.props)
        spb = register_nodes(server, args)
        print(f"  {devices} Alink devices; {args.nodes} edge nodes x {args.node_devices} devices")
        with StoredWatch(server, alink.enterprise_id, 1.0) as watch, Sampler(server) as sampler:
            for r in range(1, args.rounds + 1):
                a = run_phase(
                    server,
                    watch,
                    sampler,
                    publisher_main,
                    alink_specs(args, server, alink),
                    args.props,
                    args.seconds + 120,
                )
                s = run_phase(
                    server,
                    watch,
                    sampler,
                    spb_publisher_main,
                    spb_specs(args, server, spb),
                    args.props,
                    args.seconds + 120,
                    preload=devices * args.props,  # the DBIRTHs' values
                )
                if r == 1 and provisioned(server, spb) != devices:
                    raise RuntimeError("the births did not provision every device")
                ratio = s.stored_rate / a.stored_rate * 100
                per_cpu = s.per_cpu_s / a.per_cpu_s * 100
                ok = ok and ratio >= 50 and s.extra == 0
                name = f"round {r}"
                report.add(
                    Row(name, "Alink points/s accepted (PUBACK)", a.accepted_rate, "points/s"),
                    Row(name, "Alink points/s stored", a.stored_rate, "points/s"),
                    Row(name, "Alink points stored / acknowledged", a.stored / a.points * 100, "%"),
                    Row(name, "Alink server CPU while publishing", a.cpu * 100, "% of 1 core"),
                    Row(
                        name,
                        "Sparkplug DDATA points/s accepted (PUBACK)",
                        s.accepted_rate,
                        "points/s",
                    ),
                    Row(name, "Sparkplug DDATA points/s stored", s.stored_rate, "points/s"),
                    Row(
                        name,
                        "Sparkplug points stored / acknowledged",
                        s.stored / s.points * 100,
                        "%",
                    ),
                    Row(name, "Sparkplug server CPU while publishing", s.cpu * 100, "% of 1 core"),
                    Row(name, "Alink points stored per server CPU-second", a.per_cpu_s, "points"),
                    Row(
                        name, "Sparkplug points stored per server CPU-second", s.per_cpu_s, "points"
                    ),
                    Row(name, "Sparkplug / Alink points per server CPU-second", per_cpu, "%"),
                    Row(name, "Sparkplug rebirth requests", s.extra, "", "0", s.extra == 0),
                    Row(
                        name,
                        "Sparkplug / Alink stored points/s",
                        ratio,
                        "%",
                        ">= 50 %",
                        ratio >= 50,
                    ),
                )
    finally:
        server.stop()
        server.cleanup()
    print("\n" + report.table())
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    os._exit(1)
