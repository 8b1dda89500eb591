"""Store and forward across a platform outage: the platform (`qiantang serve`, a child
process) stops while a sub-device keeps producing; the bounded outbox keeps what fits,
drops the oldest and counts them exactly; when the platform is back the backlog drains
while live data keeps flowing, and every sample not counted as dropped is stored."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("aiomqtt")

from qiantang.edge.config_file import parse_config
from qiantang.edge.gateway import Gateway
from qiantang.edge.registry import ConnectorRegistry
from tests.edge.counter import PLUGIN, CounterConnector
from tests.edge.machines import LoopThread
from tests.edge.plant import gateway_yaml, make_plant
from tests.integration.test_durability import Platform

BOUND = 300


def until(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.02)
    return got


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    p = Platform(tmp_path / "platform")
    p.start()
    yield p
    if p.proc is not None and p.proc.poll() is None:
        p.stop(signal.SIGTERM)


def test_outbox_survives_an_outage_and_counts_what_it_dropped(
    platform: Platform, tmp_path: Path
) -> None:
    def client(token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=f"http://127.0.0.1:{platform.http_port}/api/v1", headers=headers, timeout=30
        )

    base_id = client(platform.key).get("/me").json()["platform_roles"][0]["platform_id"]
    plant = make_plant(client, platform.key, base_id, 2)
    cmp = plant["devices"]["cmp"]
    blocks = f"""
  - product_key: {cmp["product_key"]}
    device_name: {cmp["device_name"]}
    device_secret: {cmp["device_secret"]}
    connector: {{type: counter, rate: 100}}
    points: [{{property: count}}]
"""
    text = gateway_yaml(
        platform.mqtt_port, plant, blocks, max_samples=BOUND, drain_rate=4, history_batch=10
    )
    text = text.replace("health:\n  period_s: 0.5", "health:\n  enabled: false")
    connectors = ConnectorRegistry()
    connectors.register("counter", PLUGIN)
    config = parse_config(text, "outage.yaml", tmp_path, connectors)
    gateway = Gateway(config, connectors)
    counter = next(c for c in gateway.connectors.values() if isinstance(c, CounterConnector))
    loop = LoopThread()
    running = loop.spawn(gateway.run())
    eng = plant["eng"]

    def latest() -> int:
        got = eng.get(f"/devices/{cmp['id']}/properties").json()["properties"]
        return int(got.get("count", {}).get("value", -1))

    try:
        until(lambda: latest() >= 50, what="live data")
        # quiesce so that nothing is in flight when the platform goes (see docs/edge.md)
        counter.running.clear()
        until(lambda: gateway.outbox is not None and gateway.outbox.stats_now().depth == 0)
        platform.stop(signal.SIGTERM)
        counter.running.set()
        until(lambda: gateway.outbox.stats_now().dropped >= 200, what="overflow")  # type: ignore[union-attr]
        assert gateway.outbox.stats_now().depth == BOUND  # type: ignore[union-attr]
        at_restart = counter.generated
        platform.start()
        # live data arrives while the backlog is still draining (4 msgs/s of 10 samples)
        until(lambda: latest() >= at_restart, what="live data after the restart")
        assert gateway.outbox.stats_now().depth > BOUND / 2  # type: ignore[union-attr]
        until(lambda: gateway.outbox.stats_now().depth < 20, what="backlog drained")  # type: ignore[union-attr]
        counter.running.clear()
        until(lambda: gateway.outbox.stats_now().depth == 0)  # type: ignore[union-attr]
        generated, dropped = counter.generated, gateway.outbox.stats_now().dropped  # type: ignore[union-attr]
    finally:
        loop.cancel(running)
        loop.close()
    platform.stop(signal.SIGTERM)
    stored = platform.stored_counts(cmp["id"])
    missing = set(range(generated)) - stored
    print(f"outage: generated {generated}, dropped {dropped}, stored {len(stored)}")
    assert len(missing) == dropped > 0, f"missing {min(missing)}..{max(missing)}: {len(missing)}"
    assert max(missing) - min(missing) + 1 == len(missing)  # the oldest of the backlog, in one run
    assert stored <= set(range(generated))
