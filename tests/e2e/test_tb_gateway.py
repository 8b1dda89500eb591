"""The real thingsboard-gateway package (PyPI) against a real `qiantang serve`.

The gateway runs in a virtual environment of its own (``.venv-tbgw/`` in the repo root,
created once and reused): its Modbus connector pins pymodbus 3.9.2, and ours differs. Its
Modbus connector polls a real pymodbus server (`tests.edge.machines.ModbusMachine`); its
MQTT client (the ThingsBoard SDK on paho) speaks MQTT 5 only, which the embedded broker
translates. The test shows: the gateway reports itself connected (it asked for
``getSessionLimits`` and got an answer), its device is auto-provisioned into the product
chosen for the gateway, the polled values are queryable over the REST API, and a service call
from Qiantang arrives as a Modbus register write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.e2e.test_alink_telemetry import wait_for
from tests.edge.machines import LoopThread, ModbusMachine
from tests.helpers.tenants import enterprise_with_user

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-tbgw"
REQUIREMENTS = [
    "thingsboard-gateway==3.8.5",
    "pymodbus==3.9.2",  # what its Modbus connector pins (it would pip-install it at start)
    "pyserial==3.5",
    "pyserial-asyncio==0.6",
]
DEVICE = "Compressor-7"
F = {"type": "float", "specs": {"min": -1000, "max": 1000}}
MODEL = {
    "properties": [
        {"identifier": "temperature", "name": "温度", "access_mode": "r", "data_type": F},
        {"identifier": "pressure", "name": "压力", "access_mode": "r", "data_type": F},
        {"identifier": "setpoint", "name": "设定值", "access_mode": "r", "data_type": F},
    ],
    "events": [],
    "services": [
        {
            "identifier": "setSetpoint",
            "name": "写设定值",
            "call_type": "async",
            "input_data": [
                {
                    "identifier": "params",
                    "name": "寄存器值",
                    "data_type": {"type": "int", "specs": {"min": 0, "max": 65535}},
                }
            ],
            "output_data": [  # the Modbus connector answers {"value": <the value written>}
                {
                    "identifier": "result",
                    "name": "写入值",
                    "data_type": {"type": "int", "specs": {"min": 0, "max": 65535}},
                }
            ],
        },
        {  # not configured in the gateway: it answers "Method not found"
            "identifier": "resetAlarm",
            "name": "复位报警",
            "call_type": "async",
            "input_data": [],
            "output_data": [],
        },
    ],
}


def _gateway_python() -> Path:
    """The venv's interpreter, created and filled on first use (a stamp file records what
    was installed, so a changed pin rebuilds it)."""
    python = VENV / "bin" / "python"
    stamp = VENV / "qiantang-requirements.txt"
    wanted = "\n".join(REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    venv.EnvBuilder(clear=True, with_pip=True).create(VENV)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
        check=True,
        timeout=600,
    )
    stamp.write_text(wanted)
    return python


@pytest.fixture(scope="session")
def gateway_python() -> Path:
    """The interpreter of the thingsboard-gateway venv."""
    return _gateway_python()


def _qiantang(*args: str, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qiantang.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        **kw,
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`qiantang serve` as a subprocess, bootstrapped; its MQTT port on a free port."""
    data = tmp_path_factory.mktemp("qiantang-serve")
    http_port, mqtt_port = free_port(), free_port()
    env = {**os.environ, "QIANTANG_DATA_DIR": str(data), "QIANTANG_MQTT_PORT": str(mqtt_port)}
    boot = _qiantang("admin", "bootstrap", "--password", "change-me-now", env=env)
    key = boot.stdout.split("API key (shown once): ")[1].split()[0]
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qiantang.cli", "serve", "--port", str(http_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_for(lambda: proc.poll() is not None or _answers(url), timeout=60)
        assert proc.poll() is None, (data / "serve.log").read_text()
        op = httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {key}"})
        base = next(p for p in op.get("/platforms").json()["items"] if p["kind"] == "base")
        yield Server(url, key, base["id"], data, mqtt_port, runtime=None)  # type: ignore[arg-type]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def compressor() -> Iterator[ModbusMachine]:
    """The pymodbus server the gateway polls (holding registers: 0-1 pressure float32, word
    order little; 2 temperature int16 tenths; 3 setpoint uint16 tenths)."""
    loop = LoopThread()
    machine = ModbusMachine()
    loop.run(machine.start())
    machine.loop = loop  # type: ignore[attr-defined]
    try:
        yield machine
    finally:
        loop.run(machine.stop())
        loop.close()


def _modbus_config(port: int) -> dict[str, Any]:
    register = {"functionCode": 3, "objectsCount": 1}
    return {
        "master": {
            "slaves": [
                {
                    "host": "127.0.0.1",
                    "port": port,
                    "type": "tcp",
                    "method": "socket",
                    "unitId": ModbusMachine.UNIT,
                    "deviceName": DEVICE,
                    "deviceType": "compressor",
                    "timeout": 5,
                    "byteOrder": "BIG",
                    "wordOrder": "LITTLE",
                    "retries": 3,
                    "pollPeriod": 200,
                    "connectAttemptTimeMs": 500,
                    "connectAttemptCount": 5,
                    "waitAfterFailedAttemptsMs": 1000,
                    "attributes": [],
                    "timeseries": [
                        {"tag": "temperature", "type": "16int", "address": 2, "divider": 10}
                        | register,
                        {"tag": "setpoint", "type": "16uint", "address": 3, "divider": 10}
                        | register,
                        {"tag": "pressure", "type": "32float", "address": 0}
                        | register
                        | {"objectsCount": 2},
                    ],
                    "attributeUpdates": [],
                    "rpc": [
                        {
                            "tag": "setSetpoint",
                            "type": "16uint",
                            "functionCode": 6,
                            "objectsCount": 1,
                            "address": 3,
                        }
                    ],
                }
            ]
        }
    }


def _gateway_config(mqtt_port: int, token: str) -> dict[str, Any]:
    return {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False},
            "maxPayloadSizeBytes": 8196,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 60,
            "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": token},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}],
    }


@pytest.fixture(scope="module")
def rig(
    platform: Server, compressor: ModbusMachine, gateway_python: Path, tmp_path_factory: Any
) -> Iterator[dict[str, Any]]:
    """A tenant, the gateway's product and device, and the gateway running against them."""
    eng, ent = enterprise_with_user(platform, "TB网关工厂", "91330200MA2B00202", "tbgw-eng")
    meters = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "空压机", "thing_model": MODEL}
    ).json()
    gw_product = eng.post(
        "/products",
        json={"enterprise_id": ent["id"], "name": "TB边缘网关", "node_type": "gateway"},
    ).json()
    gateway = eng.post(
        "/devices", json={"product_id": gw_product["id"], "device_name": "TBGW-1"}
    ).json()
    patched = eng.patch(f"/devices/{gateway['id']}", json={"provision_product_id": meters["id"]})
    assert patched.status_code == 200, patched.text
    token = eng.post(f"/devices/{gateway['id']}/access-token").json()["access_token"]
    home = tmp_path_factory.mktemp("tbgw")
    config = home / "config"
    config.mkdir()
    (config / "tb_gateway.json").write_text(json.dumps(_gateway_config(platform.mqtt_port, token)))
    (config / "modbus.json").write_text(json.dumps(_modbus_config(compressor.port)))
    (config / "logs.json").write_text(json.dumps(_LOGS))
    out = (home / "gateway.log").open("wb")
    env = {**os.environ, "TB_GW_CONFIG_DIR": str(config) + "/"}
    proc = subprocess.Popen(
        [str(gateway_python), "-m", "thingsboard_gateway.tb_gateway"],
        cwd=home,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        yield {"eng": eng, "gateway": gateway, "product": meters, "proc": proc, "home": home}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        out.close()


_LOGS = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(name)s] %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"level": "INFO", "handlers": ["console"]},
}


def _log(rig: dict[str, Any]) -> str:
    return (rig["home"] / "gateway.log").read_text(errors="replace")


def _device(rig: dict[str, Any]) -> dict[str, Any] | None:
    items = rig["eng"].get("/devices", params={"product_id": rig["product"]["id"]}).json()["items"]
    return next((d for d in items if d["device_name"] == DEVICE), None)


def test_gateway_connects_and_its_device_reports(rig: dict[str, Any]) -> None:
    eng = rig["eng"]
    wait_for(lambda: rig["proc"].poll() is not None or _device(rig), timeout=60)
    assert rig["proc"].poll() is None, _log(rig)
    device = _device(rig)
    assert device is not None, _log(rig)
    assert eng.get(f"/devices/{rig['gateway']['id']}/state").json()["online"]
    wait_for(lambda: eng.get(f"/devices/{device['id']}/state").json()["online"], timeout=30)
    # the ThingsBoard SDK marks itself connected only once getSessionLimits was answered
    log = eng.get(f"/devices/{rig['gateway']['id']}/message-log").json()["entries"]
    assert any("getSessionLimits" in e["reason"] for e in log), log

    def latest() -> dict[str, Any] | None:
        props = eng.get(f"/devices/{device['id']}/properties").json()["properties"]
        return props if {"temperature", "pressure", "setpoint"} <= props.keys() else None

    props = wait_for(latest, timeout=30)
    assert 23.5 <= props["temperature"]["value"] <= 25.4
    assert 6.0 <= props["pressure"]["value"] <= 7.0
    assert props["setpoint"]["value"] == 25.0
    points = eng.get(
        f"/devices/{device['id']}/telemetry", params={"property": "temperature"}
    ).json()["points"]
    assert points and all(23.5 <= p["value"] <= 25.4 for p in points)


def test_service_call_writes_the_modbus_register(
    rig: dict[str, Any], compressor: ModbusMachine
) -> None:
    eng = rig["eng"]
    device = wait_for(lambda: _device(rig), timeout=60)
    wait_for(lambda: eng.get(f"/devices/{device['id']}/state").json()["online"], timeout=30)
    loop: LoopThread = compressor.loop  # type: ignore[attr-defined]
    assert loop.run(compressor.get(3, 3)) == [250]
    call = eng.post(
        f"/devices/{device['id']}/services/setSetpoint",
        json={"params": {"params": 420}, "wait": False},
    )
    assert call.status_code in (200, 201, 202), call.text
    wait_for(lambda: loop.run(compressor.get(3, 3)) == [420], timeout=30)
    done = wait_for(
        lambda: (c := eng.get(f"/commands/{call.json()['id']}").json())["status"] != "sent" and c,
        timeout=30,
    )
    assert done["status"] == "replied", json.dumps(done)
    assert done["output"] == {"result": 420}
    wait_for(
        lambda: (
            eng.get(f"/devices/{device['id']}/properties").json()["properties"]["setpoint"]["value"]
            == 42.0
        ),
        timeout=30,
    )


def test_an_rpc_the_gateway_cannot_serve_ends_failed(rig: dict[str, Any]) -> None:
    eng = rig["eng"]
    device = wait_for(lambda: _device(rig), timeout=60)
    call = eng.post(
        f"/devices/{device['id']}/services/resetAlarm", json={"params": {}, "wait": False}
    ).json()
    done = wait_for(
        lambda: (c := eng.get(f"/commands/{call['id']}").json())["status"] != "sent" and c,
        timeout=30,
    )
    assert done["status"] == "failed", done
    assert "Method not found" in done["message"], done
