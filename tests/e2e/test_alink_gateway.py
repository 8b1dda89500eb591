"""Alink gateways over a real socket: topology add/get/delete with signed entries, sub-device
login/logout, pack post landing under each sub-device, a gateway acting on its sub-devices'
topics, and refusals for devices outside its topology."""

from __future__ import annotations

import time
from typing import Any

import pytest

from qiantang.protocols.alink_gateway import make_sub_device_auth
from tests.conftest import Server
from tests.e2e.test_alink_telemetry import MODEL, wait_for
from tests.e2e.test_downlink import MODEL as RW_MODEL
from tests.helpers.codes import credit_code
from tests.helpers.mqtt import Device


@pytest.fixture(scope="module")
def site(server: Server) -> dict[str, Any]:
    op = server.client(server.operator_key)
    made = {}
    for n, name in ((1, "网关工厂"), (2, "隔壁工厂")):
        ent = op.post(
            "/enterprises",
            json={
                "name": name,
                "credit_code": credit_code(f"91330200MA2B0008{n}"),
                "industry_code": "C34",
                "region_code": "330200",
                "home_platform_id": server.base_id,
            },
        ).json()
        op.post(
            "/users",
            json={
                "username": f"gw-eng{n}",
                "password": "gw-eng-pw",
                "role": "engineer",
                "enterprise_id": ent["id"],
            },
        )
        made[n] = (
            server.client(
                server.client()
                .post("/auth/login", json={"username": f"gw-eng{n}", "password": "gw-eng-pw"})
                .json()["token"]
            ),
            ent,
        )
    eng, ent = made[1]
    gw_product = eng.post(
        "/products",
        json={
            "enterprise_id": ent["id"],
            "name": "边缘网关",
            "node_type": "gateway",
            "thing_model": MODEL,
        },
    ).json()
    sub_product = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "注塑机", "thing_model": RW_MODEL}
    ).json()
    gateway = eng.post(
        "/devices", json={"product_id": gw_product["id"], "device_name": "GW-1"}
    ).json()
    subs = [
        eng.post(
            "/devices", json={"product_id": sub_product["id"], "device_name": f"IMM-{i}"}
        ).json()
        for i in range(3)
    ]
    other_eng, other_ent = made[2]
    other_product = other_eng.post(
        "/products",
        json={"enterprise_id": other_ent["id"], "name": "别家", "thing_model": RW_MODEL},
    ).json()
    foreign = other_eng.post(
        "/devices", json={"product_id": other_product["id"], "device_name": "FOREIGN-1"}
    ).json()
    assert gateway["is_gateway"] is True
    return {
        "eng": eng,
        "gw_product": gw_product,
        "sub_product": sub_product,
        "gateway": gateway,
        "subs": subs,
        "foreign": (other_product, foreign),
    }


def entry(pk: str, dev: dict[str, Any], secret: str | None = None) -> dict[str, str]:
    return make_sub_device_auth(
        pk, dev["device_name"], secret or dev["device_secret"], str(int(time.time() * 1000))
    )


def request(d: Device, topic: str, params: Any, msg_id: str) -> dict[str, Any]:
    d.publish(topic, {"id": msg_id, "version": "1.0", "params": params})
    return d.reply(msg_id)


def test_gateway_and_sub_devices(server: Server, site: dict[str, Any]) -> None:
    gpk, spk = site["gw_product"]["product_key"], site["sub_product"]["product_key"]
    g = site["gateway"]
    s0, s1, s2 = site["subs"]
    eng = site["eng"]
    d = Device(server.mqtt_port, gpk, g["device_name"], g["device_secret"])
    assert d.connect()
    for t in ("thing/topo/#", "thing/event/property/pack/post_reply"):
        assert d.subscribe(f"{d.sys}/{t}") == [1]
    session = f"/ext/session/{gpk}/{g['device_name']}"
    assert d.subscribe(f"{session}/combine/+") == [1]
    topo = f"{d.sys}/thing/topo"

    bad_sign = request(d, f"{topo}/add", [entry(spk, s0, secret="x" * 32)], "t0")
    assert bad_sign["code"] == 460 and "sign" in bad_sign["message"]
    foreign_pk, foreign = site["foreign"]
    assert (
        request(d, f"{topo}/add", [entry(foreign_pk["product_key"], foreign)], "t1")["code"] == 6100
    )
    added = request(d, f"{topo}/add", [entry(spk, s0), entry(spk, s1)], "t2")
    assert added["code"] == 200 and len(added["data"]) == 2
    got = request(d, f"{topo}/get", {}, "t3")
    assert sorted(x["deviceName"] for x in got["data"]) == ["IMM-0", "IMM-1"]

    # login: only sub-devices in the topology
    assert request(d, f"{session}/combine/login", entry(spk, s2), "l0")["code"] == 6401
    assert request(d, f"{session}/combine/login", entry(spk, s0), "l1")["code"] == 200
    wait_for(lambda: eng.get(f"/devices/{s0['id']}/state").json()["online"])

    # pack post: data lands under each sub-device
    now = int(time.time() * 1000)
    params = {
        "properties": {"count": {"value": 1, "time": now}},
        "subDevices": [
            {
                "identity": {"productKey": spk, "deviceName": "IMM-0"},
                "properties": {"setpoint": {"value": 12.5, "time": now}},
            },
            {
                "identity": {"productKey": spk, "deviceName": "IMM-1"},
                "properties": {"setpoint": {"value": 13.5, "time": now}},
            },
        ],
    }
    assert request(d, f"{d.sys}/thing/event/property/pack/post", params, "p1")["code"] == 200
    for dev, value in ((s0, 12.5), (s1, 13.5)):
        wait_for(
            lambda dev=dev, value=value: (
                eng.get(f"/devices/{dev['id']}/properties")
                .json()["properties"]
                .get("setpoint", {})
                .get("value")
                == value
            )
        )
    wait_for(
        lambda: (
            eng.get(f"/devices/{g['id']}/properties")
            .json()["properties"]
            .get("count", {})
            .get("value")
            == 1
        )
    )
    # a sub-device outside the topology refuses the whole pack: nothing stored
    params["subDevices"].append(
        {
            "identity": {"productKey": spk, "deviceName": "IMM-2"},
            "properties": {"setpoint": {"value": 99.0, "time": now}},
        }
    )
    params["subDevices"][0]["properties"]["setpoint"]["value"] = 77.0
    assert request(d, f"{d.sys}/thing/event/property/pack/post", params, "p2")["code"] == 6401
    # the gateway may post on a sub-device's own topic ...
    sub_sys = f"/sys/{spk}/IMM-1"
    assert d.subscribe(f"{sub_sys}/thing/event/property/post_reply") == [1]
    assert (
        request(d, f"{sub_sys}/thing/event/property/post", {"setpoint": 21.0}, "s1")["code"] == 200
    )
    wait_for(
        lambda: (
            eng.get(f"/devices/{s1['id']}/properties").json()["properties"]["setpoint"]["value"]
            == 21.0
        )
    )
    # ... but not on a device outside its topology
    assert d.subscribe(f"/sys/{spk}/IMM-2/thing/event/property/post_reply") == [0x80]
    raw = eng.get(f"/devices/{s0['id']}/telemetry", params={"property": "setpoint"}).json()[
        "points"
    ]
    assert [p["value"] for p in raw] == [12.5]

    # downlink to a logged-in sub-device goes through the gateway
    assert d.subscribe(f"/sys/{spk}/IMM-0/thing/service/property/set") == [1]
    eng_call = eng.post(
        f"/devices/{s0['id']}/properties/set", json={"params": {"setpoint": 50.0}, "wait": False}
    ).json()
    topic, body = wait_for(
        lambda: next(
            (
                (t, b)
                for t, b in list(d.messages.queue)
                if t.endswith("/IMM-0/thing/service/property/set")
            ),
            None,
        )
    )
    d.publish(topic + "_reply", {"id": body["id"], "code": 200, "data": {}})
    wait_for(lambda: eng.get(f"/commands/{eng_call['id']}").json()["status"] == "replied")

    # delete from topology, logout, disconnect
    assert (
        request(d, f"{topo}/delete", [{"productKey": spk, "deviceName": "IMM-1"}], "t4")["code"]
        == 200
    )
    assert [x["deviceName"] for x in request(d, f"{topo}/get", {}, "t5")["data"]] == ["IMM-0"]
    assert (
        request(d, f"{session}/combine/logout", {"productKey": spk, "deviceName": "IMM-0"}, "l2")[
            "code"
        ]
        == 200
    )
    wait_for(lambda: not eng.get(f"/devices/{s0['id']}/state").json()["online"])
    assert request(d, f"{session}/combine/login", entry(spk, s0), "l3")["code"] == 200
    d.close()
    wait_for(lambda: not eng.get(f"/devices/{s0['id']}/state").json()["online"])


def test_a_plain_device_cannot_add_topology(server: Server, site: dict[str, Any]) -> None:
    spk = site["sub_product"]["product_key"]
    s2 = site["subs"][2]
    d = Device(server.mqtt_port, spk, s2["device_name"], s2["device_secret"])
    assert d.connect()
    d.subscribe(f"{d.sys}/thing/topo/add_reply")
    s1 = site["subs"][1]
    assert request(d, f"{d.sys}/thing/topo/add", [entry(spk, s1)], "x")["code"] == 400
    d.close()
