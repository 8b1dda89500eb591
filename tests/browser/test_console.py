"""The web console in real headless Chromium against a real server: sign in, the overview,
drill-down province -> platform -> enterprise -> device, the history chart, a service call
answered by a real MQTT device, language switch, tenant isolation, no request off 127.0.0.1."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from qiantang.web.console import WEB_ROOT
from tests.browser.conftest import Pages
from tests.conftest import Server
from tests.e2e.test_alink_telemetry import wait_for
from tests.e2e.test_downlink import MODEL, Responder
from tests.helpers.codes import credit_code

ZH = json.loads((WEB_ROOT / "i18n" / "zh-CN.json").read_text(encoding="utf-8"))
EN = json.loads((WEB_ROOT / "i18n" / "en.json").read_text(encoding="utf-8"))
DAY_MS = 86_400_000
Shoot = Callable[[Page, str], Path]


def _login(server: Server, username: str, password: str) -> httpx.Client:
    token = server.client().post("/auth/login", json={"username": username, "password": password})
    return server.client(token.json()["token"])


def _enterprise(op: httpx.Client, name: str, body17: str, home: int) -> dict[str, Any]:
    r = op.post(
        "/enterprises",
        json={
            "name": name,
            "credit_code": credit_code(body17),
            "industry_code": "C17",
            "region_code": "330603",
            "home_platform_id": home,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _user(op: httpx.Client, username: str, role: str, **node: int) -> int:
    r = op.post(
        "/users", json={"username": username, "password": f"{username}-pw", "role": role, **node}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _seed_day(eng: httpx.Client, product_key: str, device_name: str) -> int:
    """A day of temperature readings, one a minute, through HTTP bulk ingest."""
    now = int(time.time() * 1000)
    body = [
        {
            "product_key": product_key,
            "device_name": device_name,
            "ts": now - i * 60_000,
            "properties": {"temperature": round(50 + 20 * math.sin(i / 90), 2)},
        }
        for i in range(1440)
    ]
    r = eng.post("/ingest/bulk", json=body)
    assert r.status_code == 200 and r.json()["accepted"] == 1440, r.text
    return len(body)


@pytest.fixture(scope="module")
def rig(server: Server) -> Iterator[dict[str, Any]]:
    """A province: the base, a textile industry platform with an enterprise whose device
    is played by a real MQTT client, another enterprise at the base; a provincial user
    (operator at the base, engineer at the textile enterprise) and the other's viewer."""
    op = server.client(server.operator_key)
    textile = op.post(
        "/platforms",
        json={"name": "纺织行业平台", "kind": "industry", "parent_id": server.base_id, "code": "7"},
    )
    assert textile.status_code == 201, textile.text
    tid = textile.json()["id"]
    template = op.post(
        "/templates",
        json={"platform_id": tid, "name": "织机模板", "category": "loom", "thing_model": MODEL},
    )
    assert template.status_code == 201, template.text
    rule_template = op.post(
        f"/platforms/{tid}/rule-templates",
        json={
            "name": "织机高温",
            "condition": {"kind": "expression", "expression": "temperature > 65"},
            "alarm": {
                "severity": "major",
                "message": {"zh-CN": "温度过高：{temperature}", "en": "Too hot: {temperature}"},
            },
        },
    )
    assert rule_template.status_code == 201, rule_template.text
    weaver = _enterprise(op, "柯桥织造有限公司", "91330603MA2C00071", tid)
    other = _enterprise(op, "宁波模具有限公司", "91330200MA2C00082", server.base_id)
    prov = _user(op, "prov-op", "operator", platform_id=server.base_id)
    r = op.post(f"/users/{prov}/bindings", json={"role": "engineer", "enterprise_id": weaver["id"]})
    assert r.status_code == 201, r.text
    _user(op, "other-viewer", "viewer", enterprise_id=other["id"])
    _user(op, "weaver-viewer", "viewer", enterprise_id=weaver["id"])
    eng = _login(server, "prov-op", "prov-op-pw")
    product = eng.post(
        "/products",
        json={
            "enterprise_id": weaver["id"],
            "name": "喷气织机",
            "template_id": template.json()["id"],
        },
    ).json()
    dev = eng.post(
        "/devices",
        json={"product_id": product["id"], "device_name": "LOOM-01", "nickname": "1号织机"},
    ).json()
    eng.post("/devices", json={"product_id": product["id"], "device_name": "LOOM-02"})
    points = _seed_day(eng, product["product_key"], dev["device_name"])
    wait_for(
        lambda: eng.get(
            f"/devices/{dev['id']}/telemetry/buckets", params={"property": "temperature"}
        ).json()["buckets"]
    )
    device = Responder(
        server.mqtt_port, product["product_key"], dev["device_name"], dev["device_secret"]
    )
    device.start()
    wait_for(lambda: eng.get(f"/devices/{dev['id']}/state").json()["online"])
    yield {
        "op": op,
        "eng": eng,
        "textile": tid,
        "weaver": weaver,
        "other": other,
        "dev": dev,
        "device": device,
        "points": points,
    }
    device.close()


def _ready(page: Page, name: str) -> None:
    page.wait_for_function("name => window.qiantang && window.qiantang.ready === name", arg=name)


def _sign_in(page: Page, server: Server, username: str) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("#login-form")
    page.fill("#username", username)
    page.fill("#password", f"{username}-pw")
    page.click("#login-submit")


@pytest.fixture(scope="module")
def prov(pages: Pages, server: Server, rig: dict[str, Any]) -> Iterator[Page]:
    """The provincial user's page."""
    yield pages.new()
    print("\nscript errors:", pages.errors)


def test_sign_in_lands_on_the_overview_in_chinese(
    prov: Page, server: Server, rig: dict[str, Any], shoot: Shoot
) -> None:
    prov.goto(server.url + "/")
    prov.wait_for_selector("#login-form")
    expect(prov.locator("#login-submit")).to_have_text(ZH["login.submit"])
    shoot(prov, "01-login-zh")
    prov.fill("#username", "prov-op")
    prov.fill("#password", "wrong-password")
    prov.click("#login-submit")
    expect(prov.locator("#login-error")).to_have_text(ZH["login.failed"])
    _sign_in(prov, server, "prov-op")
    _ready(prov, "overview")
    expect(prov.locator("h1")).to_have_text(ZH["overview.title"])
    indicators = rig["op"].get(f"/platforms/{server.base_id}/indicators").json()
    tiles = prov.locator("#overview-tiles")
    expect(tiles.locator("[data-indicator=devices] .tile-value")).to_have_text(
        str(indicators["devices"])
    )
    expect(tiles.locator("[data-indicator=enterprises] .tile-value")).to_have_text(
        str(indicators["enterprises"])
    )
    assert (
        indicators["devices"]
        == sum(c["devices"] for c in indicators["children"]) + indicators["own"]["devices"]
    )
    node = prov.locator(f"#platform-tree li[data-platform-id='{rig['textile']}']")
    expect(node.locator(".node-name")).to_have_text("纺织行业平台")
    expect(node.locator("[data-figure=devices] b")).to_have_text("2")
    prov.wait_for_function("document.querySelectorAll('#chart-devices canvas').length > 0")
    # the per-platform bars (home figures) add up to the province's tile
    bars = prov.evaluate(
        "echarts.getInstanceByDom(document.querySelector('#chart-devices'))"
        ".getOption().series[0].data"
    )
    homes = [c["home"]["devices"] for c in indicators["children"]]
    assert sum(bars) == indicators["devices"] == sum(homes) + indicators["own"]["home"]["devices"]
    assert prov.evaluate("sessionStorage.getItem('qiantang.token')")
    shoot(prov, "02-overview-zh")


def test_overview_loads_within_a_second(prov: Page, server: Server) -> None:
    prov.reload()
    _ready(prov, "overview")
    ready_at = prov.evaluate("window.qiantang.readyAt.overview")
    route_ms = prov.evaluate("window.qiantang.timings.overview")
    print(
        f"\noverview: ready {ready_at:.0f} ms after navigation start (data + render {route_ms:.0f} ms)"
    )
    assert ready_at <= 1000


def test_drill_down_province_platform_enterprise_device(
    prov: Page, server: Server, rig: dict[str, Any], shoot: Shoot
) -> None:
    prov.goto(server.url + "/#/overview")
    _ready(prov, "overview")
    prov.click(f"#platform-tree li[data-platform-id='{rig['textile']}'] .node-name")
    _ready(prov, "platforms")
    expect(prov.locator("#member-enterprises")).to_contain_text(rig["weaver"]["name"])
    expect(prov.locator("#templates")).to_contain_text("织机模板")
    shoot(prov, "03-platform-zh")
    prov.click(f"#member-enterprises a:text('{rig['weaver']['name']}')")
    _ready(prov, "enterprises")
    row = prov.locator(f"#devices a[data-device-id='{rig['dev']['id']}']")
    expect(row).to_have_text("1号织机")
    expect(prov.locator(f"[data-state-of='{rig['dev']['id']}']")).to_have_text(ZH["device.online"])
    shoot(prov, "04-enterprise-zh")
    row.click()
    _ready(prov, "devices")
    expect(prov.locator("#thing-model")).to_contain_text("temperature")
    prov.wait_for_function(
        "Number(document.querySelector('#history-chart').dataset.drawn) > 0", timeout=5000
    )
    buckets = int(prov.get_attribute("#history-chart", "data-drawn") or 0)
    assert 100 <= buckets <= 1000  # server-side downsampling of 1440 points
    assert prov.locator("#history-chart canvas").count() >= 1
    shoot(prov, "05-device-zh")


def test_device_24h_chart_loads_within_a_second(prov: Page, rig: dict[str, Any]) -> None:
    prov.reload()
    _ready(prov, "devices")
    prov.wait_for_function("Number(document.querySelector('#history-chart').dataset.drawn) > 0")
    chart_ms = prov.evaluate("window.qiantang.timings.history")
    since_nav = prov.evaluate("window.qiantang.timings.history_since_navigation")
    print(
        f"\ndevice 24 h chart: fetch + draw {chart_ms:.0f} ms, drawn {since_nav:.0f} ms after navigation start"
    )
    assert since_nav <= 1000


def test_call_a_service_and_see_the_reply(prov: Page, rig: dict[str, Any], shoot: Shoot) -> None:
    form = prov.locator("#service-start")
    form.locator("input[name=speed]").fill("1500")
    form.locator("button[type=submit]").click()
    outcome = form.locator(".outcome")
    expect(outcome).to_have_attribute("data-status", "replied")
    expect(outcome).to_contain_text(ZH["command.status.replied"])
    expect(outcome.locator(".output")).to_contain_text('"ok": true')
    topic, body = rig["device"].received[-1]
    assert topic.endswith("/thing/service/start") and body["params"] == {"speed": 1500}
    setter = prov.locator("#set-properties")
    setter.locator("input[name=setpoint]").fill("42.5")
    setter.locator("button[type=submit]").click()
    expect(setter.locator(".outcome")).to_have_attribute("data-status", "replied")
    expect(prov.locator("#command-history")).to_contain_text("start")
    shoot(prov, "06-device-call-zh")


TYPED = {
    "properties": [
        {
            "identifier": "mode",
            "name": "模式",
            "access_mode": "rw",
            "data_type": {
                "type": "enum",
                "specs": {"members": [{"value": 0, "name": "停机"}, {"value": 1, "name": "运行"}]},
            },
        },
        {
            "identifier": "running",
            "name": "运行中",
            "access_mode": "rw",
            "data_type": {"type": "bool", "specs": {"false": "否", "true": "是"}},
        },
        {
            "identifier": "note",
            "name": "备注",
            "access_mode": "rw",
            "data_type": {"type": "text", "specs": {"length": 16}},
        },
        {
            "identifier": "due",
            "name": "到期",
            "access_mode": "rw",
            "data_type": {"type": "date", "specs": {}},
        },
        {
            "identifier": "cfg",
            "name": "配置",
            "access_mode": "rw",
            "data_type": {
                "type": "struct",
                "specs": {
                    "fields": [
                        {
                            "identifier": "a",
                            "name": "甲",
                            "data_type": {"type": "int", "specs": {}},
                        },
                        {
                            "identifier": "b",
                            "name": "乙",
                            "data_type": {"type": "text", "specs": {"length": 8}},
                        },
                    ]
                },
            },
        },
        {
            "identifier": "steps",
            "name": "步骤",
            "access_mode": "rw",
            "data_type": {
                "type": "array",
                "specs": {"size": 4, "item": {"type": "int", "specs": {}}},
            },
        },
    ],
    "events": [],
    "services": [],
}


def test_property_form_covers_every_data_type(
    prov: Page, server: Server, rig: dict[str, Any]
) -> None:
    eng = rig["eng"]
    product = eng.post(
        "/products",
        json={"enterprise_id": rig["weaver"]["id"], "name": "类型样机", "thing_model": TYPED},
    )
    assert product.status_code == 201, product.text
    dev = eng.post(
        "/devices", json={"product_id": product.json()["id"], "device_name": "TYPED-01"}
    ).json()
    device = Responder(
        server.mqtt_port, product.json()["product_key"], "TYPED-01", dev["device_secret"]
    )
    device.start()
    try:
        prov.goto(server.url + f"/#/devices/{dev['id']}")
        _ready(prov, "devices")
        form = prov.locator("#set-properties")
        form.locator("select[name=mode]").select_option("1")
        form.locator("select[name=running]").select_option("1")
        form.locator("input[name=note]").fill("换班")
        form.locator("input[name=due]").fill("2026-03-04T05:06")
        form.locator("input[name=a]").fill("3")
        form.locator("input[name=b]").fill("x")
        form.locator("textarea[name=steps]").fill("[1, 2, 3]")
        form.locator("button[type=submit]").click()
        expect(form.locator(".outcome")).to_have_attribute("data-status", "replied")
        due = prov.evaluate("new Date('2026-03-04T05:06').getTime()")
        _topic, body = device.received[-1]
        assert body["params"] == {
            "mode": 1,
            "running": True,
            "note": "换班",
            "due": due,
            "cfg": {"a": 3, "b": "x"},
            "steps": [1, 2, 3],
        }
        form.locator("input[name=note]").fill("")
        form.locator("textarea[name=steps]").fill("[1, 2, 3, 4, 5]")
        form.locator("button[type=submit]").click()
        expect(form.locator(".outcome")).to_contain_text("params.steps")
    finally:
        device.close()


def test_rules_create_from_template_dry_run_and_toggle(
    prov: Page, server: Server, rig: dict[str, Any], shoot: Shoot
) -> None:
    prov.goto(server.url + "/#/rules")
    _ready(prov, "rules")
    form = prov.locator("#rule-create")
    form.locator("#rule-template").select_option(label="织机高温 · 纺织行业平台")
    form.locator("#rule-name").fill("1号机高温")
    form.locator("button[type=submit]").click()
    table = prov.locator("#rule-table")
    expect(table).to_contain_text("1号机高温")
    rules = rig["eng"].get(f"/enterprises/{rig['weaver']['id']}/rules").json()["items"]
    rule = next(r for r in rules if r["name"] == "1号机高温")
    assert rule["condition"]["expression"] == "temperature > 65" and rule["enabled"]
    prov.click(f"[data-dry-run='{rule['id']}']")
    result = prov.locator("#dry-run-result")
    expect(result).to_be_visible()
    moments = int(result.get_attribute("data-moments") or 0)
    assert moments > 0  # the seeded day crosses 65 degrees several times
    expect(result).to_contain_text(ZH["rule.transition.raise"])
    shoot(prov, "07-rules-zh")
    prov.click(f"[data-toggle='{rule['id']}']")
    expect(prov.locator(f"[data-rule-state='{rule['id']}']")).to_contain_text(ZH["rule.disabled"])
    assert (
        not rig["eng"]
        .get(f"/enterprises/{rig['weaver']['id']}/rules/{rule['id']}")
        .json()["enabled"]
    )
    prov.click(f"[data-toggle='{rule['id']}']")
    expect(prov.locator(f"[data-rule-state='{rule['id']}']")).to_contain_text(ZH["rule.enabled"])
    rig["rule"] = rule


def test_acknowledge_and_clear_an_alarm(
    prov: Page, server: Server, rig: dict[str, Any], shoot: Shoot
) -> None:
    device = rig["device"]
    body = {
        "id": "hot-1",
        "version": "1.0",
        "params": {"temperature": 80.5},
        "method": "thing.event.property.post",
    }
    device.publish(f"{device.sys}/thing/event/property/post", body)
    eng = rig["eng"]
    alarm = wait_for(
        lambda: next(
            iter(
                eng.get(
                    "/alarms", params={"rule_id": rig["rule"]["id"], "status": "active"}
                ).json()["items"]
            ),
            None,
        )
    )
    prov.goto(server.url + "/#/alarms")
    _ready(prov, "alarms")
    row = prov.locator(f"#alarm-table tr:has([data-ack='{alarm['id']}'])")
    expect(row).to_contain_text("温度过高：80.5")
    expect(row).to_contain_text("1号织机")
    shoot(prov, "08-alarms-zh")
    row.locator(f"[data-ack='{alarm['id']}']").click()
    expect(prov.locator("#alarm-table")).to_contain_text(ZH["alarm.status.acknowledged"])
    assert eng.get(f"/alarms/{alarm['id']}").json()["status"] == "acknowledged"
    prov.click(f"[data-clear='{alarm['id']}']")
    wait_for(lambda: eng.get(f"/alarms/{alarm['id']}").json()["status"] == "cleared")
    expect(prov.locator(f"[data-clear='{alarm['id']}']")).to_have_count(0)


def test_switch_language_is_english_and_persists(
    prov: Page, server: Server, rig: dict[str, Any], shoot: Shoot
) -> None:
    prov.goto(server.url + f"/#/devices/{rig['dev']['id']}")
    _ready(prov, "devices")
    prov.click("#lang-switch")
    expect(prov.locator("#lang-switch")).to_have_text(EN["lang.switch"])
    expect(prov.locator("#device-page h2").first).to_have_text(EN["device.thing_model"])
    prov.wait_for_function("Number(document.querySelector('#history-chart').dataset.drawn) > 0")
    shoot(prov, "09-device-en")
    prov.goto(server.url + "/#/overview")
    prov.reload()
    _ready(prov, "overview")
    expect(prov.locator("h1")).to_have_text(EN["overview.title"])
    expect(prov.locator("#nav a").first).to_have_text(EN["nav.overview"])
    shoot(prov, "10-overview-en")
    prov.goto(server.url + "/#/alarms")
    _ready(prov, "alarms")
    expect(prov.locator("h1")).to_have_text(EN["alarm.title"])
    shoot(prov, "11-alarms-en")


def test_enterprise_viewer_cannot_reach_another_enterprises_device(
    pages: Pages, server: Server, rig: dict[str, Any], shoot: Shoot
) -> None:
    page = pages.new()
    _sign_in(page, server, "other-viewer")
    _ready(page, "enterprises")
    expect(page.locator("h1")).to_have_text(rig["other"]["name"])
    page.goto(server.url + f"/#/devices/{rig['dev']['id']}")
    _ready(page, "devices")
    expect(page.locator("[data-error]")).to_have_attribute("data-error", "not-found")
    expect(page.locator("[data-error]")).to_have_text(ZH["error.not_found"])
    assert page.locator("#device-page").count() == 0
    page.goto(server.url + f"/#/enterprises/{rig['weaver']['id']}")
    _ready(page, "enterprises")
    expect(page.locator("[data-error]")).to_have_text(ZH["error.not_found"])
    shoot(page, "12-viewer-denied-zh")


def test_a_viewer_sees_the_device_but_may_not_command_it(
    pages: Pages, server: Server, rig: dict[str, Any]
) -> None:
    page = pages.new()
    _sign_in(page, server, "weaver-viewer")
    _ready(page, "enterprises")
    page.goto(server.url + f"/#/devices/{rig['dev']['id']}")
    _ready(page, "devices")
    sent = len(rig["device"].received)
    form = page.locator("#service-start")
    form.locator("input[name=speed]").fill("100")
    form.locator("button[type=submit]").click()
    expect(form.locator(".outcome")).to_have_text(ZH["error.no_access"])
    assert len(rig["device"].received) == sent  # nothing reached the device
    page.goto(server.url + "/#/alarms")
    _ready(page, "alarms")
    page.select_option("#alarm-status", "")
    expect(page.locator("#alarm-table")).to_contain_text(ZH["alarm.read_only"])
    assert page.locator("[data-ack], [data-clear]").count() == 0


def test_no_console_request_leaves_localhost(pages: Pages) -> None:
    assert pages.requested, "the pages made no request at all"
    assert pages.foreign() == []


def test_pages_raised_no_script_error(pages: Pages) -> None:
    assert pages.errors == []
