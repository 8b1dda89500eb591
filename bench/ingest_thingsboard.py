"""ThingsBoard gateway-API telemetry against Alink property posts, in one run on one server.

    python bench/ingest_thingsboard.py                   # 1,000 devices x 50 props, 3 rounds
    python bench/ingest_thingsboard.py --mqtt5           # the gateways speak MQTT 5
    python bench/ingest_thingsboard.py --profile /tmp/p  # py-spy the server in each phase

One ``qiantang serve`` (started as ``bench/ingest.py`` starts it) and --rounds rounds of two
phases. Alink: --devices devices, one connection each, post --props properties per message
(``bench/ingest_mqtt.py``'s publishers, QoS 1, --window in flight per connection).
ThingsBoard: --gateways gateways (access tokens), each speaking for --devices / --gateways
devices that it announces with ``v1/gateway/connect`` before the clock starts (so they are
auto-provisioned first), publishing ``v1/gateway/telemetry`` messages of --per-message
devices x one row of --props values (QoS 1, --tb-window in flight per gateway: by default
the ``maxInflightMessages`` that ``getSessionLimits`` gives the ThingsBoard SDK). Both
phases publish as fast as their windows allow for --seconds, from --publishers processes.

Per phase: the *stored* rate (least-squares slope of the stored-point count, ``GET
/platforms/{base}/indicators``, from 5 s to the end) and the server's CPU time per stored
point (psutil, from the start signal until the backlog is stored). The machine is shared and
its load swings within minutes, so the result is the median of the per-round ratios
(ThingsBoard / Alink, phases seconds apart), with the CPU-cost ratio, which depends far less
on what else runs, as the cross-check.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ingest import (
    Report,
    Row,
    StoredWatch,
    Workers,
    profiled,
    pub_specs,
    server_for,
    slope,
    split,
    start_publishers,
    sum_results,
    wait_stored,
)
from ingest import parse_args as ingest_args
from ingest_mqtt import (
    CONNECT_TIMEOUT_S,
    DRAIN_TIMEOUT_S,
    GO_TIMEOUT_S,
    LOOPBACK,
    MqttClient,
    PubResult,
)
from ingest_server import ServerHandle, register_fleet

from qiantang.protocols.thingsboard import SESSION_LIMITS

__all__ = ["TbSpec", "main", "tb_publisher_main"]

WARM_S = 5.0  # the stored slope starts this long after the start signal


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


@dataclass
class TbSpec:
    """One worker's gateways: (access token, the names of the devices it speaks for)."""

    port: int
    gateways: list[tuple[str, list[str]]]
    props: int = 50
    per_message: int = 1
    window: int = 8
    seconds: float = 30.0
    mqtt5: bool = False
    errors: list[str] = field(default_factory=list)


class TbClient(MqttClient):
    """A gateway connection: access token as the username, no password; MQTT 3.1.1 or 5."""

    mqtt5 = False

    def publish(self, topic: bytes, payload: bytes, qos: int) -> None:
        if not self.mqtt5:
            super().publish(topic, payload, qos)
            return
        assert self.transport is not None
        pid = next(self._pid)
        body = _str(topic) + pid.to_bytes(2, "big") + b"\x00" + payload  # empty properties
        self.transport.write(b"\x32" + _varint(len(body)) + body)
        self.inflight += 1
        self.published += 1


async def _open(spec: TbSpec, token: str, index: int) -> TbClient:
    loop = asyncio.get_running_loop()
    _t, client = await asyncio.wait_for(
        loop.create_connection(lambda: TbClient(spec.window), LOOPBACK, spec.port),
        CONNECT_TIMEOUT_S,
    )
    client.mqtt5 = spec.mqtt5
    level, props = (b"\x05", b"\x00") if spec.mqtt5 else (b"\x04", b"")
    body = _str(b"MQTT") + level + b"\x82\x00\x78" + props  # username, clean, keep-alive 120
    body += _str(f"tbgw-bench-{index}".encode()) + _str(token.encode())
    assert client.transport is not None
    client.transport.write(b"\x10" + _varint(len(body)) + body)
    rc = await asyncio.wait_for(client.connack, CONNECT_TIMEOUT_S)
    if rc != 0:
        raise ConnectionError(f"CONNACK {rc}")
    return client


def _messages(names: list[str], props: int, per_message: int) -> list[tuple[int, bytes]]:
    """Per group of `per_message` devices: (n, a telemetry body with n ``%d`` for the ts)."""
    values = ",".join(f'"p{i}":{20 + i % 60}.{i % 10}' for i in range(props))
    out = []
    for start in range(0, len(names), per_message):
        group = names[start : start + per_message]
        rows = ",".join(f'{json.dumps(n)}:[{{"ts":%(ts)d,"values":{{{values}}}}}]' for n in group)
        out.append((len(group), ("{" + rows + "}").replace("%(ts)d", "%d").encode()))
    return out


async def _announce(client: TbClient, names: list[str]) -> None:
    """``v1/gateway/connect`` for every device (provisions them), waiting for each ack."""
    for name in names:
        while not client.can_publish():
            await asyncio.sleep(0.005)
        client.publish(b"v1/gateway/connect", json.dumps({"device": name}).encode(), 1)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while client.inflight and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def _tb_publisher(spec: TbSpec, ready: Any, go: Any, out: Any) -> None:
    result = PubResult()
    clients: list[tuple[TbClient, list[tuple[int, bytes]]]] = []
    begin = time.monotonic()
    for index, (token, names) in enumerate(spec.gateways):
        try:
            client = await _open(spec, token, index + id(spec) % 100_000 * 1000)
        except (OSError, TimeoutError, ConnectionError) as err:
            result.connect_failed += 1
            result.errors.append(f"connect: {err!r}")
            continue
        await _announce(client, names)
        clients.append((client, _messages(names, spec.props, spec.per_message)))
    result.connected, result.connect_s = len(clients), time.monotonic() - begin
    ready.put(("ready", result.connected, result.connect_failed, result.connect_s))
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not go.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    for client, _ in clients:
        client.published = client.acked = 0
    cycles = {id(c): itertools.cycle(m) for c, m in clients}
    stopped = False

    last_ts = dict.fromkeys(cycles, 0)

    def refill(client: MqttClient) -> None:
        # a gateway's ts rises by >= 1 ms a message: (device, key, ts) stays unique (the
        # store keeps one point per device, property and timestamp)
        cycle = cycles[id(client)]
        while not stopped and client.can_publish():
            ts = last_ts[id(client)] = max(time.time_ns() // 1_000_000, last_ts[id(client)] + 1)
            count, body = next(cycle)
            client.publish(b"v1/gateway/telemetry", body % ((ts,) * count), 1)

    result.start_wall, cpu0 = time.time(), time.process_time()
    for client, _ in clients:
        client.on_ack = refill
        refill(client)
    await asyncio.sleep(spec.seconds)
    stopped = True
    result.end_wall, result.cpu_s = time.time(), time.process_time() - cpu0
    drain_until = time.monotonic() + DRAIN_TIMEOUT_S
    while any(c.inflight for c, _ in clients) and time.monotonic() < drain_until:
        await asyncio.sleep(0.01)
    result.drained_wall = time.time()
    result.published = sum(c.published for c, _ in clients)
    result.acked = sum(c.acked for c, _ in clients)
    for client, _ in clients:
        client.close()
    await asyncio.sleep(0.2)
    out.put(result)


def tb_publisher_main(spec: TbSpec, ready: Any, go: Any, out: Any) -> None:
    """Worker process entry: connect the gateways, announce their devices, publish."""
    asyncio.run(_tb_publisher(spec, ready, go, out))


def _tb_fleet(server: ServerHandle, args: argparse.Namespace) -> tuple[int, str, list[TbSpec]]:
    """The sub-device product (auto-provisioning target), the gateways and their tokens."""
    fleet = register_fleet(server, "tb", 0, args.props)
    with server.client(fleet.token) as admin:
        gw_product = admin.post(
            "/products",
            json={
                "enterprise_id": fleet.enterprise_id,
                "name": f"TB网关-{fleet.product_key}"[:60],
                "node_type": "gateway",
            },
        ).raise_for_status()
        gateways = []
        per = max(1, args.devices // args.gateways)
        for g in range(args.gateways):
            device = admin.post(
                "/devices",
                json={"product_id": gw_product.json()["id"], "device_name": f"TBGW-{g:03d}"},
            ).raise_for_status()
            gid = device.json()["id"]
            admin.patch(
                f"/devices/{gid}", json={"provision_product_id": fleet.product_id}
            ).raise_for_status()
            token = admin.post(f"/devices/{gid}/access-token").raise_for_status()
            names = [f"TB-{g:03d}-{i:04d}" for i in range(per)]
            gateways.append((token.json()["access_token"], names))
    specs = [
        TbSpec(
            server.mqtt_port,
            part,
            props=args.props,
            per_message=args.per_message,
            window=args.tb_window,
            seconds=args.seconds,
            mqtt5=args.mqtt5,
        )
        for part in split(gateways, args.publishers)
    ]
    return fleet.product_id, fleet.token, specs


def _provisioned(server: ServerHandle, product_id: int, token: str) -> int:
    with server.client(token) as c:
        return int(c.get("/devices", params={"product_id": product_id}).json()["total"])


@dataclass
class Phase:
    """One phase's figures: steady stored points/s and server CPU per stored point."""

    stored_rate: float
    cpu_us_per_point: float


def _phase(
    server: ServerHandle,
    report: Report,
    name: str,
    workers: Workers,
    args: argparse.Namespace,
    profile: argparse.Namespace,
) -> Phase:
    """Start the (ready) workers; measure the stored slope and the server's CPU per point
    (from the start signal until the backlog is stored)."""
    with StoredWatch(server, 0, 2.0) as watch:
        base = watch.count()
        cpu0 = server.cpu_seconds()
        with profiled(profile, server, name, args.seconds / 4):
            t_go = time.time()
            workers.go.set()
            results = workers.results(args.seconds + 120)
        workers.kill()
        total = sum_results(results)
        points = total.acked * args.props
        stored, _ = wait_stored(watch, base + points, 120, 0.5)
        cpu = server.cpu_seconds() - cpu0
        end = total.end_wall
    for err in total.errors[:3]:
        print(f"  {name} publisher error: {err}")
    steady = slope([(t, n) for t, n in watch.samples if t_go + WARM_S <= t <= end])
    seconds = max(end - t_go, 1e-9)
    # CPU per point only when the count is trustworthy (every accepted point counted)
    counted = stored - base >= points > 0
    cost = cpu / (stored - base) * 1e6 if counted else math.nan
    report.add(
        Row(name, "connections", total.connected, "", "", total.connect_failed == 0),
        Row(name, "messages/s accepted (PUBACK)", total.acked / seconds, "msgs/s"),
        Row(name, "points/s accepted (PUBACK)", points / seconds, "points/s"),
        Row(name, "points stored / accepted", (stored - base) / max(1, points) * 100, "%"),
        Row(name, f"points/s stored, steady (slope from {WARM_S:.0f} s)", steady, "points/s"),
        Row(name, "server CPU per stored point", cost, "µs"),
        Row(name, "publisher CPU", total.cpu_s / seconds * 100, "% of 1 core"),
    )
    return Phase(steady, cost)


def _median(values: list[float]) -> float:
    ordered = sorted(v for v in values if math.isfinite(v))
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, default=1_000, help="Alink devices = TB sub-devices")
    p.add_argument("--props", type=int, default=50, help="values per device per message")
    p.add_argument("--seconds", type=float, default=20.0, help="publishing time per phase")
    p.add_argument("--rounds", type=int, default=3, help="Alink, then ThingsBoard, this often")
    p.add_argument("--gateways", type=int, default=20, help="ThingsBoard gateway connections")
    p.add_argument("--per-message", type=int, default=1, help="devices per TB message")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes per phase")
    p.add_argument("--window", type=int, default=8, help="QoS 1 in-flight window (Alink)")
    p.add_argument(
        "--tb-window",
        type=int,
        default=SESSION_LIMITS["maxInflightMessages"],
        help="QoS 1 in-flight window per gateway (default: what getSessionLimits tells the SDK)",
    )
    p.add_argument("--mqtt5", action="store_true", help="the gateways connect with MQTT 5")
    p.add_argument("--profile", metavar="DIR", help="py-spy the server during each phase")
    p.add_argument("--json-out", metavar="FILE")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = ["--profile", args.profile, "--profile-seconds", str(args.seconds / 2)]
    base = ingest_args(
        [
            "mqtt-sustained",
            "--publishers",
            str(args.publishers),
            "--window",
            str(args.window),
            *(extra if args.profile else []),
        ]
    )
    report = Report()
    alink_runs: list[Phase] = []
    tb_runs: list[Phase] = []
    with server_for(base, report, "tb-vs-alink") as server:
        alink = register_fleet(server, "alink", args.devices, args.props)
        product_id, tb_token, tb_specs = _tb_fleet(server, args)
        expected = args.gateways * max(1, args.devices // args.gateways)
        for r in range(1, args.rounds + 1):
            specs = pub_specs(
                base,
                server.mqtt_port,
                alink,
                alink.devices,
                args.publishers,
                props=args.props,
                rate=0,
                seconds=args.seconds,
            )
            alink_workers, connected, _failed, _ = start_publishers(specs)
            print(f"  round {r}, Alink: {connected} devices connected", flush=True)
            alink_runs.append(_phase(server, report, f"alink {r}", alink_workers, args, base))
            tb_workers = Workers(tb_publisher_main, tb_specs)
            tb_workers.start()
            deadline = time.monotonic() + 120
            while (provisioned := _provisioned(server, product_id, tb_token)) < expected:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            print(f"  round {r}, ThingsBoard: {provisioned}/{expected} devices", flush=True)
            tb_runs.append(_phase(server, report, f"thingsboard {r}", tb_workers, args, base))
    # a round whose slope had too few samples (the count query was slow) does not count
    valid = [
        t.stored_rate / a.stored_rate * 100
        for a, t in zip(alink_runs, tb_runs, strict=True)
        if math.isfinite(t.stored_rate) and math.isfinite(a.stored_rate) and a.stored_rate > 0
    ]
    rates = valid or [math.nan]
    ratio = _median(rates)
    cost = _median([t.cpu_us_per_point for t in tb_runs]) / _median(
        [a.cpu_us_per_point for a in alink_runs]
    )
    name = "tb-vs-alink"
    report.add(
        Row(name, "ThingsBoard / Alink stored points/s, per round", min(rates), "% (min)"),
        Row(name, "ThingsBoard / Alink stored points/s, per round", max(rates), "% (max)"),
        Row(name, "rounds with a stored rate in both phases", len(valid), f"of {args.rounds}"),
        Row(
            name, "ThingsBoard / Alink stored points/s, median", ratio, "%", ">= 50 %", ratio >= 50
        ),
        Row(
            name, "ThingsBoard / Alink server CPU per point, median", cost, "x", "<= 2 x", cost <= 2
        ),
    )
    print(report.table())
    if args.json_out:
        rows = [asdict(r) for r in report.rows]
        with open(args.json_out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    return 0 if ratio >= 50 else 1


if __name__ == "__main__":
    sys.exit(main())
