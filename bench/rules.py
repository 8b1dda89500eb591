"""Rule engine under load: MQTT ingest with and without 100 active rules, and publish ->
alarm raised latency at half load.

    python bench/rules.py                         # defaults below, about 12 minutes
    python bench/rules.py --seconds 30 --rate-points 100000 --latency-seconds 20

Each phase starts its own ``qiantang serve`` (fresh temp dir, loopback, rate limit raised;
see ``bench/ingest_server.py``) with the same fleet: --products enterprises of one product
each (--props double properties p0..), --devices devices shared among them, loaded by the
lean MQTT publishers of ``bench/ingest_mqtt.py`` (one Alink connection per device, QoS 1,
window 8). "Rules on" adds --rules rules spread evenly over the products, made through the
REST API before publishing: per product one that breaches on every message (``p3 > 0.0``,
an alarm whose count grows with every message), one ``for 30s`` duration, one sliding
average, one rate of change, and thresholds that never breach. Every message of every
device is evaluated against its product's rules (all read properties of the message).

1. ``off`` then ``on``, --rounds times alternating: --rate-points offered for --seconds; steady stored points/s (slope
   of the stored count from 5 s on, as ``bench/ingest.py``), messages/s accepted, server
   CPU. The acceptance compares the two in the same run: on / off >= 80 %. Afterwards the
   breaching rule's alarms are read back: one per device, their counts summed against the
   messages accepted (shows the engine saw every message).
2. ``latency``: rules on, half of --rate-points as background load, plus a probe device of
   its own product whose rule ``p1 > 500.0`` raises an alarm with message ``{p0}``; the
   probe posts --probe-rate messages/s alternating p1 = 1000 (raise) and p1 = 0 (clear),
   p0 = its send time in ms. A WebSocket client of the live feed (``/api/v1/live``, scope
   device, stream alarm) records ``receive time - p0`` for every raise: publish -> alarm
   raised and delivered (an upper bound of publish -> raised). Target p99 <= 200 ms. The
   same client also takes the probe's telemetry frames (which leave the bus beside the
   engine): publish -> telemetry frame is the data path without the engine.

Everything connects to 127.0.0.1 only. The machine is shared: compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from ingest import Row, StoredWatch, pct, slope, split, start_publishers, sum_results, wait_stored
from ingest_mqtt import PubSpec
from ingest_server import Fleet, Sampler, ServerHandle, register_fleet, start_server
from live_feed import WsClients, WsResult, WsSpec

from qiantang.protocols.alink_auth import make_credentials

MIB = 1024 * 1024


def make_rules(server: ServerHandle, fleet: Fleet, count: int, tag: int) -> None:
    """`count` rules on the fleet's product (see the module docstring for the mix)."""
    kinds: list[dict[str, Any]] = [
        {"kind": "expression", "expression": "p3 > 0.0"},
        {"kind": "expression", "expression": "p4 > 1000.0", "for": "30s"},
        {"kind": "average", "property": "p5", "window": "10s", "op": ">", "threshold": 1e6},
        {"kind": "rate", "property": "p6", "per": "1s", "op": ">", "threshold": 1e9},
    ]
    alarm = {"severity": "minor", "message": {"zh-CN": "p3 = {p3}", "en": "p3 = {p3}"}}
    with server.client(fleet.token) as client:
        for i in range(count):
            condition = kinds[i] if i < len(kinds) else {
                "kind": "expression",
                "expression": f"p{7 + i % 40} > {1000.0 + i} && p{8 + i % 40} < -5.0",
            }  # fmt: skip
            body = {
                "name": f"rule-{tag}-{i}",
                "product_id": fleet.product_id,
                "condition": condition,
                "alarm": alarm,
            }
            client.post(f"/enterprises/{fleet.enterprise_id}/rules", json=body).raise_for_status()


def fleets(server: ServerHandle, args: argparse.Namespace) -> list[Fleet]:
    per = args.devices // args.products
    return [register_fleet(server, f"rl{i}", per, args.props) for i in range(args.products)]


def publishers(args: argparse.Namespace, port: int, all_fleets: list[Fleet], rate: float) -> Any:
    specs = []
    for fleet in all_fleets:
        for part in split(fleet.devices, max(1, args.publishers // len(all_fleets))):
            specs.append(
                PubSpec(
                    port=port,
                    product_key=fleet.product_key,
                    devices=[(d[1], d[2]) for d in part],
                    props=args.props,
                    rate=rate / args.props * len(part) / args.devices,
                    seconds=args.seconds,
                )
            )
    return specs


def throughput(args: argparse.Namespace, rules_on: bool, report: list[Row]) -> dict[str, float]:
    name = "rules on" if rules_on else "rules off"
    server = start_server()
    try:
        all_fleets = fleets(server, args)
        if rules_on:
            for i, fleet in enumerate(all_fleets):
                make_rules(server, fleet, args.rules // len(all_fleets), i)
        specs = publishers(args, server.mqtt_port, all_fleets, args.rate_points)
        workers, connected, failed, _ = start_publishers(specs)
        print(
            f"  [{name}] server pid {server.pid}: {connected} devices connected ({failed} failed)",
            flush=True,
        )
        # the count covers every enterprise homed at the base (see `stored_points`)
        watch_all = StoredWatch(server, all_fleets[0].enterprise_id, 2.0)
        with Sampler(server) as sampler, watch_all as watch:
            base = watch.count()
            t_go = time.time()
            workers.go.set()
            results = workers.results(args.seconds + 120)
            workers.kill()
            total = sum_results(results)
            end = total.end_wall
            wait_stored(watch, base + total.acked * args.props, 60, 0.25)
            steady = slope([(t, n) for t, n in watch.samples if t_go + 5 <= t <= end])
            offset = time.monotonic() - time.time()
            cpu = sampler.cpu_share(t_go + offset, end + offset) * 100
            rss = sampler.peak_rss() / MIB
        figures = {
            "steady": steady,
            "acked_per_s": total.acked / (end - t_go),
            "cpu": cpu,
            "rss": rss,
        }
        report += [
            Row(name, "points/s stored, steady (slope from 5 s)", steady, "points/s"),
            Row(name, "messages/s accepted (PUBACK)", figures["acked_per_s"], "msgs/s"),
            Row(name, "server CPU while publishing", cpu, "% of 1 core"),
            Row(name, "points stored per server CPU-second", steady / max(cpu, 1e-9) * 100, ""),
            Row(name, "server RSS peak", rss, "MiB"),
        ]
        if rules_on:
            time.sleep(2.5)  # repeats reach the registry every 2 s
            alarms, counted = 0, 0
            for fleet in all_fleets:
                with server.client(fleet.token) as client:
                    rule = client.get(
                        f"/enterprises/{fleet.enterprise_id}/rules", params={"limit": 1}
                    ).json()["items"][0]
                    page = client.get("/alarms", params={"rule_id": rule["id"], "limit": 500})
                    body = page.json()
                    alarms += body["total"]
                    counted += sum(a["count"] for a in body["items"])
            report += [
                Row(name, "alarms of the always-breaching rules", alarms, "alarms"),
                Row(name, "their counts / messages accepted", counted / total.acked * 100, "%"),
            ]
        return figures
    finally:
        server.cleanup()


# --------------------------------------------------------------------------- latency


def probe_fleet(server: ServerHandle) -> Fleet:
    fleet = register_fleet(server, "probe", 1, 2)
    rule = {
        "name": "probe",
        "product_id": fleet.product_id,
        "condition": {"kind": "expression", "expression": "p1 > 500.0"},
        "alarm": {"severity": "major", "message": {"en": "{p0}"}},
    }
    with server.client(fleet.token) as client:
        client.post(f"/enterprises/{fleet.enterprise_id}/rules", json=rule).raise_for_status()
    return fleet


def run_probe(server: ServerHandle, fleet: Fleet, rate: float, seconds: float) -> int:
    """Post alternating raise/clear messages from the probe device (paho, its own thread)."""
    _, name, secret = fleet.devices[0]
    client_id, username, password = make_credentials(fleet.product_key, name, secret)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(username, password)
    client.connect("127.0.0.1", server.mqtt_port)
    client.loop_start()
    topic = f"/sys/{fleet.product_key}/{name}/thing/event/property/post"
    sent, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        p1 = 1000.0 if sent % 2 == 0 else 0.0
        body = {"id": str(sent), "params": {"p0": time.time() * 1000.0, "p1": p1}}
        client.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
        sent += 1
        time.sleep(1.0 / rate)
    client.disconnect()
    client.loop_stop()
    return sent


async def watch_alarms(
    server: ServerHandle,
    fleet: Fleet,
    seconds: float,
    split_ms: list[tuple[float, float]],
    telemetry_ms: list[float],
) -> list[float]:
    from websockets.asyncio.client import connect

    url = server.url.replace("http://", "ws://") + "/api/v1/live"
    latencies: list[float] = []
    async with connect(url, compression=None, open_timeout=30) as ws:
        first = {"token": fleet.token, "scope": "device", "id": fleet.devices[0][0]}
        await ws.send(json.dumps({**first, "streams": ["alarm", "telemetry"]}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "subscribed", ack
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            now = time.time() * 1000.0
            frame = json.loads(raw)
            if frame.get("type") == "telemetry" and "p0" in frame.get("values", {}):
                telemetry_ms.append(now - float(frame["values"]["p0"]))
            elif frame.get("type") == "alarm" and frame.get("change") == "raise":
                sent = float(frame["message_en"])
                latencies.append(now - sent)
                # the data's ts is the server's receive time (the probe sends none)
                split_ms.append((float(frame["ts"]) - sent, now - float(frame["ts"])))
    return latencies


def live_watchers(server: ServerHandle, all_fleets: list[Fleet], count: int, seconds: float) -> Any:
    """`count` WebSocket clients of the live feed, each watching one background device."""
    url = server.api.replace("http", "ws", 1) + "/live"
    watchers = []
    for fleet in all_fleets:
        ids = [d[0] for d in fleet.devices[: count - sum(len(w) for _, w in watchers)]]
        if ids:
            watchers.append((WsClients(WsSpec(url, fleet.token, ids, seconds + 60)), ids))
    return [w for w, _ in watchers]


def latency(args: argparse.Namespace, report: list[Row]) -> None:
    server = start_server()
    try:
        all_fleets = fleets(server, args)
        for i, fleet in enumerate(all_fleets):
            make_rules(server, fleet, args.rules // len(all_fleets), i)
        probe = probe_fleet(server)
        args.seconds = args.latency_seconds + 5
        watchers = live_watchers(server, all_fleets, args.ws_clients, args.latency_seconds)
        specs = publishers(args, server.mqtt_port, all_fleets, args.rate_points / 2)
        workers, _, _, _ = start_publishers(specs)
        for watcher_process in watchers:
            watcher_process.start()
        workers.go.set()
        time.sleep(2.0)  # background load running
        run_probe(server, probe, args.probe_rate, 1.0)  # warm-up: device lookups, first alarm
        got: list[float] = []
        parts: list[tuple[float, float]] = []
        frames: list[float] = []
        watcher = threading.Thread(
            target=lambda: got.extend(
                asyncio.run(watch_alarms(server, probe, args.latency_seconds + 3, parts, frames))
            )
        )
        watcher.start()
        time.sleep(1.0)
        sent = run_probe(server, probe, args.probe_rate, args.latency_seconds)
        watcher.join(30)
        workers.results(60)
        workers.kill()
        seen: list[WsResult] = [w.finish() for w in watchers]
        name = "latency (rules on, half load)"
        if watchers:
            ws_ms = [ms for r in seen for ms in r.latencies_ms]
            report += [
                Row(
                    name,
                    "WebSocket clients watching a device each",
                    sum(r.connected for r in seen),
                    "clients",
                ),
                Row(
                    name,
                    "  their telemetry frames / lag frames",
                    sum(r.frames for r in seen),
                    f"frames / {sum(r.lag_frames for r in seen)} lag",
                ),
                Row(
                    name,
                    "  their publish -> frame p99",
                    pct(ws_ms, 0.99) if ws_ms else float("nan"),
                    "ms",
                ),
            ]
        report += [
            Row(name, "probe messages sent (half raise, half clear)", sent, "msgs"),
            Row(name, "alarm raises received over the live feed", len(got), "alarms"),
            Row(name, "publish -> alarm raised p50", pct(got, 0.5), "ms"),
            Row(name, "publish -> alarm raised p99", pct(got, 0.99), "ms", "<= 200"),
            Row(name, "publish -> alarm raised max", max(got, default=float("nan")), "ms"),
            Row(
                name,
                "  publish -> server receive time, p99",
                pct([a for a, _ in parts], 0.99),
                "ms",
            ),
            Row(name, "  server receive -> client, p99", pct([b for _, b in parts], 0.99), "ms"),
            Row(name, "same probe: publish -> telemetry frame p50", pct(frames, 0.5), "ms"),
            Row(name, "same probe: publish -> telemetry frame p99", pct(frames, 0.99), "ms"),
        ]
        report[-6].ok = pct(got, 0.99) <= 200
    finally:
        server.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--products", type=int, default=10)
    parser.add_argument("--props", type=int, default=50)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--rate-points", type=float, default=100_000)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--latency-seconds", type=float, default=40)
    parser.add_argument("--probe-rate", type=float, default=20)
    parser.add_argument(
        "--ws-clients",
        type=int,
        default=0,
        help="live-feed WebSocket clients, one background device each, during the latency phase",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--only-on", action="store_true", help="rules on only (profiling)")
    parser.add_argument("--rounds", type=int, default=2, help="off/on rounds, alternating")
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()}")
    report: list[Row] = []
    if not args.skip_throughput:
        offs: list[float] = []
        ons: list[float] = []
        for _ in range(args.rounds):  # alternating rounds: the machine is shared
            if not args.only_on:
                offs.append(throughput(args, False, report)["steady"])
            ons.append(throughput(args, True, report)["steady"])
        if offs:
            ratio = sum(ons) / sum(offs) * 100
            report.append(
                Row("on / off", "steady stored points/s, mean of rounds", ratio, "%", ">= 80 %")
            )
            report[-1].ok = ratio >= 80
    latency(args, report)
    print("\n| phase | metric | value | unit | target | result |\n|---|---|---|---|---|---|")
    for r in report:
        print(f"| {r.scenario} | {r.metric} | {r.shown()} | {r.unit} | {r.target} | {r.status()} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
