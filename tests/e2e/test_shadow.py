"""Device shadow over a real socket: reports with versions, stale versions refused, desired
state set while offline is delivered on reconnect, online pushes."""

from __future__ import annotations

import queue
from typing import Any

import pytest

from tests.conftest import Server
from tests.e2e.test_downlink import MODEL
from tests.helpers.mqtt import Device
from tests.helpers.tenants import enterprise_with_user


@pytest.fixture(scope="module")
def rig(server: Server) -> dict[str, Any]:
    op = server.client(server.operator_key)
    eng, ent = enterprise_with_user(server, "影子测试厂", "91330200MA2B00071", "sh-eng")
    product = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "调速器", "thing_model": MODEL}
    ).json()
    dev = eng.post("/devices", json={"product_id": product["id"], "device_name": "SHADOW-1"}).json()
    return {"eng": eng, "op": op, "product": product, "dev": dev, "port": server.mqtt_port}


def connect(rig: dict[str, Any]) -> Device:
    d = Device(
        rig["port"],
        rig["product"]["product_key"],
        rig["dev"]["device_name"],
        rig["dev"]["device_secret"],
    )
    assert d.connect()
    return d


def shadow_msg(d: Device, method: str, timeout: float = 10) -> dict[str, Any]:
    while True:
        try:
            topic, body = d.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no shadow {method} message") from None
        if (
            topic.startswith("/shadow/get/")
            and isinstance(body, dict)
            and body.get("method") == method
        ):
            return body


def test_shadow_round_trip(rig: dict[str, Any]) -> None:
    eng, dev_id = rig["eng"], rig["dev"]["id"]
    d = connect(rig)
    topic = f"/shadow/get/{rig['product']['product_key']}/{rig['dev']['device_name']}"
    up = f"/shadow/update/{rig['product']['product_key']}/{rig['dev']['device_name']}"
    assert d.subscribe(topic) == [1]
    d.publish(up, {"method": "update", "state": {"reported": {"setpoint": 10.0}}, "version": 1})
    assert shadow_msg(d, "reply")["payload"] == {"status": "success", "version": 1}
    d.publish(up, {"method": "update", "state": {"reported": {"setpoint": 11.0}}, "version": 1})
    stale = shadow_msg(d, "reply")["payload"]
    assert stale["status"] == "error" and stale["content"]["errorcode"] == "409"
    d.publish(up, {"method": "get"})
    got = shadow_msg(d, "reply")
    assert got["payload"]["state"]["reported"] == {"setpoint": 10.0} and got["version"] == 1
    d.publish(up, b"{not json")
    assert shadow_msg(d, "reply")["payload"]["content"]["errorcode"] == "400"
    shadow = eng.get(f"/devices/{dev_id}/shadow").json()
    assert shadow["reported"] == {"setpoint": 10.0} and shadow["version"] == 1
    d.close()

    # desired state set while the device is offline ...
    r = eng.put(f"/devices/{dev_id}/shadow/desired", json={"desired": {"setpoint": 55.0}})
    assert r.status_code == 200 and r.json()["delivered"] is False and r.json()["version"] == 2
    assert (
        eng.put(f"/devices/{dev_id}/shadow/desired", json={"desired": {"temperature": 1}}).json()[
            "errors"
        ][0]["rule"]
        == "read_only"
    )
    assert (
        eng.put(
            f"/devices/{dev_id}/shadow/desired", json={"desired": {"setpoint": 500}}
        ).status_code
        == 422
    )
    assert (
        eng.put(
            f"/devices/{dev_id}/shadow/desired", json={"desired": {"setpoint": 1.0}, "version": 2}
        ).status_code
        == 409
    )
    # ... is delivered when it reconnects and subscribes
    d = connect(rig)
    assert d.subscribe(topic) == [1]
    control = shadow_msg(d, "control")
    assert control["payload"]["state"]["desired"] == {"setpoint": 55.0} and control["version"] == 2
    # the device applies it, reports, and clears desired
    d.publish(
        up,
        {
            "method": "update",
            "state": {"reported": {"setpoint": 55.0}, "desired": "null"},
            "version": 3,
        },
    )
    assert shadow_msg(d, "reply")["payload"]["status"] == "success"
    shadow = eng.get(f"/devices/{dev_id}/shadow").json()
    assert (
        shadow["desired"] == {}
        and shadow["reported"] == {"setpoint": 55.0}
        and shadow["version"] == 3
    )
    # online: pushed at once
    r = eng.put(f"/devices/{dev_id}/shadow/desired", json={"desired": {"setpoint": 60.0}})
    assert r.json()["delivered"] is True
    assert shadow_msg(d, "control")["payload"]["state"]["desired"] == {"setpoint": 60.0}
    d.close()
    assert rig["op"].get(f"/devices/{dev_id}/shadow").status_code == 404
