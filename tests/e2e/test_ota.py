"""OTA end to end: upload, push to a device (now, or when it comes back), a resumable
download with Range, progress to 100 and the new version; a verification failure fails."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import time
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.e2e.test_alink_telemetry import MODEL, wait_for
from tests.helpers.mqtt import Device
from tests.helpers.tenants import enterprise_with_user


@pytest.fixture(scope="module")
def rig(server: Server) -> dict[str, Any]:
    op = server.client(server.operator_key)
    eng, ent = enterprise_with_user(server, "升级测试厂", "91330200MA2B00091", "ota-eng")
    product = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "控制器", "thing_model": MODEL}
    ).json()
    devices = [
        eng.post("/devices", json={"product_id": product["id"], "device_name": f"OTA-{i}"}).json()
        for i in range(2)
    ]
    return {"eng": eng, "op": op, "product": product, "devices": devices, "server": server}


def listening(rig: dict[str, Any], index: int) -> Device:
    dev = rig["devices"][index]
    d = Device(
        rig["server"].mqtt_port,
        rig["product"]["product_key"],
        dev["device_name"],
        dev["device_secret"],
    )
    assert d.connect()
    assert d.subscribe(f"/ota/device/upgrade/{d.product_key}/{d.device_name}") == [1]
    return d


def upgrade_message(d: Device) -> dict[str, Any]:
    while True:
        try:
            topic, body = d.messages.get(timeout=10)
        except queue.Empty:
            raise AssertionError("no upgrade pushed") from None
        if topic.startswith("/ota/device/upgrade/") and isinstance(body, dict):
            return body


def report(d: Device, kind: str, params: dict[str, Any]) -> None:
    d.publish(
        f"/ota/device/{kind}/{d.product_key}/{d.device_name}",
        {"id": str(time.time_ns()), "params": params},
    )


def test_ota_round_trip(rig: dict[str, Any]) -> None:
    eng, pid = rig["eng"], rig["product"]["id"]
    package = os.urandom(100_000)
    digest = hashlib.sha256(package).hexdigest()
    url = f"/products/{pid}/firmware"
    wrong = eng.post(url, params={"version": "2.0.0", "sha256": "0" * 64}, content=package)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "sha256"
    fw = eng.post(
        url, params={"version": "2.0.0", "module": "MCU", "sha256": digest}, content=package
    )
    assert fw.status_code == 201, fw.text
    firmware = fw.json()
    assert firmware["size"] == 100_000 and firmware["sha256"] == digest
    assert (
        eng.post(url, params={"version": "2.0.0", "module": "MCU"}, content=package).status_code
        == 409
    )
    assert rig["op"].post(url, params={"version": "3.0.0"}, content=package).status_code == 404

    online = listening(rig, 0)
    jobs = eng.post(f"/firmware/{firmware['id']}/jobs", json={}).json()
    by_device = {j["device_id"]: j for j in jobs}
    d0, d1 = (d["id"] for d in rig["devices"])
    assert by_device[d0]["status"] == "pushed" and by_device[d1]["status"] == "queued"

    push = upgrade_message(online)
    assert (
        push["data"]["sign"] == digest
        and push["data"]["size"] == 100_000
        and push["data"]["version"] == "2.0.0"
    )
    link = push["data"]["url"]
    first = httpx.get(link, headers={"Range": "bytes=0-59999"})
    assert first.status_code == 206 and len(first.content) == 60_000
    rest = httpx.get(link, headers={"Range": "bytes=60000-"})
    assert rest.status_code == 206
    assert hashlib.sha256(first.content + rest.content).hexdigest() == digest
    assert httpx.get(link.replace("token=", "token=x")).status_code == 404
    assert httpx.get(link.replace(f"device={d0}", f"device={d1}")).status_code == 404

    report(online, "progress", {"step": "50", "desc": "downloading", "module": "MCU"})
    wait_for(lambda: eng.get(f"/firmware/{firmware['id']}/jobs").json()[0]["progress"] == 50)
    report(online, "progress", {"step": 100, "module": "MCU"})
    report(online, "inform", {"version": "2.0.0", "module": "MCU"})
    done = wait_for(
        lambda: next(
            (
                j
                for j in eng.get(f"/firmware/{firmware['id']}/jobs").json()
                if j["device_id"] == d0 and j["status"] == "succeeded"
            ),
            None,
        )
    )
    assert done["progress"] == 100
    online.close()

    # the second device was offline: it gets the push when it listens, and fails verification
    late = listening(rig, 1)
    assert upgrade_message(late)["data"]["url"] != link
    report(late, "progress", {"step": -3, "desc": "sha256 mismatch", "module": "MCU"})
    failed = wait_for(
        lambda: next(
            (
                j
                for j in eng.get(f"/firmware/{firmware['id']}/jobs").json()
                if j["device_id"] == d1 and j["status"] == "failed"
            ),
            None,
        )
    )
    assert "verification failed" in failed["message"]
    log = eng.get(f"/devices/{d1}/message-log").json()["entries"]
    assert any("failed" in e["reason"] for e in log)
    assert json.dumps(failed)
