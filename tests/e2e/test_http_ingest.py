"""HTTP ingest: per-device JSON (device secret), bulk JSON and line protocol (enterprise key)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import Server
from tests.e2e.test_alink_telemetry import MODEL, wait_for
from tests.helpers.codes import credit_code


@pytest.fixture(scope="module")
def shop(server: Server) -> dict[str, Any]:
    op = server.client(server.operator_key)
    ent = op.post(
        "/enterprises",
        json={
            "name": "宁波泵阀",
            "credit_code": credit_code("91330200MA2B00031"),
            "industry_code": "C34",
            "region_code": "330200",
            "home_platform_id": server.base_id,
        },
    ).json()
    other = op.post(
        "/enterprises",
        json={
            "name": "别家工厂",
            "credit_code": credit_code("91330200MA2B00032"),
            "industry_code": "C34",
            "region_code": "330200",
            "home_platform_id": server.base_id,
        },
    ).json()
    tokens = {}
    for name, role, eid in (
        ("pump-eng", "engineer", ent["id"]),
        ("pump-view", "viewer", ent["id"]),
        ("other-admin", "admin", other["id"]),
    ):
        op.post(
            "/users",
            json={"username": name, "password": f"{name}-pw", "role": role, "enterprise_id": eid},
        )
        tokens[name] = (
            server.client()
            .post("/auth/login", json={"username": name, "password": f"{name}-pw"})
            .json()["token"]
        )
    eng = server.client(tokens["pump-eng"])
    product = eng.post(
        "/products", json={"enterprise_id": ent["id"], "name": "泵", "thing_model": MODEL}
    ).json()
    devices = [
        eng.post("/devices", json={"product_id": product["id"], "device_name": f"PUMP-{i}"}).json()
        for i in range(3)
    ]
    return {
        "eng": eng,
        "view": server.client(tokens["pump-view"]),
        "other": server.client(tokens["other-admin"]),
        "product": product,
        "devices": devices,
    }


def test_per_device_post_with_secret(server: Server, shop: dict[str, Any]) -> None:
    d, pk = shop["devices"][0], shop["product"]["product_key"]
    url = f"/ingest/devices/{pk}/{d['device_name']}"
    ok = server.client().post(
        url,
        json={
            "id": "1",
            "params": {
                "temperature": 21.5,
                "count": {"value": 3, "time": int(time.time() * 1000) - 1000},
            },
        },
        headers={"X-Device-Secret": d["device_secret"]},
    )
    assert ok.status_code == 200 and ok.json()["accepted"] == 2, ok.text
    bad = server.client().post(
        url, json={"id": "2", "params": {"count": 1}}, headers={"X-Device-Secret": "nope"}
    )
    assert bad.status_code == 401
    refused = server.client().post(
        url,
        json={"id": "3", "params": {"count": -1}},
        headers={"X-Device-Secret": d["device_secret"]},
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "count"
    props = wait_for(lambda: shop["eng"].get(f"/devices/{d['id']}/properties").json()["properties"])
    assert props["temperature"]["value"] == 21.5


def test_bulk_json_reports_per_point(shop: dict[str, Any]) -> None:
    pk = shop["product"]["product_key"]
    now = int(time.time() * 1000)
    body = [
        {
            "product_key": pk,
            "device_name": d["device_name"],
            "ts": now - i,
            "properties": {"count": i, "temperature": 10.0 + i},
        }
        for i, d in enumerate(shop["devices"])
    ]
    body.append(
        {"product_key": pk, "device_name": "PUMP-1", "ts": now, "properties": {"count": 10.5}}
    )
    body.append({"product_key": pk, "device_name": "NOPE", "properties": {"count": 1}})
    r = shop["eng"].post("/ingest/bulk", json=body)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["accepted"] == 6 and report["rejected"] == 2
    assert {(e["index"], e["field"], e["rule"]) for e in report["errors"]} == {
        (3, "count", "type"),
        (4, "device", "exists"),
    }
    d2 = shop["devices"][2]
    wait_for(
        lambda: (
            shop["eng"]
            .get(f"/devices/{d2['id']}/properties")
            .json()["properties"]
            .get("count", {})
            .get("value")
            == 2
        )
    )


def test_line_protocol(shop: dict[str, Any]) -> None:
    pk = shop["product"]["product_key"]
    now = int(time.time() * 1000)
    lines = f"{pk},device=PUMP-2 temperature=55.5,count=42i {now}\n# comment\n{pk},device=PUMP-2 count=oops {now}\n{pk},device=PUMP-2 status=1i,running=true {now + 1}\n"
    r = shop["eng"].post("/ingest/line", params={"precision": "ms"}, content=lines)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 4
    assert [e["index"] for e in r.json()["errors"]] == [3]
    d2 = shop["devices"][2]
    props = wait_for(
        lambda: (
            (p := shop["eng"].get(f"/devices/{d2['id']}/properties").json()["properties"])
            .get("count", {})
            .get("value")
            == 42
            and p
        )
    )
    assert props["temperature"]["value"] == 55.5 and props["running"]["value"] is True


def test_ingest_needs_a_writer_of_the_enterprise(shop: dict[str, Any], server: Server) -> None:
    pk = shop["product"]["product_key"]
    body = [{"product_key": pk, "device_name": "PUMP-0", "properties": {"count": 1}}]
    for client in (shop["view"], shop["other"]):
        r = client.post("/ingest/bulk", json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "exists"
    assert server.client().post("/ingest/bulk", json=body).status_code == 401
    assert shop["eng"].post("/ingest/bulk", content=b"{not json").status_code == 422
