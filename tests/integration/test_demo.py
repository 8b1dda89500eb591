"""`qiantang demo` as a user runs it: a subprocess on free ports that seeds the province,
brings up the platform, the simulator and the edge gateway; values arrive from direct and
gateway devices; SIGINT stops it with no child left behind; a second run reuses the data
directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from tests.conftest import free_port

pytest.importorskip("asyncua")
pytest.importorskip("pymodbus")
pytest.importorskip("aiomqtt")

T = TypeVar("T")
PASSWORD = "qiantang-demo"


def wait_for(probe: Callable[[], T | None], timeout: float, proc: subprocess.Popen[str]) -> T:
    """Poll `probe` until it returns something truthy; fail if the demo exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the demo exited with {proc.returncode}"
        try:
            result = probe()
        except httpx.TransportError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("timed out")


class Demo:
    """One `qiantang demo` process and API clients for it."""

    def __init__(self, data_dir: Path) -> None:
        self.port, self.mqtt_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.out = (data_dir.parent / f"demo-{self.port}.out").open("w+")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qiantang.cli",
                "demo",
                "--devices",
                "20",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                "--mqtt-port",
                str(self.mqtt_port),
            ],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "QIANTANG_SECRET_KEY": "d" * 32},
        )

    def login(self, username: str) -> httpx.Client:
        def attempt() -> str | None:
            r = httpx.post(
                f"{self.url}/auth/login",
                json={"username": username, "password": PASSWORD},
                timeout=5,
            )
            return str(r.json()["token"]) if r.status_code == 200 else None

        token = wait_for(attempt, 120, self.proc)
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def output(self) -> str:
        self.out.flush()
        return Path(self.out.name).read_text()

    def interrupt(self) -> tuple[int, list[psutil.Process]]:
        """SIGINT; returns the exit code and the children it had just before."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=60)
        return code, children

    def close(self) -> None:
        if self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.out.close()


def properties(client: httpx.Client, device_id: int) -> dict[str, Any]:
    got = client.get(f"/devices/{device_id}/properties")
    assert got.status_code == 200, got.text
    return {k: v["value"] for k, v in got.json()["properties"].items()}


def test_the_demo_seeds_runs_stops_cleanly_and_runs_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    demo = Demo(data_dir)
    try:
        province = demo.login("province")
        platforms = province.get("/platforms", params={"limit": 100}).json()["items"]
        names = {p["name"]: p["kind"] for p in platforms}
        for name in ("纺织行业工业互联网平台", "模具行业工业互联网平台", "泵阀行业工业互联网平台"):
            assert names[name] == "industry"
        assert names["绍兴柯桥区工业互联网平台"] == names["宁波市工业互联网平台"] == "region"
        assert "enterprise" in names.values() and "base" in names.values()
        assert province.get("/enterprises").json()["total"] >= 10

        admin = demo.login("haishu-admin")  # the enterprise behind the edge gateway
        devices = {
            d["device_name"]: d
            for d in admin.get("/devices", params={"limit": 100}).json()["items"]
        }
        assert {
            "CNC-0001",
            "IMM-0001",
            "CMP-0001",
            "PM-0001",
            "GW-0001",
            "CNC-0002",
        } <= devices.keys()
        # gateway devices: CNC-0001 on OPC UA, CMP-0001 on Modbus; CNC-0002 direct over MQTT
        cnc_opcua = wait_for(
            lambda: (
                (p := properties(admin, devices["CNC-0001"]["id"])).get("toolWear") is not None
                and p
            ),
            90,
            demo.proc,
        )
        assert 0.0 <= cnc_opcua["toolWear"] <= 100.0 and cnc_opcua["machineState"] in (0, 1, 2, 3)
        assert isinstance(cnc_opcua["programName"], str)  # text: only OPC UA carries it
        cmp_modbus = wait_for(
            lambda: (
                (p := properties(admin, devices["CMP-0001"]["id"])).get("exhaustPressure")
                is not None
                and p
            ),
            90,
            demo.proc,
        )
        assert 0.0 <= cmp_modbus["exhaustPressure"] <= 1.0
        assert "controllerVersion" not in cmp_modbus  # text is not on the Modbus map
        direct = wait_for(
            lambda: (p := properties(admin, devices["CNC-0002"]["id"])).get("axisPosition") and p,
            60,
            demo.proc,
        )
        assert set(direct["axisPosition"]) == {"x", "y", "z"}  # structs come over Alink only
        gateway = wait_for(
            lambda: (
                (p := properties(admin, devices["GW-0001"]["id"])).get("edge_connectors_down") == 0
                and p
            ),
            60,
            demo.proc,
        )
        assert gateway["edge_status"] == "ok"

        # downlink: a property set and a sync service to direct devices, a set through the gateway
        cnc2, imm2, cnc1 = (devices[n]["id"] for n in ("CNC-0002", "IMM-0002", "CNC-0001"))
        done = admin.post(
            f"/devices/{cnc2}/properties/set", json={"params": {"feedOverride": 80}}
        ).json()
        assert done["status"] == "replied" and done["code"] == 200, done
        wait_for(lambda: properties(admin, cnc2)["feedOverride"] == 80, 30, demo.proc)
        stop = admin.post(f"/devices/{imm2}/services/emergencyStop", json={}).json()
        assert stop["status"] == "replied" and stop["output"] == {"result": True}, stop
        wait_for(lambda: properties(admin, imm2)["heaterOn"] is False, 30, demo.proc)
        via = admin.post(
            f"/devices/{cnc1}/properties/set", json={"params": {"feedOverride": 70}}
        ).json()
        assert via["status"] == "replied" and via["code"] == 200, via
        wait_for(lambda: properties(admin, cnc1)["feedOverride"] == 70, 30, demo.proc)

        indicators = province.get("/platforms/1/indicators").json()
        assert indicators["devices"] == 21 and indicators["devices_online"] >= 2
        # enterprises are members of an industry and a region platform at once, so the
        # children's figures overlap; their home figures partition the province, at every node
        members = sum(c["devices"] for c in indicators["children"])
        assert members > indicators["devices"]

        def home_sum(node: dict[str, Any], key: str) -> int:
            return int(node["own"]["home"][key] + sum(c["home"][key] for c in node["children"]))

        for key in ("enterprises", "products", "devices"):
            assert home_sum(indicators, key) == indicators[key], key
        for child in indicators["children"]:
            below = province.get(f"/platforms/{child['platform_id']}/indicators").json()
            for key in ("enterprises", "products", "devices"):
                assert home_sum(below, key) == child["home"][key], (child["name"], key)
        assert "console:  http://127.0.0.1:" in demo.output()
        assert "haishu-viewer" in demo.output() and PASSWORD in demo.output()

        code, children = demo.interrupt()
        assert code == 0, demo.output()
        assert len(children) >= 2  # the simulator and the gateway
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert "demo stopped" in demo.output()
    finally:
        demo.close()

    again = Demo(data_dir)
    try:
        admin = again.login("haishu-admin")
        assert admin.get("/devices").json()["total"] == len(devices)  # nothing made twice
        wait_for(
            lambda: "province ready (reused from the last run)" in again.output(), 30, again.proc
        )
        code, _ = again.interrupt()
        assert code == 0, again.output()
    finally:
        again.close()
