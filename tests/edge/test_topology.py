"""A sub-device the platform refuses (here: a wrong secret) is left out of the topology and
reported; the gateway's other sub-devices go on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("aiomqtt")

from qiantang.edge.config_file import parse_config
from qiantang.edge.gateway import Gateway
from qiantang.edge.registry import ConnectorRegistry
from tests.conftest import Server
from tests.e2e.test_alink_telemetry import wait_for
from tests.edge.counter import PLUGIN
from tests.edge.machines import LoopThread
from tests.edge.plant import gateway_yaml, make_plant


def test_a_refused_sub_device_does_not_hold_up_the_others(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plant = make_plant(server.client, server.operator_key, server.base_id, 6)
    imm, cmp = plant["devices"]["imm"], plant["devices"]["cmp"]
    blocks = "".join(
        f"""
  - product_key: {d["product_key"]}
    device_name: {d["device_name"]}
    device_secret: {secret}
    connector: {{type: counter, rate: 20}}
    points: [{{property: {prop}}}]
"""
        for d, secret, prop in (
            (imm, "wrong-secret", "speed"),
            (cmp, cmp["device_secret"], "count"),
        )
    )
    connectors = ConnectorRegistry()
    connectors.register("counter", PLUGIN)
    text = gateway_yaml(server.mqtt_port, plant, blocks).replace(
        "property: speed", "property: count"
    )
    gateway = Gateway(parse_config(text, "topo.yaml", tmp_path, connectors), connectors)
    loop = LoopThread()
    eng = plant["eng"]
    with caplog.at_level(logging.INFO, logger="qiantang.edge"):
        task = loop.spawn(gateway.run())
        try:
            wait_for(
                lambda: (
                    eng.get(f"/devices/{cmp['id']}/properties").json()["properties"].get("count")
                ),
                timeout=20,
            )
            gw = wait_for(
                lambda: (
                    (
                        p := eng.get(f"/devices/{plant['devices']['gw']['id']}/properties").json()[
                            "properties"
                        ]
                    )
                    and "refused" in p.get("edge_connectors", {}).get("value", "")
                    and p
                ),
                timeout=20,
            )
        finally:
            loop.cancel(task)
            loop.close()
    assert f"{imm['product_key']}/IMM-1=refused" in gw["edge_connectors"]["value"]
    assert gw["edge_status"]["value"] == "degraded" and "sign" in gw["edge_last_error"]["value"]
    assert eng.get(f"/devices/{imm['id']}/properties").json()["properties"] == {}
    refusals = [r for r in caplog.records if "platform refused sub-device" in r.getMessage()]
    assert len(refusals) == 1  # logged once
