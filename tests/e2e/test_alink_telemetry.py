"""The telemetry path end to end over real sockets: an Alink device signs in over MQTT,
posts properties and events, gets replies, and the values come back over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from qiantang.protocols.alink_auth import make_credentials, parse_connect, sign
from tests.conftest import Server
from tests.helpers.codes import credit_code
from tests.helpers.mqtt import Device

MODEL = {
    "properties": [
        {
            "identifier": "temperature",
            "name": "温度",
            "access_mode": "r",
            "data_type": {"type": "float", "specs": {"min": -40, "max": 200, "unit": "°C"}},
        },
        {
            "identifier": "count",
            "name": "计数",
            "access_mode": "r",
            "data_type": {"type": "int", "specs": {"min": 0, "max": 1000000, "step": 1}},
        },
        {
            "identifier": "status",
            "name": "运行状态",
            "access_mode": "r",
            "data_type": {
                "type": "enum",
                "specs": {"members": [{"value": 0, "name": "停机"}, {"value": 1, "name": "运行"}]},
            },
        },
        {
            "identifier": "running",
            "name": "运行中",
            "access_mode": "r",
            "data_type": {"type": "bool", "specs": {"false": "否", "true": "是"}},
        },
        {
            "identifier": "note",
            "name": "备注",
            "access_mode": "rw",
            "data_type": {"type": "text", "specs": {"length": 16}},
        },
        {
            "identifier": "info",
            "name": "信息",
            "access_mode": "r",
            "data_type": {
                "type": "struct",
                "specs": {
                    "fields": [
                        {
                            "identifier": "hours",
                            "name": "小时",
                            "data_type": {"type": "int", "specs": {"min": 0, "max": 100000}},
                        }
                    ]
                },
            },
        },
        {
            "identifier": "spectrum",
            "name": "频谱",
            "access_mode": "r",
            "data_type": {
                "type": "array",
                "specs": {"size": 4, "item": {"type": "float", "specs": {}}},
            },
        },
    ],
    "events": [
        {
            "identifier": "overTemp",
            "name": "超温",
            "type": "alert",
            "output_data": [
                {
                    "identifier": "temperature",
                    "name": "温度",
                    "data_type": {"type": "float", "specs": {"min": -40, "max": 200}},
                }
            ],
        }
    ],
    "services": [],
}


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def plant(server: Server) -> dict[str, Any]:
    op = server.client(server.operator_key)
    textile = op.post(
        "/platforms", json={"name": "纺织产业平台", "kind": "industry", "parent_id": server.base_id}
    ).json()
    ent = op.post(
        "/enterprises",
        json={
            "name": "柯桥一厂",
            "credit_code": credit_code("91330621MA2B00021"),
            "industry_code": "C17",
            "region_code": "330603",
            "home_platform_id": textile["id"],
        },
    ).json()
    op.post(
        "/users",
        json={
            "username": "plant-admin",
            "password": "plant-admin-pw",
            "role": "admin",
            "enterprise_id": ent["id"],
        },
    )
    token = (
        server.client()
        .post("/auth/login", json={"username": "plant-admin", "password": "plant-admin-pw"})
        .json()["token"]
    )
    admin = server.client(token)
    product = admin.post(
        "/products", json={"enterprise_id": ent["id"], "name": "织机", "thing_model": MODEL}
    ).json()
    devices = [
        admin.post(
            "/devices", json={"product_id": product["id"], "device_name": f"LOOM-{i:03d}"}
        ).json()
        for i in range(3)
    ]
    return {
        "op": op,
        "admin": admin,
        "textile": textile,
        "ent": ent,
        "product": product,
        "devices": devices,
    }


def device(server: Server, plant: dict[str, Any], index: int = 0, **sign_opts: Any) -> Device:
    d = plant["devices"][index]
    return Device(
        server.mqtt_port,
        plant["product"]["product_key"],
        d["device_name"],
        d["device_secret"],
        **sign_opts,
    )


def test_signer_matches_published_vector() -> None:
    content = "clientIdSN1928339deviceNamelight1983432productKeya14Xib5kdYdtimestamp1539421321846"
    mac = hmac.new(b"oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq", content.encode(), hashlib.sha1).hexdigest()
    assert mac == "b2488041f64f425016b467ee1c94959ebd592ad1"
    connect = parse_connect(
        "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|",
        "light1983432&a14Xib5kdYd",
    )
    assert sign(connect, "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq") == mac


def test_post_both_forms_and_read_back(server: Server, plant: dict[str, Any]) -> None:
    dev = device(server, plant, sign_method="hmacsha1", timestamp=int(time.time() * 1000))
    assert dev.connect()
    assert dev.subscribe(f"{dev.sys}/thing/event/property/post_reply") == [1]
    short = dev.post(
        {
            "temperature": 36.5,
            "count": 7,
            "status": 1,
            "running": 1,
            "note": "早班",
            "info": {"hours": 12},
            "spectrum": [0.1, 0.2],
        },
        "1",
    )
    assert short["code"] == 200 and short["id"] == "1"
    t0 = int(time.time() * 1000) - 60_000
    long = dev.post(
        {"temperature": {"value": 40.25, "time": t0}, "count": {"value": 8, "time": t0}}, "2"
    )
    assert long["code"] == 200
    device_id = plant["devices"][0]["id"]
    admin = plant["admin"]

    def latest() -> dict[str, Any] | None:
        props = admin.get(f"/devices/{device_id}/properties").json()["properties"]
        return props if len(props) == 7 else None

    props = wait_for(latest)
    assert props["temperature"]["value"] == 36.5  # the short form is newer than the long form
    assert props["running"]["value"] is True
    assert props["info"]["value"] == {"hours": 12}
    assert props["spectrum"]["value"] == [0.1, 0.2]
    assert props["note"]["value"] == "早班"
    raw = admin.get(f"/devices/{device_id}/telemetry", params={"property": "temperature"}).json()[
        "points"
    ]
    assert next((p["ts"], p["value"]) for p in raw) == (t0, 40.25)
    assert {p["value"] for p in raw} == {40.25, 36.5}
    buckets = admin.get(
        f"/devices/{device_id}/telemetry/buckets", params={"property": "count", "max_points": 10}
    ).json()
    assert sum(b["count"] for b in buckets["buckets"]) == 2
    assert (
        min(b["min"] for b in buckets["buckets"]) == 7
        or min(b["min"] for b in buckets["buckets"]) == 8
    )
    assert len(buckets["buckets"]) <= 10
    state = admin.get(f"/devices/{device_id}/state").json()
    assert state["online"] is True
    log = admin.get(f"/devices/{device_id}/message-log").json()["entries"]
    assert [e["code"] for e in log[:2]] == [200, 200]
    fleet = admin.get(
        f"/products/{plant['product']['id']}/fleet-latest", params={"property": "count"}
    ).json()
    assert [d["value"] for d in fleet["devices"]] == [7]
    dev.close()
    wait_for(lambda: admin.get(f"/devices/{device_id}/state").json()["online"] is False)


def test_event_post_is_stored(server: Server, plant: dict[str, Any]) -> None:
    dev = device(server, plant, 1)
    assert dev.connect()
    dev.subscribe(f"{dev.sys}/thing/event/overTemp/post_reply")
    dev.publish(
        f"{dev.sys}/thing/event/overTemp/post",
        {
            "id": "e1",
            "version": "1.0",
            "params": {"value": {"temperature": 150.0}, "time": int(time.time() * 1000)},
        },
    )
    assert dev.reply("e1")["code"] == 200
    dev.publish(
        f"{dev.sys}/thing/event/overTemp/post",
        {"id": "e2", "version": "1.0", "params": {"value": {"temperature": 999.0}}},
    )
    bad = dev.reply("e2")
    assert bad["code"] == 460 and "temperature" in bad["message"]
    events = wait_for(
        lambda: plant["admin"].get(f"/devices/{plant['devices'][1]['id']}/events").json()["events"]
    )
    assert [(e["identifier"], e["type"], e["output"]) for e in events] == [
        ("overTemp", "alert", {"temperature": 150.0})
    ]
    dev.close()


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({"temperature": 500.0}, "temperature", "max"),
        ({"count": "many"}, "count", "type"),
        ({"colour": 1}, "colour", "unknown_property"),
        ({"status": 7}, "status", "enum_member"),
        ({"note": "一二三四五六七八九十"}, "note", "max_length"),
    ],
)
def test_invalid_values_get_460_and_nothing_is_stored(
    server: Server, plant: dict[str, Any], params: dict[str, Any], field: str, rule: str
) -> None:
    dev = device(server, plant, 2)
    assert dev.connect()
    dev.subscribe(f"{dev.sys}/thing/event/property/post_reply")
    reply = dev.post(params, "bad")
    assert reply["code"] == 460
    assert field in reply["message"] and rule in reply["message"], reply
    good = dev.post({"count": 5}, "good")
    assert good["code"] == 200
    device_id = plant["devices"][2]["id"]
    stored = wait_for(
        lambda: plant["admin"].get(f"/devices/{device_id}/telemetry").json()["points"]
    )
    assert {p["property"] for p in stored} == {"count"}
    dev.close()


def test_malformed_json_and_topics_do_not_break_the_connection(
    server: Server, plant: dict[str, Any]
) -> None:
    dev = device(server, plant, 2)
    assert dev.connect()
    dev.subscribe(f"{dev.sys}/thing/event/property/post_reply")
    dev.publish(f"{dev.sys}/thing/event/property/post", b'{"id": "m1", "params": {')
    broken = dev.reply("")  # the id cannot be read from truncated JSON
    assert broken["code"] == 460 and "JSON" in broken["message"], broken
    dev.publish(f"{dev.sys}/thing/nonsense/post", {"id": "x"})
    many = {f"p{i}": i for i in range(201)}
    assert dev.post(many, "m2")["code"] == 6106
    assert dev.post({"count": 9}, "m3")["code"] == 200
    entries = (
        plant["admin"].get(f"/devices/{plant['devices'][2]['id']}/message-log").json()["entries"]
    )
    assert any(e["code"] == 6203 for e in entries)
    dev.close()


def test_refused_connections(server: Server, plant: dict[str, Any]) -> None:
    d = plant["devices"][0]
    pk = plant["product"]["product_key"]
    assert not Device(
        server.mqtt_port, pk, d["device_name"], "wrong-secret-000000000000000000"
    ).connect()
    assert not Device(server.mqtt_port, pk, "NO-SUCH-DEVICE", d["device_secret"]).connect()
    admin = plant["admin"]
    assert admin.patch(f"/devices/{d['id']}", json={"enabled": False}).status_code == 200
    try:
        assert not device(server, plant, 0).connect()
    finally:
        admin.patch(f"/devices/{d['id']}", json={"enabled": True})
    again = device(server, plant, 0)
    assert again.connect()
    again.close()
    client_id, username, _ = make_credentials(pk, d["device_name"], d["device_secret"])
    assert client_id and username


def test_other_devices_topics_are_refused(server: Server, plant: dict[str, Any]) -> None:
    mine, other = device(server, plant, 0), plant["devices"][1]
    assert mine.connect()
    other_sys = f"/sys/{plant['product']['product_key']}/{other['device_name']}"
    assert mine.subscribe(f"{other_sys}/thing/event/property/post_reply") == [0x80]
    assert mine.subscribe("/sys/#") == [0x80]
    before = server.runtime.live().ingress
    assert before is not None
    dropped = before.counters()["publishes_dropped"]
    mine.publish(
        f"{other_sys}/thing/event/property/post", {"id": "spoof", "params": {"count": 999}}
    )
    wait_for(lambda: before.counters()["publishes_dropped"] > dropped)
    assert mine.subscribe(f"{mine.sys}/thing/event/property/post_reply") == [1]
    assert mine.post({"count": 11}, "after")["code"] == 200  # the connection survived
    points = plant["admin"].get(f"/devices/{other['id']}/telemetry").json()["points"]
    assert 999 not in [p["value"] for p in points]
    mine.close()


def test_telemetry_reads_obey_grants(server: Server, plant: dict[str, Any]) -> None:
    op, admin = plant["op"], plant["admin"]
    dev = device(server, plant, 1)
    assert dev.connect()
    dev.subscribe(f"{dev.sys}/thing/event/property/post_reply")
    assert dev.post({"temperature": 20.0, "count": 3}, "g1")["code"] == 200
    dev.close()
    device_id = plant["devices"][1]["id"]
    wait_for(lambda: len(admin.get(f"/devices/{device_id}/properties").json()["properties"]) >= 2)
    op.post(
        "/users",
        json={
            "username": "textile-op",
            "password": "textile-op-pw",
            "role": "operator",
            "platform_id": plant["textile"]["id"],
        },
    )
    token = (
        server.client()
        .post("/auth/login", json={"username": "textile-op", "password": "textile-op-pw"})
        .json()["token"]
    )
    textile_op = server.client(token)
    other = server.client(server.operator_key)
    region = op.post(
        "/platforms", json={"name": "宁波", "kind": "region", "parent_id": server.base_id}
    ).json()
    op.post(
        "/users",
        json={
            "username": "region-op",
            "password": "region-op-pw",
            "role": "operator",
            "platform_id": region["id"],
        },
    )
    region_op = server.client(
        server.client()
        .post("/auth/login", json={"username": "region-op", "password": "region-op-pw"})
        .json()["token"]
    )
    url = f"/devices/{device_id}/properties"
    assert textile_op.get(url).status_code == 404  # no grant yet
    grant = admin.post(
        "/grants",
        json={
            "enterprise_id": plant["ent"]["id"],
            "platform_id": plant["textile"]["id"],
            "products": [plant["product"]["product_key"]],
            "properties": ["temperature"],
        },
    ).json()
    got = textile_op.get(url)
    assert got.status_code == 200 and set(got.json()["properties"]) == {"temperature"}
    assert (
        textile_op.get(
            f"/devices/{device_id}/telemetry/buckets", params={"property": "count"}
        ).status_code
        == 404
    )
    assert textile_op.get(f"/devices/{device_id}/message-log").status_code == 404
    assert region_op.get(url).status_code == 404  # a platform the grant does not name
    assert other.get(url).status_code == 200  # the base operator observes the textile platform
    assert admin.post(f"/grants/{grant['id']}/revoke").status_code == 200
    assert textile_op.get(url).status_code == 404  # revoked: refused at once
    soon = admin.post(
        "/grants",
        json={
            "enterprise_id": plant["ent"]["id"],
            "platform_id": plant["textile"]["id"],
            "products": ["*"],
            "expires_at": "2000-01-01T00:00:00Z",
        },
    )
    assert soon.status_code == 422  # an expiry in the past is refused
    assert isinstance(httpx, object)


def test_indicators_count_online_devices_and_points_today(
    server: Server, plant: dict[str, Any]
) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    dev = device(server, plant, 0)
    assert dev.connect()
    dev.subscribe(f"{dev.sys}/thing/event/property/post_reply")
    assert dev.post({"count": 77}, "ind")["code"] == 200
    admin, op = plant["admin"], plant["op"]
    day = datetime.now(ZoneInfo("Asia/Shanghai")).replace(hour=0, minute=0, second=0, microsecond=0)
    day_ms = int(day.timestamp() * 1000)

    def stored_today() -> int:
        total = 0
        for d in plant["devices"]:
            total += len(
                admin.get(
                    f"/devices/{d['id']}/telemetry", params={"start_ms": day_ms, "limit": 10_000}
                ).json()["points"]
            )
        return total

    wait_for(
        lambda: (
            admin.get(f"/devices/{plant['devices'][0]['id']}/properties")
            .json()["properties"]
            .get("count", {})
            .get("value")
            == 77
        )
    )
    expected = stored_today()
    for pid in (server.base_id, plant["textile"]["id"]):
        figures = op.get(f"/platforms/{pid}/indicators").json()
        assert figures["devices_online"] == 1, figures
        assert figures["points_today"] == expected > 0, figures
    dev.close()
    wait_for(
        lambda: op.get(f"/platforms/{server.base_id}/indicators").json()["devices_online"] == 0
    )
