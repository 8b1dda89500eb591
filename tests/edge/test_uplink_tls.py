"""The uplink over MQTT with TLS: the gateway verifies the platform's certificate (a
throw-away self-signed one for 127.0.0.1) and its data arrives."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiomqtt")

from qiantang.edge.config_file import parse_config
from qiantang.edge.gateway import Gateway
from qiantang.edge.registry import ConnectorRegistry
from tests.conftest import Server, _start, free_port
from tests.edge.counter import PLUGIN
from tests.edge.machines import LoopThread
from tests.edge.plant import gateway_yaml, make_plant
from tests.integration.test_amqtt_ingress import OPENSSL_SELF_SIGNED


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = [openssl, *OPENSSL_SELF_SIGNED.split(), "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    tls_port = free_port()
    started = _start(
        folder / "platform", mqtt_tls_cert=cert, mqtt_tls_key=key, mqtt_tls_port=tls_port
    )
    server = next(started)
    yield server, tls_port, cert
    for _ in started:  # runs the fixture's shutdown
        pass


def test_the_gateway_speaks_tls(tls_server: tuple[Server, int, Path], tmp_path: Path) -> None:
    server, tls_port, cert = tls_server
    plant = make_plant(server.client, server.operator_key, server.base_id, 4)
    cmp = plant["devices"]["cmp"]
    blocks = f"""
  - product_key: {cmp["product_key"]}
    device_name: {cmp["device_name"]}
    device_secret: {cmp["device_secret"]}
    connector: {{type: counter, rate: 50}}
    points: [{{property: count}}]
"""
    text = gateway_yaml(tls_port, plant, blocks).replace(
        "  reply_timeout_s: 5", f"  reply_timeout_s: 5\n  tls: {{enabled: true, ca_file: {cert}}}"
    )
    connectors = ConnectorRegistry()
    connectors.register("counter", PLUGIN)
    gateway = Gateway(parse_config(text, "tls.yaml", tmp_path, connectors), connectors)
    loop = LoopThread()
    task = loop.spawn(gateway.run())
    eng = plant["eng"]
    try:
        deadline = time.monotonic() + 30
        while (
            eng.get(f"/devices/{cmp['id']}/properties")
            .json()["properties"]
            .get("count", {})
            .get("value", -1)
            < 20
        ):
            assert time.monotonic() < deadline and not task.done(), "no data over TLS"
            time.sleep(0.05)
        assert gateway.health.uplink.value == "up"
    finally:
        loop.cancel(task)
        loop.close()
