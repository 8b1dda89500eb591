"""ThingsBoard device and gateway MQTT APIs over a real socket (MQTT 3.1.1 paho clients):
telemetry in all four shapes, client/shared attributes, attribute requests, client- and
server-side RPC, gateway connect/telemetry/attributes/RPC, auto-provisioning on and off; and
the same APIs for MQTT 5 clients (the ThingsBoard SDK speaks nothing else), with RPC error
replies."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import Server
from tests.e2e.test_alink_telemetry import wait_for
from tests.e2e.test_downlink import MODEL
from tests.helpers.tenants import enterprise_with_user


class TbClient:
    """A ThingsBoard-style client: the access token is the username."""

    def __init__(
        self, port: int, token: str, protocol: int = mqtt.MQTTv311, client_id: str | None = None
    ) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"tb-{time.time_ns()}" if client_id is None else client_id,
            protocol=protocol,
        )
        self.client.username_pw_set(token)
        self.messages: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.rc: Any = None
        self.connack: Any = None
        self.disconnected: Any = None

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            self.connack = p
            self.rc = rc

        self.client.on_connect = on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: setattr(self, "disconnected", rc)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(lambda: self.rc is not None)

    @property
    def ok(self) -> bool:
        return not self.rc.is_failure

    def sub(self, *filters: str) -> None:
        for f in filters:
            self.client.subscribe(f, qos=1)
        time.sleep(
            0.2
        )  # SUBACKs: paho gives no simple wait here; subscriptions precede the pushes below

    def pub(self, topic: str, body: Any) -> None:
        self.client.publish(topic, json.dumps(body), qos=1).wait_for_publish(10)

    def expect(self, topic: str, timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got_topic, body = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got_topic == topic:
                return body
        raise AssertionError(f"nothing on {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def rig(server: Server) -> dict[str, Any]:
    eng, ent = enterprise_with_user(server, "TB工厂", "91330200MA2B00101", "tb-eng")
    product = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "调速器", "thing_model": MODEL}
    ).json()
    gw_product = eng.post(
        "/products",
        json={
            "enterprise_id": ent["id"],
            "name": "TB网关",
            "node_type": "gateway",
            "thing_model": MODEL,
        },
    ).json()
    device = eng.post(
        "/devices", json={"product_id": product["id"], "device_name": "TB-DEV-1"}
    ).json()
    gateway = eng.post(
        "/devices", json={"product_id": gw_product["id"], "device_name": "TB-GW-1"}
    ).json()
    tokens = {
        k: eng.post(f"/devices/{d['id']}/access-token").json()["access_token"]
        for k, d in (("device", device), ("gateway", gateway))
    }
    return {
        "eng": eng,
        "product": product,
        "device": device,
        "gateway": gateway,
        "tokens": tokens,
        "port": server.mqtt_port,
    }


def test_wrong_token_is_refused(rig: dict[str, Any]) -> None:
    c = TbClient(rig["port"], "not-a-token-000000000")
    assert not c.ok
    c.close()


def test_device_api(rig: dict[str, Any]) -> None:
    eng, dev_id = rig["eng"], rig["device"]["id"]
    c = TbClient(rig["port"], rig["tokens"]["device"])
    assert c.ok
    me = "v1/devices/me/"
    c.sub(
        me + "attributes", me + "attributes/response/+", me + "rpc/request/+", me + "rpc/response/+"
    )
    now = int(time.time() * 1000)
    c.pub(me + "telemetry", {"setpoint": 10.0})
    # the next shape has no ts either: stored first, so the two cannot share a millisecond
    # (the store keeps one point per device, property and timestamp)
    wait_for(lambda: eng.get(f"/devices/{dev_id}/properties").json()["properties"].get("setpoint"))
    c.pub(me + "telemetry", [{"setpoint": 11.0}, {"temperature": 20.0}])
    c.pub(me + "telemetry", {"ts": now - 2000, "values": {"setpoint": 12.0}})
    c.pub(
        me + "telemetry",
        [
            {"ts": now - 1000, "values": {"setpoint": 13.0, "colour": "red"}},
            {"ts": now - 500, "values": {"temperature": 999}},
        ],
    )
    points = wait_for(
        lambda: (
            (
                p := eng.get(
                    f"/devices/{dev_id}/telemetry", params={"property": "setpoint"}
                ).json()["points"]
            )
            and len(p) >= 4
            and p
        )
    )
    assert sorted(p["value"] for p in points) == [10.0, 11.0, 12.0, 13.0]
    log = eng.get(f"/devices/{dev_id}/message-log").json()["entries"]
    reasons = " ".join(e["reason"] for e in log)
    assert "colour" in reasons and "unknown_property" in reasons and "temperature" in reasons
    # client attributes, shared attributes, attribute request
    c.pub(me + "attributes", {"firmware": "1.2", "serial": "SN-1"})
    wait_for(
        lambda: eng.get(f"/devices/{dev_id}/shadow").json()["reported"].get("serial") == "SN-1"
    )
    assert (
        eng.put(
            f"/devices/{dev_id}/shadow/desired", json={"desired": {"setpoint": 42.0}}
        ).status_code
        == 200
    )
    assert c.expect(me + "attributes") == {"setpoint": 42.0}
    c.pub(me + "attributes/request/7", {"clientKeys": "serial", "sharedKeys": "setpoint"})
    assert c.expect(me + "attributes/response/7") == {
        "client": {"serial": "SN-1"},
        "shared": {"setpoint": 42.0},
    }
    # client-side RPC
    c.pub(me + "rpc/request/1", {"method": "getSessionLimits", "params": {}})
    limits = c.expect(me + "rpc/response/1")
    assert limits["maxPayloadSize"] > 0 and "rateLimits" in limits
    # server-side RPC from a service call
    call = eng.post(
        f"/devices/{dev_id}/services/start", json={"params": {"speed": 100}, "wait": False}
    ).json()
    request = c.expect(f"{me}rpc/request/{call['id']}")
    assert request == {"method": "start", "params": {"speed": 100}}
    c.pub(f"{me}rpc/response/{call['id']}", {"ok": True})
    done = wait_for(
        lambda: (x := eng.get(f"/commands/{call['id']}").json())["status"] == "replied" and x
    )
    assert done["output"] == {"ok": True}
    c.close()


def test_gateway_api(rig: dict[str, Any]) -> None:
    eng, gw = rig["eng"], rig["gateway"]
    g = TbClient(rig["port"], rig["tokens"]["gateway"])
    assert g.ok
    g.sub("v1/gateway/attributes", "v1/gateway/attributes/response", "v1/gateway/rpc")
    # auto-provisioning off: an unknown device is refused and nothing is created
    g.pub(
        "v1/gateway/telemetry",
        {"Meter A": [{"ts": int(time.time() * 1000), "values": {"setpoint": 1.0}}]},
    )
    wait_for(
        lambda: any(
            "Meter A" in e["reason"]
            for e in eng.get(f"/devices/{gw['id']}/message-log").json()["entries"]
        )
    )
    assert eng.get("/devices", params={"product_id": rig["product"]["id"]}).json()["total"] == 1
    assert (
        eng.patch(
            f"/devices/{gw['id']}", json={"provision_product_id": rig["product"]["id"]}
        ).status_code
        == 200
    )
    g.pub("v1/gateway/connect", {"device": "Meter A", "type": "meter"})
    meter = wait_for(
        lambda: next(
            (
                d
                for d in eng.get("/devices", params={"product_id": rig["product"]["id"]}).json()[
                    "items"
                ]
                if d["device_name"] == "Meter A"
            ),
            None,
        )
    )
    wait_for(lambda: eng.get(f"/devices/{meter['id']}/state").json()["online"])
    g.pub(
        "v1/gateway/telemetry",
        {"Meter A": [{"ts": int(time.time() * 1000), "values": {"setpoint": 55.5}}]},
    )
    wait_for(
        lambda: (
            eng.get(f"/devices/{meter['id']}/properties")
            .json()["properties"]
            .get("setpoint", {})
            .get("value")
            == 55.5
        )
    )
    g.pub("v1/gateway/attributes", {"Meter A": {"model": "DTSU666"}})
    wait_for(
        lambda: (
            eng.get(f"/devices/{meter['id']}/shadow").json()["reported"].get("model") == "DTSU666"
        )
    )
    g.pub(
        "v1/gateway/attributes/request",
        {"id": 3, "device": "Meter A", "client": True, "key": "model"},
    )
    assert g.expect("v1/gateway/attributes/response") == {
        "id": 3,
        "device": "Meter A",
        "value": "DTSU666",
    }
    g.pub(
        "v1/gateway/attributes/request",
        {"id": 4, "device": "Meter A", "client": ["model"], "shared": ["setpoint"]},
    )
    assert g.expect("v1/gateway/attributes/response") == {
        "id": 4,
        "device": "Meter A",
        "values": {"model": "DTSU666"},
    }
    call = eng.post(
        f"/devices/{meter['id']}/services/start", json={"params": {"speed": 7}, "wait": False}
    ).json()
    rpc = g.expect("v1/gateway/rpc")
    assert rpc == {
        "device": "Meter A",
        "data": {"id": call["id"], "method": "start", "params": {"speed": 7}},
    }
    g.pub("v1/gateway/rpc", {"device": "Meter A", "id": call["id"], "data": {"ok": True}})
    wait_for(lambda: eng.get(f"/commands/{call['id']}").json()["status"] == "replied")
    g.pub("v1/gateway/disconnect", {"device": "Meter A"})
    wait_for(lambda: not eng.get(f"/devices/{meter['id']}/state").json()["online"])
    g.close()


def test_mqtt5_client(rig: dict[str, Any]) -> None:
    """The ThingsBoard SDK (and so thingsboard-gateway) connects with MQTT 5 only."""
    eng, dev_id, me = rig["eng"], rig["device"]["id"], "v1/devices/me/"
    c = TbClient(rig["port"], rig["tokens"]["device"], protocol=mqtt.MQTTv5, client_id="")
    assert c.ok
    assert c.connack.AssignedClientIdentifier.startswith("mqtt5-")
    assert c.connack.SharedSubscriptionAvailable == 0
    c.sub(me + "rpc/request/+", me + "rpc/response/+")
    c.pub(me + "telemetry", {"ts": int(time.time() * 1000), "values": {"setpoint": 77.0}})
    wait_for(
        lambda: (
            eng.get(f"/devices/{dev_id}/properties").json()["properties"]["setpoint"]["value"]
            == 77.0
        )
    )
    c.pub(me + "rpc/request/9", {"method": "getSessionLimits", "params": {}})
    assert c.expect(me + "rpc/response/9")["maxPayloadSize"] > 0
    # a server-side RPC answered with an error ends failed, with the device's message
    call = eng.post(
        f"/devices/{dev_id}/services/start", json={"params": {"speed": 5}, "wait": False}
    ).json()
    assert c.expect(f"{me}rpc/request/{call['id']}")["params"] == {"speed": 5}
    c.pub(f"{me}rpc/response/{call['id']}", {"error": "spindle locked"})
    done = wait_for(
        lambda: (x := eng.get(f"/commands/{call['id']}").json())["status"] != "sent" and x
    )
    assert done["status"] == "failed" and done["message"] == "spindle locked"
    # topic aliases were not offered (Topic Alias Maximum 0): using one ends the connection
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = 1
    c.client.publish(me + "telemetry", b'{"setpoint": 1.0}', qos=1, properties=props)
    wait_for(lambda: c.disconnected is not None)
    assert c.disconnected.value == 0x94
    c.close()


def test_gateway_rpc_error_reply_fails_the_call(rig: dict[str, Any]) -> None:
    """thingsboard-gateway wraps every answer in ``result``, errors included."""
    eng, gw = rig["eng"], rig["gateway"]
    provision = {"provision_product_id": rig["product"]["id"]}
    assert eng.patch(f"/devices/{gw['id']}", json=provision).status_code == 200
    g = TbClient(rig["port"], rig["tokens"]["gateway"], protocol=mqtt.MQTTv5)
    assert g.ok
    g.sub("v1/gateway/rpc")
    g.pub("v1/gateway/connect", {"device": "Meter A"})
    meter = wait_for(
        lambda: next(
            (
                d
                for d in eng.get("/devices", params={"product_id": rig["product"]["id"]}).json()[
                    "items"
                ]
                if d["device_name"] == "Meter A"
            ),
            None,
        )
    )
    wait_for(lambda: eng.get(f"/devices/{meter['id']}/state").json()["online"])
    call = eng.post(
        f"/devices/{meter['id']}/services/start", json={"params": {"speed": 9}, "wait": False}
    ).json()
    assert g.expect("v1/gateway/rpc")["data"]["id"] == call["id"]
    reply = {"result": {"error": "Method not found for start"}}
    g.pub("v1/gateway/rpc", {"device": "Meter A", "id": call["id"], "data": reply})
    done = wait_for(
        lambda: (x := eng.get(f"/commands/{call['id']}").json())["status"] != "sent" and x
    )
    assert done["status"] == "failed" and "Method not found" in done["message"]
    g.close()


def test_a_gateway_cannot_take_over_another_gateways_device(rig: dict[str, Any]) -> None:
    """Announcing a device that is behind another gateway is refused, never re-linked."""
    eng = rig["eng"]
    provision = {"provision_product_id": rig["product"]["id"]}
    gateways = [
        eng.post(
            "/devices",
            json={"product_id": rig["gateway"]["product_id"], "device_name": f"TB-GW-T{i}"},
        ).json()
        for i in (1, 2)
    ]
    for gw in gateways:
        assert eng.patch(f"/devices/{gw['id']}", json=provision).status_code == 200
    owner, thief = (
        TbClient(rig["port"], eng.post(f"/devices/{gw['id']}/access-token").json()["access_token"])
        for gw in gateways
    )
    assert owner.ok and thief.ok
    now = int(time.time() * 1000)

    def post(client: TbClient, ts: int, value: float) -> None:
        client.pub("v1/gateway/telemetry", {"Meter Z": [{"ts": ts, "values": {"setpoint": value}}]})

    def stored() -> list[float]:
        points = eng.get(
            f"/devices/{meter['id']}/telemetry", params={"property": "setpoint"}
        ).json()["points"]
        return [p["value"] for p in points]

    owner.pub("v1/gateway/connect", {"device": "Meter Z"})
    meter = wait_for(
        lambda: next(
            (
                d
                for d in eng.get("/devices", params={"product_id": rig["product"]["id"]}).json()[
                    "items"
                ]
                if d["device_name"] == "Meter Z"
            ),
            None,
        )
    )
    post(owner, now, 11.0)
    wait_for(lambda: stored() == [11.0])
    post(thief, now + 1, 99.0)
    wait_for(
        lambda: any(
            "Meter Z" in e["reason"]
            for e in eng.get(f"/devices/{gateways[1]['id']}/message-log").json()["entries"]
        )
    )
    post(owner, now + 2, 12.0)
    wait_for(lambda: 12.0 in stored())
    assert stored() == [11.0, 12.0]
    owner.close()
    thief.close()
