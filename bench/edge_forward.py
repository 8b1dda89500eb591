"""Gateway throughput from Modbus and OPC UA simulators: one `qiantang gateway run` process
forwarding to a `qiantang serve` process, then draining a backlog while live data goes on.

Run: ``python -m bench.edge_forward`` (prints figures, asserts nothing; ``--help``).

Every part is its own process on loopback: the platform (`qiantang serve`, per-device rate
limit lifted), the simulators (`bench/edge_machines.py`: one pymodbus server whose
`--registers` holding registers all change every 50 ms, one asyncua server with `--nodes`
Double variables written every 50 ms) and the gateway. The gateway reads `--modbus-devices`
Modbus sub-devices (each its own connection, one block read of all registers every
`--poll-ms`) and one OPC UA sub-device (all nodes monitored, 50 ms sampling).

- **live**: for `--seconds`, the points the platform stored per second (its
  ``own.points_today`` indicator, a count over the store, sampled at both ends of the
  window), the outbox depth at both ends (growing = the gateway falls behind) and the
  gateway's CPU.
- **drain**: the gateway is stopped, `--backlog` samples (all distinct, over the Modbus
  sub-devices, timestamped in the past) are committed to its outbox, and it is started
  again with the machines still changing: the time until the last backlog row is
  acknowledged, so backlog/time is the drain rate while live data flows; and the live
  points stored meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
from tests.conftest import free_port
from tests.edge.plant import make_plant
from tests.integration.test_durability import Platform

from bench.edge_machines import node_id
from qiantang.edge.model import Sample, now_ms
from qiantang.edge.outbox import Outbox

__all__ = ["main"]


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)
    return got


def _model(prefix: str, n: int, dtype: dict[str, Any]) -> dict[str, Any]:
    props = [
        {
            "identifier": f"{prefix}{i}",
            "name": f"{prefix}{i}",
            "access_mode": "r",
            "data_type": dtype,
        }
        for i in range(n)
    ]
    return {"properties": props, "events": [], "services": []}


def make_bench_plant(platform: Platform, args: argparse.Namespace) -> dict[str, Any]:
    """The plant's gateway plus a register product and a node product with their devices."""

    def client(token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"http://127.0.0.1:{platform.http_port}/api/v1"
        return httpx.Client(base_url=url, headers=headers, timeout=60)

    base_id = client(platform.key).get("/me").json()["platform_roles"][0]["platform_id"]
    plant = make_plant(client, platform.key, base_id, 8)
    eng, ent = plant["eng"], plant["products"]["gw"]["enterprise_id"]
    models = {
        "mb": _model("r", args.registers, {"type": "int", "specs": {"min": 0, "max": 65535}}),
        "ua": _model("n", args.nodes, {"type": "double", "specs": {"min": -1e12, "max": 1e12}}),
    }
    subs = []
    for kind, count in (("mb", args.modbus_devices), ("ua", 1)):
        body = {"enterprise_id": ent, "name": f"bench-{kind}", "thing_model": models[kind]}
        made = eng.post("/products", json=body)
        assert made.status_code == 201, made.text
        product = made.json()
        for i in range(count):
            dev = eng.post(
                "/devices", json={"product_id": product["id"], "device_name": f"{kind}-{i}"}
            )
            assert dev.status_code == 201, dev.text
            subs.append({**dev.json(), "product_key": product["product_key"], "kind": kind})
    plant["subs"] = subs
    plant["base_id"] = base_id
    plant["operator"] = client(platform.key)
    return plant


def gateway_config(
    plant: dict[str, Any],
    platform: Platform,
    ports: dict[str, int],
    args: argparse.Namespace,
    poll_ms: int,
) -> str:
    """The gateway's YAML."""
    gw = plant["devices"]["gw"]
    blocks = []
    for sub in plant["subs"]:
        head = (
            f"  - product_key: {sub['product_key']}\n    device_name: {sub['device_name']}\n"
            f"    device_secret: {sub['device_secret']}\n"
        )
        if sub["kind"] == "mb":
            conn = (
                f"    connector: {{type: modbus, host: 127.0.0.1, port: {ports['modbus']},"
                f" unit_id: 1, poll_ms: {poll_ms}}}\n"
            )
            points = [
                f"      - {{property: r{i}, table: holding_register, address: {i},"
                " data_type: uint16}"
                for i in range(args.registers)
            ]
        else:
            conn = (
                "    connector: {type: opcua, endpoint: "
                f'"opc.tcp://127.0.0.1:{ports["opcua"]}/bench/", publishing_interval_ms: 50}}\n'
            )
            points = [
                f'      - {{property: n{i}, node: "{node_id(2, i)}", sampling_interval_ms: 50}}'
                for i in range(args.nodes)
            ]
        blocks.append(head + conn + "    points:\n" + "\n".join(points))
    return f"""
uplink:
  host: 127.0.0.1
  port: {platform.mqtt_port}
  product_key: {gw["product_key"]}
  device_name: {gw["device_name"]}
  device_secret: {gw["device_secret"]}
  reply_timeout_s: 30
outbox:
  path: outbox.db
  synchronous: {args.synchronous}
  drain_rate: {args.drain_rate}
  history_batch: {args.history_batch}
  max_in_flight: {args.max_in_flight}
  max_samples: 5000000
health: {{enabled: false}}
devices:
{chr(10).join(blocks)}
"""


class Rig:
    """The platform, the simulators and (while running) the gateway."""

    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        self.folder, self.args = folder, args
        self.platform = Platform(folder / "platform")
        self.platform.start()
        self.plant = make_bench_plant(self.platform, args)
        self.ports = {"modbus": free_port(), "opcua": free_port()}
        self.machines = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.edge_machines",
                f"--modbus-port={self.ports['modbus']}",
                f"--opcua-port={self.ports['opcua']}",
                f"--registers={args.registers}",
                f"--nodes={args.nodes}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.machines.stdout is not None
        assert self.machines.stdout.readline().strip() == "ready"
        self.config = folder / "gateway.yaml"
        self.configure(args.poll_ms)
        self.outbox = folder / "outbox.db"
        self.gateway: subprocess.Popen[bytes] | None = None

    def configure(self, poll_ms: int) -> None:
        """(Re)write the gateway's config, Modbus sub-devices polled every `poll_ms`."""
        text = gateway_config(self.plant, self.platform, self.ports, self.args, poll_ms)
        self.config.write_text(text)

    def start_gateway(self) -> None:
        log = (self.folder / "gateway.log").open("a")
        profile = ["-m", "cProfile", "-o", self.args.profile] if self.args.profile else []
        command = [sys.executable, *profile, "-m", "qiantang.cli.gateway", "run", str(self.config)]
        self.gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def stop_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.send_signal(signal.SIGTERM)
        self.gateway.wait(timeout=60)

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each process, and by the whole machine."""
        procs = {"gateway": self.gateway, "platform": self.platform.proc, "machines": self.machines}
        used = {k: _cpu(p.pid) for k, p in procs.items() if p is not None}
        machine = psutil.cpu_times()
        used["all processes"] = machine.user + machine.system
        return used

    def stored(self) -> int:
        """Points stored today, as the platform's indicators count them."""
        got = self.plant["operator"].get(f"/platforms/{self.plant['base_id']}/indicators")
        return int(got.json()["own"]["points_today"])

    def outbox_stats(self) -> tuple[int, int]:
        """(rows waiting, oldest seq) in the gateway's outbox file."""
        db = sqlite3.connect(self.outbox, timeout=30)
        try:
            rows = db.execute("SELECT count(*), coalesce(min(seq), 0) FROM samples").fetchall()
            return int(rows[0][0]), int(rows[0][1])
        finally:
            db.close()

    def close(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            self.stop_gateway()
        self.machines.kill()
        self.machines.wait()
        self.platform.stop(signal.SIGTERM)


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def live(rig: Rig) -> None:
    """Forward live data for the window; print stored/s, outbox depth and gateway CPU."""
    args = rig.args
    offered = args.modbus_devices * args.registers * 1000 / args.poll_ms + args.nodes * 20
    rig.start_gateway()
    assert rig.gateway is not None
    _wait(lambda: rig.stored() > 0, 60, "first points")
    time.sleep(args.warmup)  # let every connector subscribe and the rate settle
    depth0, _ = rig.outbox_stats()
    n0, t0, cpu0 = rig.stored(), time.monotonic(), rig.cpu()
    time.sleep(args.seconds)
    n1, t1, cpu1 = rig.stored(), time.monotonic(), rig.cpu()
    depth1, _ = rig.outbox_stats()
    rate = (n1 - n0) / (t1 - t0)
    cpu = ", ".join(f"{k} {(v - cpu0[k]) / (t1 - t0) * 100:.0f}" for k, v in cpu1.items())
    print(
        f"live: {rate:,.0f} samples/s stored over {t1 - t0:.0f} s (offered at most"
        f" {offered:,.0f}/s); outbox depth {depth0:,} -> {depth1:,}; CPU % of a core: {cpu}"
    )
    rig.stop_gateway()


def fill(rig: Rig, backlog: int) -> int:
    """Commit `backlog` distinct samples of the Modbus sub-devices, dated in the past;
    answer the newest seq."""
    mb = [f"{s['product_key']}/{s['device_name']}" for s in rig.plant["subs"] if s["kind"] == "mb"]
    regs = rig.args.registers
    per_tick = len(mb) * regs
    base = now_ms() - 2 * 86_400_000  # two days ago: never in `points_today`

    async def put() -> int:
        box = await Outbox.open(rig.outbox, 10**7, 10**10, rig.args.synchronous)
        for start in range(0, backlog, 20_000):
            await box.put(
                [
                    Sample(
                        mb[k % len(mb)],
                        f"r{k // len(mb) % regs}",
                        base + k // per_tick * 50,
                        k % 65536,
                    )
                    for k in range(start, min(backlog, start + 20_000))
                ]
            )
        top = await box.max_seq()
        await box.close()
        return top

    return asyncio.run(put())


def drain(rig: Rig) -> None:
    """Start the gateway on a backlog; print how fast it goes while live data continues."""
    backlog = rig.args.backlog
    started = time.monotonic()
    watermark = fill(rig, backlog)
    depth, _ = rig.outbox_stats()
    print(f"drain: {depth:,} samples committed to the outbox in {time.monotonic() - started:.1f} s")
    args = rig.args
    offered = args.modbus_devices * args.registers * 1000 / args.drain_poll_ms + args.nodes * 20
    rig.configure(args.drain_poll_ms)
    n0 = rig.stored()
    rig.start_gateway()
    assert rig.gateway is not None
    t0, cpu0 = time.monotonic(), rig.cpu()
    _wait(lambda: rig.outbox_stats()[1] > watermark, 900, "the backlog drained")
    took = time.monotonic() - t0
    n1, cpu = rig.stored(), {k: (v - cpu0[k]) / took * 100 for k, v in rig.cpu().items()}
    depth, _ = rig.outbox_stats()
    print(
        f"drain: {backlog:,} samples in {took:.1f} s = {backlog / took:,.0f} samples/s"
        f" (gateway start, connect and handshake included); live samples stored meanwhile"
        f" {(n1 - n0) / took:,.0f}/s (offered at most {offered:,.0f}/s); outbox depth at the"
        f" end {depth:,};"
        f" CPU % of a core: {', '.join(f'{k} {v:.0f}' for k, v in cpu.items())}"
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--modbus-devices", type=int, default=10)
    parser.add_argument("--registers", type=int, default=100, help="per Modbus sub-device")
    parser.add_argument("--nodes", type=int, default=100, help="OPC UA variables")
    parser.add_argument("--poll-ms", type=int, default=50)
    parser.add_argument("--drain-poll-ms", type=int, default=500, help="Modbus, while draining")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--drain-rate", type=float, default=20, help="backlog messages/s")
    parser.add_argument("--history-batch", type=int, default=2_000)
    parser.add_argument("--max-in-flight", type=int, default=32)
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    parser.add_argument("--profile", help="cProfile the (last) gateway run into this file")
    parser.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    parser.add_argument("--skip", choices=("live", "drain"), action="append", default=[])
    args = parser.parse_args(argv)
    print(
        f"bench/edge_forward.py: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {vars(args)}"
    )
    with tempfile.TemporaryDirectory() as name:
        rig = Rig(Path(args.keep) if args.keep else Path(name), args)
        try:
            if "live" not in args.skip:
                live(rig)
            if "drain" not in args.skip:
                drain(rig)
        finally:
            rig.close()


if __name__ == "__main__":
    main(sys.argv[1:])
