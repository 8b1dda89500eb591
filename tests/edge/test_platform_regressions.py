"""Regression tests for two platform bugs the edge gateway ran into (both fixed).

1. A history post (``thing.event.property.history.post``) with several readings of one
property stores every timestamp, but each with the *last* value:
`IngestCore.properties` (src/qiantang/services/ingest.py) collects the values in a dict keyed
by identifier, validates the dict, then builds one point per reading from
``accepted[identifier]``. The gateway works around it (no property twice in one block).
2. A gateway's topology cache is cleared when any connection of the gateway device closes.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from qiantang.protocols.alink_gateway import make_sub_device_auth
from tests.conftest import Server
from tests.e2e.test_alink_telemetry import wait_for
from tests.edge.plant import make_plant
from tests.helpers.mqtt import Device


@pytest.fixture(scope="module")
def plant(server: Server) -> dict[str, Any]:
    return make_plant(server.client, server.operator_key, server.base_id, 3)


def test_history_post_keeps_every_value(server: Server, plant: dict[str, Any]) -> None:
    cmp = plant["devices"]["cmp"]
    d = Device(server.mqtt_port, cmp["product_key"], cmp["device_name"], cmp["device_secret"])
    assert d.connect()
    d.subscribe(f"{d.sys}/thing/event/property/history/post_reply")
    now = int(time.time() * 1000)
    readings = [{"count": {"value": v, "time": now - 1000 + v}} for v in (1, 2, 3)]
    params = [
        {
            "identity": {"productKey": cmp["product_key"], "deviceName": "CMP-1"},
            "properties": readings,
        }
    ]
    d.publish(
        f"{d.sys}/thing/event/property/history/post",
        {"id": "h1", "version": "1.0", "params": params},
    )
    assert d.reply("h1")["code"] == 200
    d.close()
    eng = plant["eng"]
    points = wait_for(
        lambda: (
            (
                p := eng.get(
                    f"/devices/{cmp['id']}/telemetry", params={"property": "count"}
                ).json()["points"]
            )
            and len(p) == 3
            and p
        )
    )
    assert [p["value"] for p in points] == [1, 2, 3]  # the platform stores [3, 3, 3]


def test_a_second_connection_going_away_keeps_the_gateways_topology(
    server: Server, plant: dict[str, Any]
) -> None:
    """`GatewayService.disconnected` (src/qiantang/services/gateway.py) drops the topology
    cache and logs out the sub-devices by gateway *device*, not by connection: when a second
    connection of the same gateway (here `qiantang gateway check` probing while `run` is
    running; or an old connection the broker closes after a reconnect) goes away, the live
    session's sub-device traffic is refused with 6401 until it reconnects."""
    gw, cmp = plant["devices"]["gw"], plant["devices"]["cmp"]
    live = Device(server.mqtt_port, gw["product_key"], "GW-1", gw["device_secret"])
    assert live.connect()
    session = f"/ext/session/{gw['product_key']}/GW-1"
    for t in ("thing/topo/add_reply", "thing/event/property/pack/post_reply"):
        live.subscribe(f"{live.sys}/{t}")
    live.subscribe(f"{session}/combine/login_reply")
    auth = make_sub_device_auth(
        cmp["product_key"], "CMP-1", cmp["device_secret"], str(int(time.time() * 1000))
    )
    live.publish(f"{live.sys}/thing/topo/add", {"id": "t1", "params": [auth]})
    assert live.reply("t1")["code"] == 200
    live.publish(f"{session}/combine/login", {"id": "l1", "params": auth})
    assert live.reply("l1")["code"] == 200
    pack = {
        "subDevices": [
            {
                "identity": {"productKey": cmp["product_key"], "deviceName": "CMP-1"},
                "properties": {"count": 1},
            }
        ]
    }
    live.publish(f"{live.sys}/thing/event/property/pack/post", {"id": "p1", "params": pack})
    assert live.reply("p1")["code"] == 200
    probe = Device(
        server.mqtt_port, gw["product_key"], "GW-1", gw["device_secret"], client_id="GW-1.check"
    )
    assert probe.connect()
    probe.close()
    eng = plant["eng"]
    time.sleep(0.5)  # let the probe's disconnect reach the platform (we check that nothing happens)
    assert eng.get(f"/devices/{cmp['id']}/state").json()["online"]  # still logged in
    live.publish(f"{live.sys}/thing/event/property/pack/post", {"id": "p2", "params": pack})
    code = live.reply("p2")["code"]
    live.close()
    assert code == 200  # before the fix: 6401, CMP-1 "is not a sub-device"
