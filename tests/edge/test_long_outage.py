"""Store and forward against real machines: a real asyncua and a real pymodbus server keep
changing while the platform (`qiantang serve`, a child process) is away.

- A 60 s outage: every sample the gateway took arrives once, under its own time and in the
  order it was taken; the platform keeps one row per (device, property, ts) although the
  gateway resends whatever it saw no reply for.
- `kill -9` of the gateway during an outage, then a restart: every sample that was in the
  outbox file at the kill arrives.

What was taken is read from the outbox file itself (SQLite, WAL; every sample is committed
there before it is sent), what arrived from the platform's DuckDB file after it stopped. A
counter sub-device (the `tests.edge.counter` plugin) adds an exact ground truth: it emits
0, 1, 2 ... and all of them must be stored, in order, once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import httpx
import pytest

pytest.importorskip("asyncua")
pytest.importorskip("pymodbus")
pytest.importorskip("aiomqtt")

from qiantang.adapters.timeseries.duckdb_sql import decode_value
from qiantang.edge.config_file import parse_config
from qiantang.edge.gateway import Gateway
from qiantang.edge.model import now_ms
from qiantang.edge.registry import ConnectorRegistry
from tests.edge.counter import PLUGIN, CounterConnector
from tests.edge.machines import LoopThread, ModbusMachine, OpcUaMachine
from tests.edge.plant import gateway_yaml, machine_blocks, make_plant
from tests.integration.test_durability import Platform

pytestmark = pytest.mark.slow

OUTAGE_S = 60.0
Key = tuple[int, str]  # (device id, property)


class Taken(NamedTuple):
    """A row of the outbox file."""

    seq: int
    device: str
    property: str
    ts: int
    value: Any


def until(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.05)
    return got


def outbox_rows(path: Path) -> list[Taken]:
    """Everything committed to the outbox file, in the order it was taken."""
    db = sqlite3.connect(path, timeout=10)
    try:
        sql = "SELECT seq, device, property, ts, value FROM samples ORDER BY seq"
        return [Taken(s, d, p, ts, json.loads(v)) for s, d, p, ts, v in db.execute(sql)]
    finally:
        db.close()


def stored(platform: Platform) -> tuple[dict[Key, dict[int, Any]], int]:
    """The platform's points by (device, property) and ts, and how many keys have more than
    one row (read from its DuckDB file once it has stopped)."""
    db = duckdb.connect(str(platform.data_dir / "telemetry.duckdb"), read_only=True)
    try:
        rows = db.execute(
            "SELECT device_id, property, ts, kind, num, i64, txt FROM telemetry"
        ).fetchall()
        repeated = db.execute(
            "SELECT count(*) FROM (SELECT device_id, property, ts FROM telemetry"
            " GROUP BY ALL HAVING count(*) > 1)"
        ).fetchall()[0][0]
    finally:
        db.close()
    points: dict[Key, dict[int, Any]] = defaultdict(dict)
    for device_id, prop, ts, *value in rows:
        points[(device_id, prop)][ts] = decode_value(tuple(value))  # type: ignore[arg-type]
    return points, int(repeated)


def check_arrived(
    taken: list[Taken], ids: dict[str, int], points: dict[Key, dict[int, Any]]
) -> None:
    """Every taken sample is stored with its value; per point the samples were taken in time
    order, so the stored series over their times is the taken one."""
    by_point: dict[Key, list[Taken]] = defaultdict(list)
    for row in taken:
        by_point[(ids[row.device], row.property)].append(row)
    missing = []
    for key, rows in by_point.items():
        times = [r.ts for r in rows]
        assert times == sorted(set(times)), f"{key}: taken out of time order"
        series = points.get(key, {})
        missing += [r for r in rows if r.ts not in series]
        got = [series[r.ts] for r in rows if r.ts in series]
        assert got == [r.value for r in rows if r.ts in series], f"{key}: other values stored"
    assert not missing, f"{len(missing)} of {len(taken)} samples never arrived: {missing[:5]}"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path / "platform")
    p.start()
    yield p
    if p.proc is not None and p.proc.poll() is None:
        p.stop(signal.SIGTERM)


@pytest.fixture
def machines() -> Iterator[tuple[OpcUaMachine, ModbusMachine]]:
    loop = LoopThread()
    opcua, modbus = OpcUaMachine(), ModbusMachine()
    loop.run(opcua.start())
    loop.run(modbus.start())
    yield opcua, modbus
    loop.run(opcua.stop())
    loop.run(modbus.stop())
    loop.close()


def _plant(platform: Platform, n: int, more: tuple[str, ...] = ()) -> dict[str, Any]:
    def client(token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=f"http://127.0.0.1:{platform.http_port}/api/v1", headers=headers, timeout=30
        )

    base_id = client(platform.key).get("/me").json()["platform_roles"][0]["platform_id"]
    plant = make_plant(client, platform.key, base_id, n, more)
    plant["ids"] = {
        f"{d['product_key']}/{d['device_name']}": d["id"] for d in plant["devices"].values()
    }
    return plant


def _latest(plant: dict[str, Any], key: str) -> dict[str, Any]:
    device = plant["devices"][key]
    got: dict[str, Any] = plant["eng"].get(f"/devices/{device['id']}/properties").json()
    return got["properties"]


def test_a_60_s_outage_loses_nothing_and_stores_nothing_twice(
    platform: Platform, machines: tuple[OpcUaMachine, ModbusMachine], tmp_path: Path
) -> None:
    opcua, modbus = machines
    plant = _plant(platform, 6, ("CNT-1",))
    cnt = plant["devices"]["cnt-1"]
    blocks = machine_blocks(plant, opcua.endpoint, opcua.ns, modbus.port)
    blocks += f"""
  - product_key: {cnt["product_key"]}
    device_name: {cnt["device_name"]}
    device_secret: {cnt["device_secret"]}
    connector: {{type: counter, rate: 100}}
    points: [{{property: count}}]
"""
    text = gateway_yaml(platform.mqtt_port, plant, blocks, drain_rate=50, history_batch=200)
    connectors = ConnectorRegistry()
    connectors.register("counter", PLUGIN)
    config = parse_config(text, "outage60.yaml", tmp_path, connectors)
    gateway = Gateway(config, connectors)
    counter = next(c for c in gateway.connectors.values() if isinstance(c, CounterConnector))
    loop = LoopThread()
    running = loop.spawn(gateway.run())
    try:
        until(lambda: _latest(plant, "imm").get("temperature"), what="OPC UA data")
        until(lambda: _latest(plant, "cmp").get("pressure"), what="Modbus data")
        until(lambda: _latest(plant, "cnt-1").get("count", {}).get("value", -1) >= 50)
        # no quiescing: messages in flight when the platform goes are resent later
        platform.stop(signal.SIGTERM)
        stopped_at = now_ms()
        back_at = time.monotonic() + OUTAGE_S
        until(lambda: time.monotonic() >= back_at, OUTAGE_S + 5, "the end of the outage")
        taken = outbox_rows(config.outbox.path)  # all the gateway holds after 60 s away
        platform.start()
        last = taken[-1].seq
        until(lambda: _drained(config.outbox.path, last), 120, "the backlog drained")
        generated = loop.run(_stop_counting(counter))  # in the loop: no torn read of the count
        # the last count may still be on its way into the outbox: wait for it at the platform
        until(
            lambda: _latest(plant, "cnt-1").get("count", {}).get("value") == generated - 1,
            what="the last count at the platform",
        )
        until(lambda: not _waiting(config.outbox.path, "CNT-1"), what="the last counts sent")
        assert gateway.outbox is not None
        stats = gateway.outbox.stats_now()
    finally:
        loop.cancel(running)
        loop.close()
    platform.stop(signal.SIGTERM)

    during = defaultdict(int)
    for row in taken:
        if row.ts >= stopped_at:
            during[row.device.rsplit("/", 1)[1]] += 1
    print(f"outage {OUTAGE_S:.0f} s: samples taken meanwhile {dict(during)}; {stats}")
    assert during["IMM-1"] >= 300 and during["CMP-1"] >= 600 and during["CNT-1"] >= 3_000
    assert (stats.dropped, stats.rejected) == (0, 0)
    points, repeated = stored(platform)
    assert repeated == 0
    check_arrived(taken, plant["ids"], points)
    counts = points[(cnt["id"], "count")]
    assert [counts[ts] for ts in sorted(counts)] == list(range(generated))


async def _stop_counting(counter: CounterConnector) -> int:
    """Stop the counter from its own loop and say how many values it emitted."""
    counter.running.clear()
    return counter.generated


def _drained(path: Path, upto: int) -> bool:
    rows = outbox_rows(path)
    return not rows or rows[0].seq > upto


def _waiting(path: Path, device_name: str) -> list[Taken]:
    return [r for r in outbox_rows(path) if r.device.endswith(f"/{device_name}")]


def test_kill_9_of_the_gateway_during_an_outage_loses_nothing_in_the_outbox(
    platform: Platform, machines: tuple[OpcUaMachine, ModbusMachine], tmp_path: Path
) -> None:
    opcua, modbus = machines
    plant = _plant(platform, 7)
    blocks = machine_blocks(plant, opcua.endpoint, opcua.ns, modbus.port)
    config = tmp_path / "gateway.yaml"
    config.write_text(gateway_yaml(platform.mqtt_port, plant, blocks, history_batch=200))
    outbox = tmp_path / "outbox.db"
    log = (tmp_path / "gateway.log").open("w")

    def gateway() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "qiantang.cli.gateway", "run", str(config)]
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})

    proc = gateway()
    try:
        until(lambda: _latest(plant, "imm").get("temperature"), what="OPC UA data")
        until(lambda: _latest(plant, "cmp").get("pressure"), what="Modbus data")
        platform.stop(signal.SIGTERM)
        stopped_at = now_ms()
        until(lambda: sum(r.ts > stopped_at for r in outbox_rows(outbox)) >= 300, what="a backlog")
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait(timeout=30)
        at_kill = outbox_rows(outbox)
        proc = gateway()
        until(lambda: outbox_rows(outbox)[-1].seq > at_kill[-1].seq, what="sampling again")
        platform.start()
        until(lambda: _drained(outbox, at_kill[-1].seq), 120, "the backlog drained")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    platform.stop(signal.SIGTERM)

    during = sum(r.ts > stopped_at for r in at_kill)
    print(f"kill -9: {len(at_kill)} samples in the outbox at the kill, {during} from the outage")
    points, repeated = stored(platform)
    assert repeated == 0
    check_arrived(at_kill, plant["ids"], points)
