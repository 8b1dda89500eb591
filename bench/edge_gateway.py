"""End-to-end gateway figures for docs/edge.md, against an in-process platform on loopback.

(Throughput from Modbus and OPC UA simulators, every part its own process, is
`bench/edge_forward.py`.)

Run: ``python -m bench.edge_gateway`` (it prints, asserts nothing).

- live: a counter sub-device at 200 samples/s for 10 s; latency from a sample's time to the
  platform's Alink reply for the message carrying it (p50/p99), samples acknowledged.
- drain: 50,000 samples already in the outbox when the gateway starts (a backlog after an
  outage), drain_rate 100 messages/s of 1000 samples; time until the outbox is empty.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Server, _start
from tests.edge.counter import PLUGIN
from tests.edge.machines import LoopThread
from tests.edge.plant import gateway_yaml, make_plant

from qiantang.edge.config import GatewayConfig
from qiantang.edge.config_file import parse_config
from qiantang.edge.gateway import Gateway
from qiantang.edge.model import Sample, now_ms
from qiantang.edge.outbox import Outbox
from qiantang.edge.registry import ConnectorRegistry

CONNECTORS = ConnectorRegistry()
CONNECTORS.register("counter", PLUGIN)


def _wait(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def _config(
    server: Server, plant: dict[str, Any], folder: Path, name: str, rate: float
) -> GatewayConfig:
    cmp = plant["devices"]["cmp"]
    blocks = f"""
  - product_key: {cmp["product_key"]}
    device_name: {cmp["device_name"]}
    device_secret: {cmp["device_secret"]}
    connector: {{type: counter, rate: {rate}}}
    points: [{{property: count}}]
"""
    text = gateway_yaml(server.mqtt_port, plant, blocks, drain_rate=100, history_batch=1000)
    text = text.replace("outbox.db", f"{name}.db").replace(
        "synchronous: normal", "synchronous: full"
    )
    text = text.replace("health:\n  period_s: 0.5", "health:\n  enabled: false")
    return parse_config(text, f"{name}.yaml", folder, CONNECTORS)


def live(server: Server, plant: dict[str, Any], folder: Path) -> None:
    loop = LoopThread()
    gateway = Gateway(_config(server, plant, folder, "live", 200), CONNECTORS)
    task = loop.spawn(gateway.run())
    time.sleep(10)
    assert gateway.forwarder is not None
    q = statistics.quantiles(sorted(gateway.forwarder.latencies_ms), n=100)
    print(
        f"live: {gateway.forwarder.acked:,} samples acknowledged in 10 s;"
        f" sample-to-reply latency p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms"
    )
    loop.cancel(task)
    loop.close()


def drain(server: Server, plant: dict[str, Any], folder: Path, backlog: int) -> None:
    config = _config(server, plant, folder, "drain", 0.001)
    device = f"{plant['devices']['cmp']['product_key']}/CMP-1"
    base = now_ms() - backlog

    async def fill() -> None:
        box = await Outbox.open(config.outbox.path, 10**7, 10**9)
        await box.put([Sample(device, "count", base + i, i) for i in range(backlog)])
        await box.close()

    loop = LoopThread()
    loop.run(fill())
    gateway = Gateway(config, CONNECTORS)
    start = time.monotonic()
    task = loop.spawn(gateway.run())
    _wait(lambda: gateway.outbox is not None and gateway.outbox.stats_now().depth == 0, 300)
    took = time.monotonic() - start
    print(
        f"drain: {backlog:,} samples in {took:.1f} s = {backlog / took:,.0f} samples/s (connect included)"
    )
    loop.cancel(task)
    loop.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        started = _start(folder / "platform")
        server = next(started)
        plant = make_plant(server.client, server.operator_key, server.base_id, 5)
        live(server, plant, folder)
        # the live gateway's connection must be gone first: the platform drops a gateway's
        # topology when any of its connections closes (tests/edge/test_platform_bugs.py)
        gw = plant["devices"]["gw"]["id"]
        _wait(lambda: not plant["eng"].get(f"/devices/{gw}/state").json()["online"], 30)
        drain(server, plant, folder, 50_000)
        for _ in started:
            pass


if __name__ == "__main__":
    main()
