"""Bad input over HTTP: every refusal is a 4xx problem naming the field and rule; never 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server
from tests.helpers.codes import credit_code

PROBLEM = "application/problem+json"


def problem(r: httpx.Response, status: int) -> list[dict[str, str]]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"]
    errors: list[dict[str, str]] = body.get("errors", [])
    return errors


def fields(errors: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(e["field"], e["rule"]) for e in errors]


@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, Any]:
    op = server.client(server.operator_key)
    ind = op.post(
        "/platforms", json={"name": "模具产业平台", "kind": "industry", "parent_id": server.base_id}
    ).json()
    child = op.post(
        "/platforms", json={"name": "宁波模具", "kind": "region", "parent_id": ind["id"]}
    ).json()
    ent = op.post(
        "/enterprises",
        json={
            "name": "宁波模具厂",
            "credit_code": credit_code("91330200MA2B00009"),
            "industry_code": "C35",
            "region_code": "330200",
            "home_platform_id": child["id"],
        },
    ).json()
    op.post(
        "/users",
        json={
            "username": "mold-admin",
            "password": "mold-admin-pw",
            "role": "admin",
            "enterprise_id": ent["id"],
        },
    )
    token = (
        server.client()
        .post("/auth/login", json={"username": "mold-admin", "password": "mold-admin-pw"})
        .json()["token"]
    )
    return {"op": op, "admin": server.client(token), "ind": ind, "child": child, "ent": ent}


def _prop(identifier: str, data_type: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": identifier, "name": "属性", "access_mode": "r", "data_type": data_type}


def _product(world: dict[str, Any], properties: list[dict[str, Any]]) -> httpx.Response:
    model = {"properties": properties, "events": [], "services": []}
    return world["admin"].post(
        "/products",
        json={"enterprise_id": world["ent"]["id"], "name": "坏模型", "thing_model": model},
    )


def test_unknown_data_type(world: dict[str, Any]) -> None:
    errors = problem(_product(world, [_prop("temp", {"type": "complex", "specs": {}})]), 422)
    assert any(
        f.startswith("thing_model.properties[0]") and "type" in f for f, _ in fields(errors)
    ), errors


def test_min_greater_than_max(world: dict[str, Any]) -> None:
    spec = {"type": "int", "specs": {"min": 10, "max": 1, "step": 1}}
    errors = problem(_product(world, [_prop("temp", spec)]), 422)
    assert any(f.startswith("thing_model.properties[0]") for f, _ in fields(errors)), errors
    assert any("min" in r or "max" in r for _, r in fields(errors)), errors


def test_duplicate_identifiers(world: dict[str, Any]) -> None:
    spec = {"type": "int", "specs": {"min": 0, "max": 10, "step": 1}}
    errors = problem(_product(world, [_prop("temp", spec), _prop("temp", spec)]), 422)
    assert any("duplicate" in r for _, r in fields(errors)), errors
    assert any(f.startswith("thing_model.properties[1]") for f, _ in fields(errors)), errors


def test_second_base_refused(world: dict[str, Any]) -> None:
    r = world["op"].post("/platforms", json={"name": "第二个基础平台", "kind": "base"})
    assert fields(problem(r, 409)) == [("kind", "single_base")]


def test_cycle_refused(world: dict[str, Any]) -> None:
    r = world["op"].patch(
        f"/platforms/{world['ind']['id']}", json={"parent_id": world["child"]["id"]}
    )
    assert fields(problem(r, 422)) == [("parent_id", "no_cycle")]
    r = world["op"].patch(
        f"/platforms/{world['ind']['id']}", json={"parent_id": world["ind"]["id"]}
    )
    assert fields(problem(r, 422)) == [("parent_id", "no_cycle")]


def test_oversized_string(world: dict[str, Any], server: Server) -> None:
    r = world["op"].post(
        "/platforms", json={"name": "长" * 129, "kind": "industry", "parent_id": server.base_id}
    )
    assert fields(problem(r, 422)) == [("name", "string_too_long")]


def test_oversized_body(world: dict[str, Any]) -> None:
    r = world["op"].post(
        "/platforms",
        content=b"{" + b" " * (5 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert fields(problem(r, 413)) == [("body", "max_bytes")]


def test_malformed_json(world: dict[str, Any]) -> None:
    r = world["op"].post(
        "/platforms", content=b'{"name": "x", ', headers={"content-type": "application/json"}
    )
    assert fields(problem(r, 400)) == [("body", "json_invalid")]


def test_wrong_types_name_the_field(world: dict[str, Any]) -> None:
    r = world["op"].post(
        "/enterprises",
        json={
            "name": "x",
            "credit_code": 5,
            "industry_code": "C",
            "region_code": "330200",
            "home_platform_id": "abc",
        },
    )
    got = dict(fields(problem(r, 422)))
    assert "credit_code" in got and "home_platform_id" in got


def test_bad_industry_and_region(world: dict[str, Any]) -> None:
    body = {
        "name": "x",
        "credit_code": credit_code("91330200MA2B00010"),
        "industry_code": "C99",
        "region_code": "330200",
        "home_platform_id": world["child"]["id"],
    }
    assert fields(problem(world["op"].post("/enterprises", json=body), 422)) == [
        ("industry_code", "section_division")
    ]
    body |= {"industry_code": "C35", "region_code": "33"}
    assert fields(problem(world["op"].post("/enterprises", json=body), 422)) == [
        ("region_code", "pattern")
    ]


def test_bad_tsl_names_tsl_field(world: dict[str, Any]) -> None:
    tsl = {
        "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
        "profile": {"productKey": "x"},
        "properties": [
            {
                "identifier": "t",
                "name": "温度",
                "accessMode": "r",
                "dataType": {"type": "int", "specs": {"min": "9", "max": "1"}},
            }
        ],
    }
    r = world["admin"].post(
        "/products", json={"enterprise_id": world["ent"]["id"], "name": "坏TSL", "tsl": tsl}
    )
    errors = problem(r, 422)
    assert all(f.startswith("tsl.properties[0]") for f, _ in fields(errors)), errors


def test_unknown_and_missing_fields(world: dict[str, Any], server: Server) -> None:
    r = world["op"].post(
        "/platforms",
        json={"name": "x", "kind": "industry", "parent_id": server.base_id, "colour": "red"},
    )
    assert ("colour", "extra_forbidden") in fields(problem(r, 422))
    r = world["op"].post("/platforms", json={"kind": "galaxy"})
    got = dict(fields(problem(r, 422)))
    assert got.get("name") == "missing" and got.get("kind") == "enum"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
ENDPOINTS = [
    "/platforms",
    "/enterprises",
    "/memberships",
    "/grants",
    "/templates",
    "/products",
    "/devices",
    "/users",
    "/api-keys",
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(endpoint=st.sampled_from(ENDPOINTS), body=json_values, as_admin=st.booleans())
def test_fuzzed_bodies_never_500(
    world: dict[str, Any], endpoint: str, body: Any, as_admin: bool
) -> None:
    client = world["admin"] if as_admin else world["op"]
    r = client.post(
        endpoint, content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith(PROBLEM)


model_like = st.fixed_dictionaries(
    {
        "properties": st.lists(
            st.fixed_dictionaries(
                {
                    "identifier": st.text(max_size=8),
                    "name": st.text(max_size=8),
                    "access_mode": st.sampled_from(["r", "rw", "x", 1]),
                    "data_type": st.fixed_dictionaries(
                        {
                            "type": st.sampled_from(
                                [
                                    "int",
                                    "float",
                                    "double",
                                    "text",
                                    "enum",
                                    "bool",
                                    "date",
                                    "struct",
                                    "array",
                                    "nope",
                                    3,
                                ]
                            ),
                            "specs": json_values,
                        }
                    ),
                }
            ),
            max_size=3,
        ),
        "events": json_values,
        "services": json_values,
    }
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(model=model_like)
def test_fuzzed_thing_models_never_500(world: dict[str, Any], model: dict[str, Any]) -> None:
    body = {"enterprise_id": world["ent"]["id"], "name": "fuzz", "thing_model": model}
    r = world["admin"].post(
        "/products", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code in (201, 422), r.text
    if r.status_code == 422:
        assert all(e["field"].startswith("thing_model") for e in r.json()["errors"]), r.text
