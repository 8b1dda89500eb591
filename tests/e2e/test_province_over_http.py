"""End to end over HTTP only: bootstrap → platforms → enterprises → memberships → a TSL
product → devices → identifiers resolve → indicators add up at every level."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import BASE_PREFIX, Server
from tests.helpers.codes import broken_credit_code, credit_code

TSL_DIR = Path(__file__).parents[1] / "data" / "tsl"


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_province_end_to_end(server: Server) -> None:
    op = server.client(server.operator_key)
    me = ok(op.get("/me"))
    assert me["platform_roles"] == [{"platform_id": server.base_id, "role": "operator"}]

    textile = ok(
        op.post(
            "/platforms",
            json={"name": "纺织产业平台", "kind": "industry", "parent_id": server.base_id},
        ),
        201,
    )
    region = ok(
        op.post(
            "/platforms", json={"name": "绍兴柯桥", "kind": "region", "parent_id": server.base_id}
        ),
        201,
    )
    assert textile["identifier"] == f"{BASE_PREFIX}.1"
    assert region["identifier"] == f"{BASE_PREFIX}.2"

    # a wrong check character is refused, naming the field and the check
    bad = op.post(
        "/enterprises",
        json={
            "name": "坏码纺织有限公司",
            "credit_code": broken_credit_code("91330621MA2B00001"),
            "industry_code": "C1711",
            "region_code": "330603",
            "home_platform_id": textile["id"],
        },
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["field"] == "credit_code"
    assert bad.json()["errors"][0]["rule"] == "check_character"

    def enterprise(name: str, body17: str, home: int) -> dict[str, Any]:
        return ok(
            op.post(
                "/enterprises",
                json={
                    "name": name,
                    "credit_code": credit_code(body17),
                    "industry_code": "C1711",
                    "region_code": "330603",
                    "home_platform_id": home,
                },
            ),
            201,
        )

    e1 = enterprise("柯桥印染有限公司", "91330621MA2B00001", textile["id"])
    e2 = enterprise("绍兴空压设备有限公司", "91330621MA2B00002", region["id"])
    e3 = enterprise("浙江织造股份有限公司", "91330621MA2B00003", textile["id"])
    assert e1["identifier"].startswith(textile["identifier"] + ".")
    assert e2["identifier"].startswith(region["identifier"] + ".")

    ok(op.post("/memberships", json={"enterprise_id": e1["id"], "platform_id": region["id"]}), 201)
    ok(op.post("/memberships", json={"enterprise_id": e2["id"], "platform_id": textile["id"]}), 201)

    # enterprise admins, made by the operator, own the enterprises' products and devices
    tokens: dict[int, str] = {}
    for e in (e1, e2, e3):
        user = {"username": f"admin-{e['id']}", "password": "s3cret-pass", "role": "admin"}
        ok(op.post("/users", json={**user, "enterprise_id": e["id"]}), 201)
        login = ok(
            server.client().post(
                "/auth/login", json={"username": user["username"], "password": user["password"]}
            )
        )
        tokens[e["id"]] = login["token"]

    tsl = json.loads((TSL_DIR / "air_compressor.json").read_text(encoding="utf-8"))
    devices_per_enterprise = {e1["id"]: 3, e2["id"]: 2, e3["id"]: 0}
    made: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for e in (e1, e2, e3):
        admin = server.client(tokens[e["id"]])
        product = ok(
            admin.post(
                "/products", json={"enterprise_id": e["id"], "name": "螺杆空压机", "tsl": tsl}
            ),
            201,
        )
        assert product["identifier"] == f"{e['identifier']}/{product['product_key']}"
        names = [p["name"] for p in product["thing_model"]["properties"]]
        assert any("\u4e00" <= ch <= "\u9fff" for n in names for ch in n), names
        devs = [
            ok(
                admin.post(
                    "/devices", json={"product_id": product["id"], "device_name": f"AC-{i:04d}"}
                ),
                201,
            )
            for i in range(devices_per_enterprise[e["id"]])
        ]
        for d in devs:
            assert len(d["device_secret"]) >= 16
            assert "device_secret" not in ok(admin.get(f"/devices/{d['id']}"))
        made[e["id"]] = ([product], devs)

    # every identifier resolves, with its type and owner chain
    expect: list[tuple[str, str]] = [
        (BASE_PREFIX, "platform"),
        (textile["identifier"], "platform"),
        (region["identifier"], "platform"),
    ]
    expect += [(e["identifier"], "enterprise") for e in (e1, e2, e3)]
    for e in (e1, e2, e3):
        admin = server.client(tokens[e["id"]])
        products, devs = made[e["id"]]
        for kind, records in (("product", products), ("device", devs)):
            for rec in records:
                got = ok(admin.get(f"/resolve/{rec['identifier']}"))
                assert got["type"] == kind and got["record"]["id"] == rec["id"]
                chain = [o["type"] for o in got["owners"]]
                assert chain[0] == "platform" and "enterprise" in chain
                assert got["owners"][0]["identifier"] == BASE_PREFIX
    for identifier, kind in expect:
        got = ok(op.get(f"/resolve/{identifier}"))
        assert got["type"] == kind and got["identifier"] == identifier
    assert (
        op.get(f"/resolve/{made[e1['id']][1][0]['identifier']}").status_code == 404
    )  # not the operator's data
    assert op.get(f"/resolve/{BASE_PREFIX}.99").status_code == 404

    # indicators: each level counts its subtree, enterprises once
    def figures(pid: int) -> dict[str, Any]:
        return ok(op.get(f"/platforms/{pid}/indicators"))

    products = {eid: len(v[0]) for eid, v in made.items()}
    devices = {eid: len(v[1]) for eid, v in made.items()}
    cases = {
        server.base_id: {e1["id"], e2["id"], e3["id"]},
        textile["id"]: {e1["id"], e2["id"], e3["id"]},  # e1, e3 at home, e2 member
        region["id"]: {e1["id"], e2["id"]},  # e2 at home, e1 member
    }
    for pid, members in cases.items():
        got = figures(pid)
        assert got["enterprises"] == len(members), (pid, got)
        assert got["products"] == sum(products[e] for e in members)
        assert got["devices"] == sum(devices[e] for e in members)
    base = figures(server.base_id)
    assert base["platforms"] == {"industry": 1, "region": 1, "enterprise": 0, "total": 2}
    assert [c["platform_id"] for c in base["children"]] == [textile["id"], region["id"]]
    # the parent's figure is at least each child's, and at most the sum of own + children
    assert base["enterprises"] <= base["own"]["enterprises"] + sum(
        c["enterprises"] for c in base["children"]
    )
    for key in ("enterprises", "products", "devices"):
        assert all(base[key] >= c[key] for c in base["children"])
