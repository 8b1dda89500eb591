"""Rules and alarms end to end: a real MQTT client is the device, rules are made over HTTP,
alarms are read back over HTTP (the engine writes them in batches, so reads poll)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, _start
from tests.helpers.mqtt import Device
from tests.helpers.tenants import enterprise_with_user

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
ALARM = {
    "severity": "major",
    "message": {"zh-CN": "温度过高 {temperature}", "en": "Hot {temperature}"},
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
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose per-device rate limit lets a device post 1,000 messages at once."""
    data_dir: Path = tmp_path_factory.mktemp("rules")
    yield from _start(data_dir, device_rate_per_s=5000.0, device_burst=5000.0)


@pytest.fixture(scope="module")
def plant(server: Server) -> dict[str, Any]:
    eng, ent = enterprise_with_user(server, "规则测试厂", "91330200MA2B00081", "rules-eng")
    product = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "炉子", "thing_model": MODEL}
    ).json()
    devices = [
        eng.post("/devices", json={"product_id": product["id"], "device_name": f"OVEN-{i:03d}"})
        .raise_for_status()
        .json()
        for i in range(6)
    ]
    other, _ = enterprise_with_user(server, "隔壁厂", "91330200MA2B00099", "other-eng")
    return {"eng": eng, "ent": ent, "product": product, "devices": devices, "other": other}


def connect(server: Server, plant: dict[str, Any], index: int) -> Device:
    d = plant["devices"][index]
    dev = Device(
        server.mqtt_port, plant["product"]["product_key"], d["device_name"], d["device_secret"]
    )
    assert dev.connect()
    dev.subscribe(f"{dev.sys}/thing/event/+/post_reply")
    return dev


def make_rule(plant: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = plant["eng"].post(f"/enterprises/{plant['ent']['id']}/rules", json=body)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


def alarms_of(plant: dict[str, Any], rule_id: int, **params: Any) -> list[dict[str, Any]]:
    response = plant["eng"].get("/alarms", params={"rule_id": rule_id, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_threshold_for_a_duration_raises_after_it_and_clears(
    server: Server, plant: dict[str, Any]
) -> None:
    device_id = plant["devices"][0]["id"]
    rule = make_rule(
        plant,
        name="炉温过高",
        device_id=device_id,
        condition={"kind": "expression", "expression": "temperature > 80.0", "for": "1s"},
        alarm=ALARM,
    )
    dev = connect(server, plant, 0)
    sent = time.time() * 1000
    assert dev.post({"temperature": 95.5}, "t1")["code"] == 200
    assert alarms_of(plant, rule["id"]) == []  # not before the duration
    raised = wait_for(lambda: alarms_of(plant, rule["id"], status="active"))
    assert len(raised) == 1
    alarm = raised[0]
    assert alarm["raised_ms"] - sent >= 1000
    assert alarm["severity"] == "major"
    assert alarm["message_zh"] == "温度过高 95.5" and alarm["message_en"] == "Hot 95.5"
    assert dev.post({"temperature": 20.0}, "t2")["code"] == 200
    cleared = wait_for(lambda: alarms_of(plant, rule["id"], status="cleared"))
    assert cleared[0]["id"] == alarm["id"] and cleared[0]["clear_reason"] == "rule"
    assert alarms_of(plant, rule["id"], status="open") == []
    # a change takes effect at once, without a restart: 20 degrees now breach
    changed = plant["eng"].patch(
        f"/enterprises/{plant['ent']['id']}/rules/{rule['id']}",
        json={"condition": {"kind": "expression", "expression": "temperature > 10.0"}},
    )
    assert changed.status_code == 200, changed.text
    wait_for(lambda: dev.post({"temperature": 20.5}, f"t{time.monotonic()}")["code"] == 200
             and alarms_of(plant, rule["id"], status="active"))  # fmt: skip
    dev.close()


def test_no_data_rule_fires_when_the_device_goes_silent(
    server: Server, plant: dict[str, Any]
) -> None:
    device_id = plant["devices"][1]["id"]
    rule = make_rule(
        plant,
        name="设备静默",
        device_id=device_id,
        condition={"kind": "no_data", "timeout": "1s"},
        alarm={"severity": "warning", "message": {"en": "{device.name} silent"}},
    )
    dev = connect(server, plant, 1)
    assert dev.post({"temperature": 30.0}, "n1")["code"] == 200
    silent = wait_for(lambda: alarms_of(plant, rule["id"], status="active"))
    assert silent[0]["message_en"] == "OVEN-001 silent"
    assert dev.post({"temperature": 31.0}, "n2")["code"] == 200
    wait_for(lambda: alarms_of(plant, rule["id"], status="cleared"))
    dev.close()


def test_event_rule_fires_on_an_alert_event(server: Server, plant: dict[str, Any]) -> None:
    device_id = plant["devices"][2]["id"]
    rule = make_rule(
        plant,
        name="超温事件",
        device_id=device_id,
        condition={"kind": "event", "event_type": "alert", "expression": "temperature > 100.0"},
        alarm={"severity": "critical", "message": {"zh-CN": "超温 {temperature}"}},
    )
    dev = connect(server, plant, 2)
    for i, temperature in enumerate((150.0, 50.0, 160.0)):
        body = {"id": f"e{i}", "version": "1.0", "params": {"value": {"temperature": temperature}}}
        dev.publish(f"{dev.sys}/thing/event/overTemp/post", body)
        assert dev.reply(f"e{i}")["code"] == 200
    alarm = wait_for(
        lambda: [a for a in alarms_of(plant, rule["id"], status="active") if a["count"] == 2]
    )[0]
    assert alarm["severity"] == "critical" and alarm["message_zh"] == "超温 150"
    assert alarm["values"]["temperature"] == 160.0
    dev.close()


def test_one_thousand_breaches_make_one_alarm_with_count_1000(
    server: Server, plant: dict[str, Any]
) -> None:
    device_id = plant["devices"][3]["id"]
    rule = make_rule(
        plant,
        name="计数超限",
        device_id=device_id,
        condition={"kind": "expression", "expression": "count > 100"},
        alarm={"severity": "minor", "message": {"en": "count {count}"}},
    )
    dev = connect(server, plant, 3)
    for i in range(1000):
        dev.publish(
            f"{dev.sys}/thing/event/property/post",
            {"id": f"d{i}", "version": "1.0", "params": {"count": 101 + i}},
        )
    assert dev.reply("d999")["code"] == 200
    alarm = wait_for(
        lambda: [a for a in alarms_of(plant, rule["id"]) if a["count"] == 1000], timeout=20
    )[0]
    assert alarm["status"] == "active" and alarm["values"]["count"] == 1100
    assert len(alarms_of(plant, rule["id"])) == 1
    dev.close()


@pytest.mark.parametrize(
    ("condition", "field", "rule_name"),
    [
        (
            {"kind": "expression", "expression": "temperature >"},
            "condition.expression",
            "expression",
        ),
        (
            {"kind": "expression", "expression": "humidity > 3"},
            "condition.expression",
            "unknown_property",
        ),
        (
            {"kind": "expression", "expression": "temperature > 1.0", "for": "soon"},
            "condition.for",
            "duration",
        ),
        (
            {"kind": "average", "property": "rpm", "window": "10s", "threshold": 1},
            "condition.property",
            "unknown_property",
        ),
        ({"kind": "sometimes"}, "condition.kind", "enum"),
    ],
)
def test_a_broken_rule_is_refused_naming_the_field(
    plant: dict[str, Any], condition: dict[str, Any], field: str, rule_name: str
) -> None:
    path = f"/enterprises/{plant['ent']['id']}/rules"
    before = plant["eng"].get(path).json()["total"]
    response = plant["eng"].post(
        path, json={"name": "坏规则", "product_id": plant["product"]["id"], "condition": condition}
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert {"field": field, "rule": rule_name} in [
        {"field": e["field"], "rule": e["rule"]} for e in response.json()["errors"]
    ]
    assert plant["eng"].get(path).json()["total"] == before


def test_a_rule_failing_at_run_time_is_disabled_and_the_others_keep_firing(
    server: Server, plant: dict[str, Any]
) -> None:
    device_id = plant["devices"][4]["id"]
    broken = make_rule(
        plant,
        name="除零",
        device_id=device_id,
        condition={"kind": "expression", "expression": "count / (count - count) > 1"},
        alarm=ALARM,
    )
    healthy = make_rule(
        plant,
        name="正常",
        device_id=device_id,
        condition={"kind": "expression", "expression": "count > 5"},
        alarm={"severity": "info", "message": {"en": "count {count}"}},
    )
    dev = connect(server, plant, 4)
    assert dev.post({"count": 10, "temperature": 1.0}, "r1")["code"] == 200
    path = f"/enterprises/{plant['ent']['id']}/rules/{broken['id']}"
    shown = wait_for(lambda: (r := plant["eng"].get(path).json())["enabled"] is False and r)
    assert "division by zero" in shown["disabled_reason"]
    assert wait_for(lambda: alarms_of(plant, healthy["id"], status="active"))
    assert dev.post({"count": 11}, "r2")["code"] == 200
    assert wait_for(lambda: [a for a in alarms_of(plant, healthy["id"]) if a["count"] == 2])
    assert alarms_of(plant, broken["id"]) == []
    enabled = plant["eng"].post(f"{path}/enable")
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] == ""
    dev.close()


def test_dry_run_returns_the_moments_the_rule_would_have_fired(
    server: Server, plant: dict[str, Any]
) -> None:
    device_id = plant["devices"][5]["id"]
    rule = make_rule(
        plant,
        name="回放",
        device_id=device_id,
        enabled=False,
        condition={"kind": "expression", "expression": "temperature > 80.0", "for": "1500ms"},
        alarm=ALARM,
    )
    dev = connect(server, plant, 5)
    t0 = int(time.time() * 1000) - 60_000
    series = [(0, 90.0), (1000, 91.0), (2000, 92.0), (3000, 20.0), (4000, 95.0), (9000, 96.0)]
    for i, (offset, value) in enumerate(series):
        params = {"temperature": {"value": value, "time": t0 + offset}}
        assert dev.post(params, f"h{i}")["code"] == 200
    stored = f"/devices/{device_id}/telemetry"
    wait_for(lambda: len(plant["eng"].get(stored, params={"start_ms": t0}).json()["points"]) == 6)
    response = plant["eng"].post(
        f"/rules/{rule['id']}/dry-run", json={"start_ms": t0, "end_ms": t0 + 10_000}
    )
    assert response.status_code == 200, response.text
    moments = [(m["ts"] - t0, m["transition"]) for m in response.json()["moments"]]
    assert moments == [(1500, "raise"), (3000, "clear"), (5500, "raise")]
    assert response.json()["points"] == 6
    assert alarms_of(plant, rule["id"]) == []  # a dry run raises nothing
    dev.close()


def test_alarm_lifecycle_by_hand_access_and_indicators(
    server: Server, plant: dict[str, Any]
) -> None:
    rules = plant["eng"].get(f"/enterprises/{plant['ent']['id']}/rules").json()["items"]
    healthy = next(r for r in rules if r["name"] == "正常")
    alarm = wait_for(lambda: alarms_of(plant, healthy["id"], status="active"))[0]
    other: httpx.Client = plant["other"]
    assert other.get(f"/alarms/{alarm['id']}").status_code == 404
    assert other.post(f"/alarms/{alarm['id']}/acknowledge").status_code == 404
    assert other.get(f"/enterprises/{plant['ent']['id']}/rules/{healthy['id']}").status_code == 404
    assert other.post(f"/rules/{healthy['id']}/dry-run", json={}).status_code == 404
    assert other.get("/alarms").json()["total"] == 0
    op = server.client(server.operator_key)
    figures = op.get(f"/platforms/{server.base_id}/indicators").json()
    assert figures["own"]["alarms_open"]["info"] >= 1
    subtree = op.get("/alarms", params={"platform_id": server.base_id, "severity": "info"})
    assert alarm["id"] in [a["id"] for a in subtree.json()["items"]]
    later = {"start_ms": alarm["raised_ms"] + 1, "rule_id": healthy["id"]}
    assert plant["eng"].get("/alarms", params=later).json()["total"] == 0
    assert other.get("/alarms", params={"platform_id": server.base_id}).status_code == 404
    acked = plant["eng"].post(f"/alarms/{alarm['id']}/acknowledge")
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    cleared = plant["eng"].post(f"/alarms/{alarm['id']}/clear")
    assert cleared.json()["status"] == "cleared" and cleared.json()["clear_reason"] == "manual"
    assert plant["eng"].post(f"/alarms/{alarm['id']}/clear").status_code == 409
    by_severity = plant["eng"].get("/alarms", params={"severity": "info", "status": "cleared"})
    assert alarm["id"] in [a["id"] for a in by_severity.json()["items"]]


def test_a_template_published_by_the_platform_becomes_an_enterprise_rule(
    server: Server, plant: dict[str, Any]
) -> None:
    op = server.client(server.operator_key)
    template = op.post(
        f"/platforms/{server.base_id}/rule-templates",
        json={
            "name": "通用超温",
            "condition": {"kind": "expression", "expression": "temperature > 120.0"},
            "alarm": ALARM,
        },
    )
    assert template.status_code == 201, template.text
    listed = plant["eng"].get(f"/platforms/{server.base_id}/rule-templates").json()
    assert template.json()["id"] in [t["id"] for t in listed["items"]]
    child = op.post(
        "/platforms", json={"name": "模具产业平台", "kind": "industry", "parent_id": server.base_id}
    ).json()
    below = op.get(f"/platforms/{child['id']}/rule-templates").json()["items"]
    assert template.json()["id"] in [t["id"] for t in below]  # inherited down the tree
    own_only = op.get(f"/platforms/{child['id']}/rule-templates", params={"inherited": False})
    assert own_only.json()["items"] == []
    rule = make_rule(plant, template_id=template.json()["id"], product_id=plant["product"]["id"])
    assert rule["name"] == "通用超温" and rule["condition"]["expression"] == "temperature > 120.0"
    refused = plant["eng"].post(
        f"/platforms/{server.base_id}/rule-templates",
        json={"name": "x", "condition": {"kind": "no_data", "timeout": "1s"}},
    )
    assert refused.status_code == 403
