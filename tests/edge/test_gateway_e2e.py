"""Acceptance: a real asyncua server and a real pymodbus server simulate a machine each, a
Qiantang platform runs, and `qiantang gateway run` (a separate process) connects them.

Values arrive under the right sub-devices with the right types and scaling; the gateway
reports its health; a property set from the platform API changes the OPC UA node and the
Modbus register; OPC UA methods answer as services (async and sync); `gateway check`
validates and probes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncua")
pytest.importorskip("pymodbus")
pytest.importorskip("aiomqtt")

from tests.conftest import Server
from tests.e2e.test_alink_telemetry import wait_for
from tests.edge.machines import LoopThread, ModbusMachine, OpcUaMachine
from tests.edge.plant import gateway_yaml, machine_blocks, make_plant


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "qiantang.cli.gateway", *args]


@pytest.fixture(scope="module")
def rig(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    plant = make_plant(server.client, server.operator_key, server.base_id, 1)
    loop = LoopThread()
    opcua, modbus = OpcUaMachine(), ModbusMachine()
    loop.run(opcua.start())
    loop.run(modbus.start())
    folder = tmp_path_factory.mktemp("gateway")
    config = folder / "gateway.yaml"
    config.write_text(
        gateway_yaml(
            server.mqtt_port, plant, machine_blocks(plant, opcua.endpoint, opcua.ns, modbus.port)
        )
    )
    log = (folder / "gateway.log").open("w")
    proc = subprocess.Popen(
        gateway_command("run", str(config)),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    try:
        yield {
            "plant": plant,
            "loop": loop,
            "opcua": opcua,
            "modbus": modbus,
            "proc": proc,
            "config": config,
            "folder": folder,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            log.close()
            if proc.poll() is None:
                proc.kill()
            loop.run(opcua.stop())
            loop.run(modbus.stop())
            loop.close()


def properties(rig: dict[str, Any], key: str) -> dict[str, Any]:
    dev = rig["plant"]["devices"][key]
    got = rig["plant"]["eng"].get(f"/devices/{dev['id']}/properties")
    assert got.status_code == 200, got.text
    return {k: v["value"] for k, v in got.json()["properties"].items()}


def test_values_arrive_under_the_right_sub_devices(rig: dict[str, Any]) -> None:
    imm = wait_for(
        lambda: (
            (p := properties(rig, "imm")).keys() >= {"temperature", "speed", "setpoint", "running"}
            and p
        ),
        timeout=30,
    )
    assert isinstance(imm["temperature"], float) and 15.0 <= imm["temperature"] <= 25.0
    assert isinstance(imm["speed"], int) and imm["speed"] > 1000
    assert imm["running"] is False and imm["setpoint"] == pytest.approx(10.0)
    cmp = wait_for(
        lambda: (
            (p := properties(rig, "cmp")).keys()
            >= {"pressure", "temperature", "count", "name", "running"}
            and p
        ),
        timeout=30,
    )
    assert isinstance(cmp["pressure"], float) and 6.0 <= cmp["pressure"] < 7.0
    assert (
        isinstance(cmp["temperature"], float) and 23.5 <= cmp["temperature"] < 25.5
    )  # raw 235..254, scale 0.1
    assert isinstance(cmp["count"], int) and cmp["running"] is True and cmp["name"] == "CMP-7"
    first = cmp["count"]
    wait_for(lambda: properties(rig, "cmp")["count"] > first)  # live data keeps coming
    # nothing from the machines landed on the gateway device itself
    gw = wait_for(lambda: (p := properties(rig, "gw")).get("edge_status") == "ok" and p)
    assert not gw.keys() & {"temperature", "pressure", "speed"}
    assert gw["edge_dropped"] == 0 and gw["edge_connectors_down"] == 0
    imm_key = f"{rig['plant']['devices']['imm']['product_key']}/IMM-1"
    assert f"{imm_key}=up" in gw["edge_connectors"]


def test_property_set_reaches_the_opcua_node_and_the_modbus_register(rig: dict[str, Any]) -> None:
    eng, devices = rig["plant"]["eng"], rig["plant"]["devices"]
    wait_for(lambda: eng.get(f"/devices/{devices['cmp']['id']}/state").json()["online"])
    for key in ("imm", "cmp"):
        r = eng.post(
            f"/devices/{devices[key]['id']}/properties/set", json={"params": {"setpoint": 42.5}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "replied" and r.json()["code"] == 200, r.json()
    assert rig["loop"].run(rig["opcua"].value("Setpoint")) == pytest.approx(42.5)
    assert rig["loop"].run(rig["modbus"].get(3, 3)) == [425]  # 42.5 / scale 0.1
    wait_for(lambda: properties(rig, "cmp")["setpoint"] == pytest.approx(42.5))  # and read back
    r = eng.post(
        f"/devices/{devices['cmp']['id']}/properties/set", json={"params": {"running": False}}
    )
    assert r.json()["status"] == "replied", r.json()
    assert rig["loop"].run(rig["modbus"].get(1, 0)) == [False]


def test_opcua_methods_answer_as_services(rig: dict[str, Any]) -> None:
    eng, imm = rig["plant"]["eng"], rig["plant"]["devices"]["imm"]
    wait_for(lambda: eng.get(f"/devices/{imm['id']}/state").json()["online"])
    sent = eng.post(
        f"/devices/{imm['id']}/services/start", json={"params": {"speed": 1500}, "wait": False}
    ).json()
    done = wait_for(
        lambda: (c := eng.get(f"/commands/{sent['id']}").json())["status"] == "replied" and c
    )
    assert done["output"] == {"ok": True}
    assert rig["opcua"].started_with[-1] == 1500
    sync = eng.post(f"/devices/{imm['id']}/services/reset", json={}).json()
    assert sync["status"] == "replied" and sync["output"] == {"code": 7}, sync


def test_check_validates_and_probes(rig: dict[str, Any]) -> None:
    ok = subprocess.run(
        gateway_command("check", str(rig["config"])), capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("\nok  ") == 3 and "FAIL" not in ok.stdout
    broken = Path(rig["folder"]) / "broken.yaml"
    broken.write_text(rig["config"].read_text().replace("unit_id: 1", "unit_id: 300"))
    bad = subprocess.run(
        gateway_command("check", str(broken)), capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    line = next(
        i for i, text in enumerate(broken.read_text().splitlines(), 1) if "unit_id: 300" in text
    )
    assert (
        f"broken.yaml:{line}: devices[1].connector.unit_id: Input should be less than or equal to 247"
        in bad.stderr
    ), bad.stderr
