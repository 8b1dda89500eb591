"""Sparkplug B edge nodes against the platform's host application, over a real socket.

The edge node is `tests/e2e/sparkplug_edge_node.py`, built on pysparkplug 0.6.1 from PyPI.
pysparkplug pins paho-mqtt < 2 (Qiantang uses paho-mqtt 2), so it runs in a virtual
environment of its own: ``$QIANTANG_SPARKPLUG_VENV`` (``scripts/test.sh`` creates it), else
``~/.cache/qiantang/sparkplug-venv``, created here on first use.

Births (metrics with names, aliases and data types), data by alias, a deliberate sequence
gap, a write, deaths and the will: metrics queryable under the right devices through the
REST API, the gap answered by a rebirth request the edge node receives, deaths and a lost
connection marking node and devices offline.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.conftest import Server
from tests.e2e.test_alink_telemetry import wait_for
from tests.helpers.tenants import enterprise_with_user

PYSPARKPLUG = "pysparkplug==0.6.1"
EDGE_NODE = Path(__file__).with_name("sparkplug_edge_node.py")
NODE = "EdgeNode-01"
REBIRTH = "Node Control/Rebirth"


def sparkplug_python() -> Path:
    """The interpreter of the edge node's virtual environment, created if needed."""
    default = Path.home() / ".cache" / "qiantang" / "sparkplug-venv"
    venv = Path(os.environ.get("QIANTANG_SPARKPLUG_VENV", default))
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import pysparkplug; assert pysparkplug.__version__ == '0.6.1'"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, PYSPARKPLUG], check=True, timeout=600)
    return python


class EdgeProcess:
    """The edge node program: commands on its stdin, events from its stdout."""

    def __init__(self, python: Path, port: int, token: str, group: str) -> None:
        args = [str(python), str(EDGE_NODE), "--port", str(port), "--token", token]
        self.proc = subprocess.Popen(
            [*args, "--group", group, "--node", NODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.pending: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def expect(
        self, event: str, where: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> dict[str, Any]:
        """The oldest event of this kind not taken yet that satisfies `where` (waiting 15 s
        at most); events of other kinds stay for later calls."""
        for i, got in enumerate(self.pending):
            if got["event"] == event and where(got):
                return self.pending.pop(i)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                got = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got["event"] == event and where(got):
                return got
            self.pending.append(got)
        raise AssertionError(f"no {event} event; pending {self.pending[-10:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send(cmd="exit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def python() -> Path:
    return sparkplug_python()


@pytest.fixture(scope="module")
def rig(server: Server) -> dict[str, Any]:
    eng, ent = enterprise_with_user(server, "火花塞工厂", "91330200MA2B00301", "spb-eng")
    empty = {"properties": [], "events": [], "services": []}
    node_product = eng.post(
        "/products",
        json={
            "enterprise_id": ent["id"],
            "name": "边缘节点",
            "node_type": "gateway",
            "thing_model": empty,
        },
    ).json()
    devices = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "现场设备", "thing_model": empty}
    ).json()
    node = eng.post("/devices", json={"product_id": node_product["id"], "device_name": NODE})
    node_id = node.json()["id"]
    patched = eng.patch(f"/devices/{node_id}", json={"provision_product_id": devices["id"]})
    assert patched.status_code == 200, patched.text
    token = eng.post(f"/devices/{node_id}/access-token").json()["access_token"]
    return {
        "eng": eng,
        "group": node_product["product_key"],
        "node_product": node_product["id"],
        "device_product": devices["id"],
        "node_id": node_id,
        "token": token,
        "port": server.mqtt_port,
    }


@pytest.fixture
def edge(rig: dict[str, Any], python: Path) -> Iterator[EdgeProcess]:
    process = EdgeProcess(python, rig["port"], rig["token"], rig["group"])
    yield process
    process.close()


def values(eng: httpx.Client, device_id: int, prop: str) -> list[Any]:
    r = eng.get(f"/devices/{device_id}/telemetry", params={"property": prop})
    assert r.status_code == 200, r.text
    return [p["value"] for p in r.json()["points"]]


def online(eng: httpx.Client, device_id: int) -> bool:
    return bool(eng.get(f"/devices/{device_id}/state").json()["online"])


def devices_by_name(rig: dict[str, Any]) -> dict[str, int]:
    page = rig["eng"].get("/devices", params={"product_id": rig["device_product"]}).json()
    return {d["device_name"]: d["id"] for d in page["items"]}


def test_births_data_gap_write_and_death(rig: dict[str, Any], edge: EdgeProcess) -> None:
    eng = rig["eng"]
    state = edge.expect("state")
    assert state["online"] is True and state["timestamp"] > 0  # the host's STATE, pushed
    edge.expect("born")
    devices = wait_for(lambda: (d := devices_by_name(rig)) and len(d) == 2 and d)
    boiler, pump = devices["Boiler-01"], devices["Pump-0001"]
    # births extended both models: metric names kept, identifiers by the naming rule
    model = eng.get(f"/products/{rig['device_product']}").json()["thing_model"]
    props = {p["identifier"]: p for p in model["properties"]}
    assert set(props) == {"Inputs_A", "Inputs_B", "Outputs_Valve", "Speed"}
    assert props["Inputs_A"]["name"] == "Inputs/A"
    assert props["Outputs_Valve"]["data_type"]["type"] == "bool"
    node_model = eng.get(f"/products/{rig['node_product']}").json()["thing_model"]
    assert {p["identifier"] for p in node_model["properties"]} == {
        "Properties_Version",
        "Temperature",
    }
    # the births' values, then data by alias only, land under the right devices
    assert wait_for(lambda: values(eng, boiler, "Inputs_A") == [20.25])
    assert wait_for(lambda: values(eng, pump, "Speed") == [1450.0])
    assert online(eng, boiler) and online(eng, pump) and online(eng, rig["node_id"])
    edge.send(cmd="ddata", device="Boiler-01", values=[[10, 21.5], [11, 7]])
    edge.send(cmd="ndata", values=[[2, 31.25]])
    wait_for(lambda: 21.5 in values(eng, boiler, "Inputs_A"))
    assert values(eng, boiler, "Inputs_B") == [-3, 7]
    wait_for(lambda: 31.25 in values(eng, rig["node_id"], "Temperature"))
    assert values(eng, pump, "Inputs_A") == []  # nothing crossed over to the other device

    # a sequence gap: the message is dropped and the node is asked for a rebirth
    edge.send(cmd="gap")
    edge.send(cmd="ddata", device="Boiler-01", values=[[10, 99.0]])
    ncmd = edge.expect("ncmd")
    assert ncmd["metrics"] == [{"name": REBIRTH, "alias": None, "value": True}]
    edge.expect("born")
    edge.send(cmd="ddata", device="Boiler-01", values=[[10, 22.5]])
    wait_for(lambda: 22.5 in values(eng, boiler, "Inputs_A"))
    # 99.0 is stored once: from the rebirth's DBIRTH (the node's current value), not also
    # from the dropped DDATA
    assert values(eng, boiler, "Inputs_A").count(99.0) == 1
    log = eng.get(f"/devices/{boiler}/message-log").json()["entries"]
    assert any(e["outcome"] == "rebirth" and "seq" in e["reason"] for e in log)

    # a write goes out as a DCMD by alias; the device reports the new value back
    sent = eng.post(f"/devices/{boiler}/properties/set", json={"params": {"Outputs_Valve": True}})
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "replied" and "DCMD" in sent.json()["message"]
    dcmd = edge.expect("dcmd")
    assert dcmd["device"] == "Boiler-01" and dcmd["metrics"][0]["alias"] == 12
    assert dcmd["metrics"][0]["value"] is True
    wait_for(lambda: True in values(eng, boiler, "Outputs_Valve"))
    # and to the node's own metrics as an NCMD (the node also holds a ThingsBoard token)
    node_set = eng.post(
        f"/devices/{rig['node_id']}/properties/set", json={"params": {"Temperature": 25.0}}
    )
    assert node_set.json()["status"] == "replied" and "NCMD" in node_set.json()["message"]
    ncmd = edge.expect("ncmd", lambda e: e["metrics"][0]["alias"] == 2)
    assert ncmd["metrics"] == [{"name": None, "alias": 2, "value": 25.0}]

    # DDEATH takes one device offline; NDEATH the node and the rest
    edge.send(cmd="ddeath", device="Pump-0001")
    wait_for(lambda: not online(eng, pump))
    assert online(eng, boiler)
    edge.send(cmd="death")
    wait_for(lambda: not online(eng, boiler))
    wait_for(lambda: not online(eng, rig["node_id"]))
    offline = eng.post(f"/devices/{boiler}/properties/set", json={"params": {"Outputs_Valve": 0}})
    assert offline.json()["status"] == "offline"


def test_lost_connection_is_the_will(rig: dict[str, Any], edge: EdgeProcess) -> None:
    edge.expect("born")
    devices = devices_by_name(rig)
    eng = rig["eng"]
    wait_for(lambda: online(eng, devices["Boiler-01"]) and online(eng, devices["Pump-0001"]))
    edge.proc.kill()  # no NDEATH, no DISCONNECT: the socket just goes
    edge.proc.wait(10)
    wait_for(lambda: not online(eng, devices["Boiler-01"]))
    assert not online(eng, devices["Pump-0001"])


def test_a_node_is_confined_to_its_own_topics(rig: dict[str, Any]) -> None:
    """Publishing as another edge node stores nothing; another node's commands and foreign
    STATE topics cannot be subscribed to."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "spb-acl", protocol=mqtt.MQTTv311)
    client.username_pw_set(rig["token"])
    granted: list[list[int]] = []
    client.on_subscribe = lambda c, u, mid, rcs, p: granted.append([rc.value for rc in rcs])
    client.connect("127.0.0.1", rig["port"])
    client.loop_start()
    try:
        group = rig["group"]
        for topic_filter in (
            f"spBv1.0/{group}/NCMD/OtherNode",
            f"spBv1.0/{group}/#",
            "spBv1.0/STATE/other-host",
            f"spBv1.0/{group}/NCMD/{NODE}",
        ):
            client.subscribe(topic_filter, qos=1)
        wait_for(lambda: len(granted) == 4)
        assert granted == [[0x80], [0x80], [0x80], [1]]
        before = rig["eng"].get(f"/devices/{rig['node_id']}/message-log").json()["entries"]
        client.publish(f"spBv1.0/{group}/NBIRTH/OtherNode", b"\x08\x01", qos=1).wait_for_publish(5)
        client.publish(f"spBv1.0/{group}/NBIRTH/{NODE}", b"\xff", qos=1).wait_for_publish(5)
        # the second (allowed, unreadable) message is judged; the first never arrived
        log = wait_for(
            lambda: (
                (e := rig["eng"].get(f"/devices/{rig['node_id']}/message-log").json()["entries"])
                and len(e) > len(before)
                and e
            )
        )
        assert [x["topic"] for x in log[: len(log) - len(before)]] == [
            f"spBv1.0/{group}/NBIRTH/{NODE}"
        ]
        assert log[0]["outcome"] == "rejected" and "protobuf" in log[0]["reason"]
    finally:
        client.disconnect()
        client.loop_stop()
