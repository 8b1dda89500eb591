"""Downlink round trips with a real MQTT client playing the device: property set, async and
sync service calls, offline, timeout, device errors, validation before sending."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import Server
from tests.e2e.test_alink_telemetry import wait_for
from tests.helpers.codes import credit_code
from tests.helpers.mqtt import Device

F = {"type": "float", "specs": {"min": 0, "max": 100}}
MODEL = {
    "properties": [
        {"identifier": "setpoint", "name": "设定值", "access_mode": "rw", "data_type": F},
        {"identifier": "temperature", "name": "温度", "access_mode": "r", "data_type": F},
    ],
    "events": [],
    "services": [
        {
            "identifier": "start",
            "name": "启动",
            "call_type": "async",
            "input_data": [
                {
                    "identifier": "speed",
                    "name": "转速",
                    "data_type": {"type": "int", "specs": {"min": 0, "max": 3000}},
                }
            ],
            "output_data": [
                {
                    "identifier": "ok",
                    "name": "成功",
                    "data_type": {"type": "bool", "specs": {"false": "否", "true": "是"}},
                }
            ],
        },
        {
            "identifier": "reset",
            "name": "复位",
            "call_type": "sync",
            "input_data": [],
            "output_data": [
                {
                    "identifier": "code",
                    "name": "结果码",
                    "data_type": {"type": "int", "specs": {"min": 0, "max": 9}},
                }
            ],
        },
    ],
}


class Responder(Device):
    """A device that answers calls: `mode` 'ok', 'error' or 'silent'."""

    mode = "ok"
    received: list[tuple[str, dict[str, Any]]]

    def start(self) -> None:
        self.received = []
        assert self.connect()
        self.client.on_message = self._answer
        assert self.subscribe(f"{self.sys}/thing/service/#") == [1]
        assert self.subscribe(f"{self.sys}/rrpc/request/+") == [1]

    def _answer(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        self.received.append((msg.topic, body))
        if self.mode == "silent":
            return
        code = 200 if self.mode == "ok" else 9112
        data: dict[str, Any] = {}
        if msg.topic.endswith("/thing/service/start"):
            data = {"ok": 1}
        if "/rrpc/request/" in msg.topic:
            data = {"code": 0}
        reply = json.dumps(
            {
                "id": body["id"],
                "code": code,
                "data": data,
                "message": "ok" if code == 200 else "device busy",
            }
        )
        topic = (
            msg.topic.replace("/rrpc/request/", "/rrpc/response/")
            if "/rrpc/request/" in msg.topic
            else msg.topic + "_reply"
        )
        client.publish(topic, reply, qos=1)


@pytest.fixture(scope="module")
def rig(server: Server) -> dict[str, Any]:
    op = server.client(server.operator_key)
    ent = op.post(
        "/enterprises",
        json={
            "name": "下行测试厂",
            "credit_code": credit_code("91330200MA2B00061"),
            "industry_code": "C34",
            "region_code": "330200",
            "home_platform_id": server.base_id,
        },
    ).json()
    clients = {}
    for name, role in (("dl-eng", "engineer"), ("dl-view", "viewer")):
        op.post(
            "/users",
            json={
                "username": name,
                "password": f"{name}-pw",
                "role": role,
                "enterprise_id": ent["id"],
            },
        )
        clients[name] = server.client(
            server.client()
            .post("/auth/login", json={"username": name, "password": f"{name}-pw"})
            .json()["token"]
        )
    eng = clients["dl-eng"]
    product = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "调速器", "thing_model": MODEL}
    ).json()
    devs = [
        eng.post("/devices", json={"product_id": product["id"], "device_name": f"DL-{i}"}).json()
        for i in range(2)
    ]
    responder = Responder(
        server.mqtt_port, product["product_key"], devs[0]["device_name"], devs[0]["device_secret"]
    )
    responder.start()
    yield {
        "eng": eng,
        "view": clients["dl-view"],
        "op": op,
        "dev": devs[0],
        "offline": devs[1],
        "device": responder,
    }
    responder.close()


def test_property_set_round_trip(rig: dict[str, Any]) -> None:
    rig["device"].mode = "ok"
    r = rig["eng"].post(
        f"/devices/{rig['dev']['id']}/properties/set", json={"params": {"setpoint": 42.5}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "replied" and r.json()["code"] == 200
    topic, body = rig["device"].received[-1]
    assert topic.endswith("/thing/service/property/set") and body["params"] == {"setpoint": 42.5}
    assert body["method"] == "thing.service.property.set" and body["id"] == str(r.json()["id"])


def test_invalid_calls_are_refused_before_sending(rig: dict[str, Any]) -> None:
    before = len(rig["device"].received)
    eng, dev_id = rig["eng"], rig["dev"]["id"]
    read_only = eng.post(f"/devices/{dev_id}/properties/set", json={"params": {"temperature": 1}})
    assert read_only.status_code == 422 and read_only.json()["errors"][0] == {
        "field": "params.temperature",
        "rule": "read_only",
        "message": "the property is read-only",
    }
    out_of_range = eng.post(f"/devices/{dev_id}/properties/set", json={"params": {"setpoint": 101}})
    assert (
        out_of_range.status_code == 422
        and out_of_range.json()["errors"][0]["field"] == "params.setpoint"
    )
    bad_input = eng.post(f"/devices/{dev_id}/services/start", json={"params": {"speed": 9999}})
    assert bad_input.status_code == 422 and bad_input.json()["errors"][0]["field"].startswith(
        "params.speed"
    )
    unknown = eng.post(f"/devices/{dev_id}/services/launch", json={"params": {}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["rule"] == "exists"
    assert len(rig["device"].received) == before  # nothing reached the device


def test_async_service_invoke_and_poll(rig: dict[str, Any]) -> None:
    rig["device"].mode = "ok"
    eng = rig["eng"]
    sent = eng.post(
        f"/devices/{rig['dev']['id']}/services/start",
        json={"params": {"speed": 1500}, "wait": False},
    ).json()
    assert sent["status"] in ("sent", "replied") and sent["call_type"] == "async"
    done = wait_for(
        lambda: (c := eng.get(f"/commands/{sent['id']}").json())["status"] == "replied" and c
    )
    assert done["output"] == {"ok": True}
    assert rig["device"].received[-1][0].endswith("/thing/service/start")


def test_sync_service_over_rrpc(rig: dict[str, Any]) -> None:
    rig["device"].mode = "ok"
    r = rig["eng"].post(f"/devices/{rig['dev']['id']}/services/reset", json={"wait": False}).json()
    assert r["status"] == "replied" and r["output"] == {"code": 0} and r["call_type"] == "sync"
    assert "/rrpc/request/" in rig["device"].received[-1][0]


def test_offline_timeout_and_device_error(rig: dict[str, Any]) -> None:
    eng = rig["eng"]
    offline = eng.post(
        f"/devices/{rig['offline']['id']}/properties/set", json={"params": {"setpoint": 1}}
    ).json()
    assert offline["status"] == "offline" and offline["code"] == 9201
    rig["device"].mode = "silent"
    silent = eng.post(
        f"/devices/{rig['dev']['id']}/properties/set",
        json={"params": {"setpoint": 2}, "timeout_s": 0.5},
    ).json()
    assert silent["status"] == "timed_out"
    rig["device"].mode = "error"
    failed = eng.post(
        f"/devices/{rig['dev']['id']}/services/start", json={"params": {"speed": 1}}
    ).json()
    assert (
        failed["status"] == "failed"
        and failed["code"] == 9112
        and failed["message"] == "device busy"
    )
    rig["device"].mode = "ok"
    history = eng.get(f"/devices/{rig['dev']['id']}/commands").json()
    assert [c["status"] for c in history["items"][:2]] == ["failed", "timed_out"]
    assert history["total"] >= 5


def test_access_to_commands(rig: dict[str, Any], server: Server) -> None:
    dev_id = rig["dev"]["id"]
    assert (
        rig["view"]
        .post(f"/devices/{dev_id}/properties/set", json={"params": {"setpoint": 3}})
        .status_code
        == 403
    )
    assert rig["view"].get(f"/devices/{dev_id}/commands").status_code == 200
    assert (
        rig["op"]
        .post(f"/devices/{dev_id}/properties/set", json={"params": {"setpoint": 3}})
        .status_code
        == 404
    )
    assert rig["op"].get(f"/devices/{dev_id}/commands").status_code == 404
    first = rig["eng"].get(f"/devices/{dev_id}/commands").json()["items"][0]["id"]
    assert rig["op"].get(f"/commands/{first}").status_code == 404
    assert time.time() > 0
