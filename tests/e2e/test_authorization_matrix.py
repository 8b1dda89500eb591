"""Authorization matrix over HTTP: principals × resource kinds × actions.

World: base B ─┬─ 纺织 industry platform I (enterprise A at home; enterprise B a member)
               └─ 绍兴柯桥 region platform R (enterprise B at home)
Principals: operators of B and I, an analyst of R, A's admin/engineer/viewer, B's admin,
anonymous, and a revoked key. Every case says who is allowed; everyone else is denied, and
a principal of another tenant is denied with 404 (never 403, which would leak existence).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import Server, _start
from tests.helpers.codes import credit_code

PRINCIPALS = [
    "base_op",
    "ind_op",
    "reg_an",
    "a_admin",
    "a_eng",
    "a_view",
    "b_admin",
    "anon",
    "revoked",
]
A_USERS = {"a_admin", "a_eng", "a_view"}
SIGNED_IN = set(PRINCIPALS) - {"anon", "revoked"}
MODEL = {
    "properties": [
        {
            "identifier": "pressure",
            "name": "排气压力",
            "access_mode": "r",
            "data_type": {
                "type": "float",
                "specs": {"min": 0, "max": 1.6, "step": 0.01, "unit": "MPa"},
            },
        }
    ],
    "events": [],
    "services": [],
}
_seq = itertools.count(100)
RULE = {"kind": "expression", "expression": "pressure > 1.2"}


def _code() -> str:
    """A fresh valid unified social credit code."""
    return credit_code(f"91330621{next(_seq):03d}MA2B00")


@dataclass
class World:
    server: Server
    tokens: dict[str, str | None] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def as_(self, who: str) -> httpx.Client:
        return self.server.client(self.tokens[who])

    @property
    def op(self) -> httpx.Client:
        return self.as_("base_op")


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    body: dict[str, Any] = r.json()
    return body


def _user(w: World, name: str, role: str, **node: int) -> str:
    _ok(
        w.op.post(
            "/users", json={"username": name, "password": "pass-" + name, "role": role, **node}
        )
    )
    return _ok(
        w.server.client().post("/auth/login", json={"username": name, "password": "pass-" + name})
    )["token"]


def _enterprise(w: World, name: str, home: int) -> int:
    body = {
        "name": name,
        "credit_code": _code(),
        "industry_code": "C1711",
        "region_code": "330603",
        "home_platform_id": home,
    }
    return _ok(w.op.post("/enterprises", json=body))["id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    for srv in _start(tmp_path_factory.mktemp("authz")):
        w = World(srv)
        w.tokens["base_op"] = srv.operator_key
        op = w.op
        w.ids["B"] = srv.base_id
        w.ids["I"] = _ok(
            op.post(
                "/platforms",
                json={"name": "纺织产业平台", "kind": "industry", "parent_id": srv.base_id},
            )
        )["id"]
        w.ids["R"] = _ok(
            op.post(
                "/platforms", json={"name": "绍兴柯桥", "kind": "region", "parent_id": srv.base_id}
            )
        )["id"]
        w.ids["A"] = _enterprise(w, "甲印染", w.ids["I"])
        w.ids["Bx"] = _enterprise(w, "乙空压", w.ids["R"])
        w.ids["mb"] = _ok(
            op.post("/memberships", json={"enterprise_id": w.ids["Bx"], "platform_id": w.ids["I"]})
        )["id"]
        w.tokens["ind_op"] = _user(w, "ind_op", "operator", platform_id=w.ids["I"])
        w.tokens["reg_an"] = _user(w, "reg_an", "analyst", platform_id=w.ids["R"])
        for name, role in (("a_admin", "admin"), ("a_eng", "engineer"), ("a_view", "viewer")):
            w.tokens[name] = _user(w, name, role, enterprise_id=w.ids["A"])
        w.tokens["b_admin"] = _user(w, "b_admin", "admin", enterprise_id=w.ids["Bx"])
        w.tokens["anon"] = None
        revoked = _ok(w.as_("a_admin").post("/api-keys", json={"name": "to revoke"}))
        assert w.as_("a_admin").delete(f"/api-keys/{revoked['id']}").status_code == 204
        w.tokens["revoked"] = revoked["token"]
        a = w.as_("a_admin")
        w.ids["pA"] = _ok(
            a.post(
                "/products",
                json={"enterprise_id": w.ids["A"], "name": "空压机", "thing_model": MODEL},
            )
        )["id"]
        w.ids["dA"] = _ok(
            a.post("/devices", json={"product_id": w.ids["pA"], "device_name": "AC-0001"})
        )["id"]
        w.ids["gA"] = _ok(
            a.post(
                "/grants",
                json={"enterprise_id": w.ids["A"], "platform_id": w.ids["I"], "products": ["*"]},
            )
        )["id"]
        w.ids["tI"] = _ok(
            op.post(
                "/templates",
                json={"platform_id": w.ids["I"], "name": "空压机模板", "thing_model": MODEL},
            )
        )["id"]
        w.ids["rA"] = _ok(
            a.post(
                f"/enterprises/{w.ids['A']}/rules",
                json={"name": "压力高", "product_id": w.ids["pA"], "condition": RULE},
            )
        )["id"]
        w.ids["uA"] = _ok(
            a.post(
                "/users",
                json={
                    "username": "a_extra",
                    "password": "pass-a_extra",
                    "role": "viewer",
                    "enterprise_id": w.ids["A"],
                },
            )
        )["id"]
        yield w


# --- cases: (name, allowed principals, hidden-from principals, action) ----------------------
Action = Callable[[World, httpx.Client], httpx.Response]


def _fresh_platform(w: World) -> int:
    return _ok(
        w.op.post(
            "/platforms",
            json={"name": f"子平台{next(_seq)}", "kind": "region", "parent_id": w.ids["I"]},
        )
    )["id"]


def _fresh_product(w: World) -> int:
    body = {"enterprise_id": w.ids["A"], "name": f"产品{next(_seq)}", "thing_model": MODEL}
    return _ok(w.as_("a_admin").post("/products", json=body))["id"]


def _fresh_device(w: World) -> int:
    body = {"product_id": w.ids["pA"], "device_name": f"DEV-{next(_seq)}"}
    return _ok(w.as_("a_admin").post("/devices", json=body))["id"]


def _fresh_grant(w: World) -> int:
    body = {"enterprise_id": w.ids["A"], "platform_id": w.ids["R"], "products": ["*"]}
    return _ok(w.as_("a_admin").post("/grants", json=body))["id"]


def _fresh_template(w: World) -> int:
    body = {"platform_id": w.ids["I"], "name": f"模板{next(_seq)}", "thing_model": MODEL}
    return _ok(w.op.post("/templates", json=body))["id"]


def _fresh_user(w: World) -> int:
    n = next(_seq)
    body = {
        "username": f"u{n}",
        "password": f"pass-u{n}",
        "role": "viewer",
        "enterprise_id": w.ids["A"],
    }
    return _ok(w.op.post("/users", json=body))["id"]


def _fresh_membership(w: World) -> int:
    body = {"enterprise_id": w.ids["Bx"], "platform_id": w.ids["B"]}
    existing = w.op.get(
        "/memberships", params={"enterprise_id": w.ids["Bx"], "platform_id": w.ids["B"]}
    )
    for m in existing.json()["items"]:
        w.op.delete(f"/memberships/{m['id']}")
    return _ok(w.op.post("/memberships", json=body))["id"]


def _join_r(w: World, c: httpx.Client) -> httpx.Response:
    r = c.post("/memberships", json={"enterprise_id": w.ids["A"], "platform_id": w.ids["R"]})
    if r.status_code == 201:
        assert w.op.delete(f"/memberships/{r.json()['id']}").status_code == 204
    return r


def _identifier(w: World, reader: str, kind: str, key: str) -> str:
    return str(_ok(w.as_(reader).get(f"/{kind}/{w.ids[key]}"))["identifier"])


def _listed(path: str, key: str) -> Action:
    """A list request whose answer counts as 'allowed' only when the object is in it."""

    def act(w: World, c: httpx.Client) -> httpx.Response:
        r = c.get(path, params={"limit": 500})
        if r.status_code == 200 and w.ids[key] not in [i["id"] for i in r.json()["items"]]:
            return httpx.Response(404, request=r.request)
        return r

    return act


OPS = {"base_op", "ind_op"}
SEES_A = OPS | A_USERS
A_WRITERS = {"a_admin", "a_eng"}
NOT_A = {"reg_an", "b_admin"}  # another tenant's side: must get 404
ENT_ONLY_HIDDEN = OPS | NOT_A  # enterprise data is hidden from platform roles too

CASES: list[tuple[str, set[str], set[str], Action]] = [
    # platforms: a directory every signed-in principal reads; operators change their subtree
    ("platform.read", SIGNED_IN, set(), lambda w, c: c.get(f"/platforms/{w.ids['I']}")),
    ("platform.list", SIGNED_IN, set(), _listed("/platforms", "I")),
    (
        "platform.create",
        OPS,
        set(),
        lambda w, c: c.post(
            "/platforms",
            json={"name": f"新平台{next(_seq)}", "kind": "region", "parent_id": w.ids["I"]},
        ),
    ),
    (
        "platform.update",
        OPS,
        set(),
        lambda w, c: c.patch(f"/platforms/{_fresh_platform(w)}", json={"name": "改名"}),
    ),
    ("platform.delete", OPS, set(), lambda w, c: c.delete(f"/platforms/{_fresh_platform(w)}")),
    (
        "platform.indicators.I",
        OPS,
        set(),
        lambda w, c: c.get(f"/platforms/{w.ids['I']}/indicators"),
    ),
    (
        "platform.indicators.R",
        {"base_op", "reg_an"},
        set(),
        lambda w, c: c.get(f"/platforms/{w.ids['R']}/indicators"),
    ),
    # enterprises: metadata for the enterprise's own users and the platforms above it
    ("enterprise.read", SEES_A, NOT_A, lambda w, c: c.get(f"/enterprises/{w.ids['A']}")),
    ("enterprise.list", SEES_A, NOT_A, _listed("/enterprises", "A")),
    (
        "enterprise.create",
        OPS,
        set(),
        lambda w, c: c.post(
            "/enterprises",
            json={
                "name": "新企业",
                "credit_code": _code(),
                "industry_code": "C17",
                "region_code": "330603",
                "home_platform_id": w.ids["I"],
            },
        ),
    ),
    (
        "enterprise.update",
        OPS | {"a_admin"},
        NOT_A,
        lambda w, c: c.patch(f"/enterprises/{w.ids['A']}", json={"region_code": "330602"}),
    ),
    (
        "enterprise.delete",
        OPS,
        NOT_A | A_USERS,
        lambda w, c: c.delete(f"/enterprises/{_enterprise(w, '待删企业', w.ids['I'])}"),
    ),
    # memberships
    (
        "membership.read",
        OPS | {"b_admin", "reg_an"},
        A_USERS,
        lambda w, c: c.get(f"/memberships/{w.ids['mb']}"),
    ),
    ("membership.list", OPS | {"b_admin", "reg_an"}, A_USERS, _listed("/memberships", "mb")),
    ("membership.create", OPS | {"a_admin"}, NOT_A, _join_r),
    (
        "membership.delete",
        {"base_op", "b_admin"},
        A_USERS,
        lambda w, c: c.delete(f"/memberships/{_fresh_membership(w)}"),
    ),
    # grants: only the enterprise's admin consents
    ("grant.read", SEES_A, NOT_A, lambda w, c: c.get(f"/grants/{w.ids['gA']}")),
    ("grant.list", SEES_A, NOT_A, _listed("/grants", "gA")),
    (
        "grant.create",
        {"a_admin"},
        NOT_A,
        lambda w, c: c.post(
            "/grants",
            json={"enterprise_id": w.ids["A"], "platform_id": w.ids["R"], "products": ["*"]},
        ),
    ),
    (
        "grant.update",
        {"a_admin"},
        NOT_A,
        lambda w, c: c.patch(f"/grants/{w.ids['gA']}", json={"properties": ["pressure"]}),
    ),
    (
        "grant.revoke",
        {"a_admin"},
        {"b_admin"},
        lambda w, c: c.post(f"/grants/{_fresh_grant(w)}/revoke"),
    ),
    # templates: published at I, seen by everything at or below I (B is a member of I)
    (
        "template.read",
        SEES_A | {"b_admin"},
        {"reg_an"},
        lambda w, c: c.get(f"/templates/{w.ids['tI']}"),
    ),
    ("template.list", SEES_A | {"b_admin"}, {"reg_an"}, _listed("/templates", "tI")),
    (
        "template.create",
        OPS,
        set(),
        lambda w, c: c.post(
            "/templates", json={"platform_id": w.ids["I"], "name": "新模板", "thing_model": MODEL}
        ),
    ),
    (
        "template.update",
        OPS,
        {"reg_an"},
        lambda w, c: c.patch(f"/templates/{w.ids['tI']}", json={"description": "新描述"}),
    ),
    ("template.delete", OPS, {"reg_an"}, lambda w, c: c.delete(f"/templates/{_fresh_template(w)}")),
    # products and devices: the enterprise's own data
    ("product.read", A_USERS, ENT_ONLY_HIDDEN, lambda w, c: c.get(f"/products/{w.ids['pA']}")),
    ("product.list", A_USERS, ENT_ONLY_HIDDEN, _listed("/products", "pA")),
    ("product.tsl", A_USERS, ENT_ONLY_HIDDEN, lambda w, c: c.get(f"/products/{w.ids['pA']}/tsl")),
    (
        "product.create",
        A_WRITERS,
        NOT_A,
        lambda w, c: c.post(
            "/products", json={"enterprise_id": w.ids["A"], "name": "新产品", "thing_model": MODEL}
        ),
    ),
    (
        "product.update",
        A_WRITERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.patch(f"/products/{w.ids['pA']}", json={"description": "改"}),
    ),
    (
        "product.delete",
        A_WRITERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.delete(f"/products/{_fresh_product(w)}"),
    ),
    ("device.read", A_USERS, ENT_ONLY_HIDDEN, lambda w, c: c.get(f"/devices/{w.ids['dA']}")),
    ("device.list", A_USERS, ENT_ONLY_HIDDEN, _listed("/devices", "dA")),
    (
        "device.create",
        A_WRITERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.post(
            "/devices", json={"product_id": w.ids["pA"], "device_name": f"NEW-{next(_seq)}"}
        ),
    ),
    (
        "device.update",
        A_WRITERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.patch(f"/devices/{w.ids['dA']}", json={"nickname": "一号机"}),
    ),
    (
        "device.rotate",
        A_WRITERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.post(f"/devices/{w.ids['dA']}/secret"),
    ),
    (
        "device.delete",
        A_WRITERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.delete(f"/devices/{_fresh_device(w)}"),
    ),
    # users: managed by the enterprise's admin and the operators over its home
    (
        "user.read",
        OPS | {"a_admin"},
        NOT_A | {"a_eng", "a_view"},
        lambda w, c: c.get(f"/users/{w.ids['uA']}"),
    ),
    ("user.list", OPS | {"a_admin"}, NOT_A | {"a_eng", "a_view"}, _listed("/users", "uA")),
    (
        "user.create",
        OPS | {"a_admin"},
        NOT_A,
        lambda w, c: c.post(
            "/users",
            json={
                "username": f"n{next(_seq)}",
                "password": "long-enough",
                "role": "viewer",
                "enterprise_id": w.ids["A"],
            },
        ),
    ),
    (
        "user.update",
        OPS | {"a_admin"},
        NOT_A | {"a_eng", "a_view"},
        lambda w, c: c.patch(f"/users/{w.ids['uA']}", json={"display_name": "新名字"}),
    ),
    (
        "user.delete",
        OPS | {"a_admin"},
        NOT_A | {"a_eng", "a_view"},
        lambda w, c: c.delete(f"/users/{_fresh_user(w)}"),
    ),
    (
        "user.bind",
        OPS | {"a_admin"},
        NOT_A | {"a_eng", "a_view"},
        lambda w, c: c.post(
            f"/users/{w.ids['uA']}/bindings", json={"role": "viewer", "enterprise_id": w.ids["A"]}
        ),
    ),
    # identifiers resolve under the same rules
    (
        "resolve.enterprise",
        SEES_A,
        NOT_A,
        lambda w, c: c.get(f"/resolve/{_identifier(w, 'base_op', 'enterprises', 'A')}"),
    ),
    (
        "resolve.device",
        A_USERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.get(f"/resolve/{_identifier(w, 'a_admin', 'devices', 'dA')}"),
    ),
    # rules: the enterprise's data; rule templates: published by the platform's operators
    (
        "rule.read",
        A_USERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.get(f"/enterprises/{w.ids['A']}/rules/{w.ids['rA']}"),
    ),
    (
        "rule.list",
        A_USERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.get(f"/enterprises/{w.ids['A']}/rules"),
    ),
    (
        "rule.create",
        A_WRITERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.post(
            f"/enterprises/{w.ids['A']}/rules",
            json={"name": "新规则", "product_id": w.ids["pA"], "condition": RULE},
        ),
    ),
    (
        "rule.disable",
        A_WRITERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.post(f"/enterprises/{w.ids['A']}/rules/{w.ids['rA']}/disable"),
    ),
    (
        "rule.dry_run",
        A_USERS,
        ENT_ONLY_HIDDEN,
        lambda w, c: c.post(f"/rules/{w.ids['rA']}/dry-run", json={}),
    ),
    (
        "rule_template.create",
        OPS,
        {"reg_an"},
        lambda w, c: c.post(
            f"/platforms/{w.ids['I']}/rule-templates",
            json={"name": f"模板{next(_seq)}", "condition": RULE},
        ),
    ),
    # API keys: everyone signed in manages their own
    ("api_key.create", SIGNED_IN, set(), lambda w, c: c.post("/api-keys", json={"name": "k"})),
]


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize(("case", "allowed", "hidden", "action"), CASES, ids=[c[0] for c in CASES])
def test_matrix(
    world: World, who: str, case: str, allowed: set[str], hidden: set[str], action: Action
) -> None:
    response = action(world, world.as_(who))
    status = response.status_code
    if who in ("anon", "revoked"):
        assert status == 401, (case, who, status, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    elif who in allowed:
        assert 200 <= status < 300, (case, who, status, response.text)
    elif who in hidden:
        # another tenant's object: indistinguishable from one that does not exist
        assert status in (404, 422), (case, who, status, response.text)
        if status == 422:
            assert response.json()["errors"][0]["rule"] == "exists"
    else:
        assert status in (403, 404), (case, who, status, response.text)


def test_zero_cross_tenant_reads(world: World) -> None:
    """B's admin gets 404 for every A object, A's users 404 for B's enterprise data."""
    b = world.as_("b_admin")
    for path in (
        f"/products/{world.ids['pA']}",
        f"/devices/{world.ids['dA']}",
        f"/grants/{world.ids['gA']}",
        f"/enterprises/{world.ids['A']}",
        f"/users/{world.ids['uA']}",
    ):
        assert b.get(path).status_code == 404, path
    a = world.as_("a_admin")
    assert a.get(f"/enterprises/{world.ids['Bx']}").status_code == 404
    assert a.get("/products", params={"enterprise_id": world.ids["Bx"]}).json()["total"] == 0


def test_revoked_key_is_refused_at_once(world: World) -> None:
    admin = world.as_("a_admin")
    key = _ok(admin.post("/api-keys", json={"name": "short-lived"}))
    fresh = world.server.client(key["token"])
    assert fresh.get("/me").status_code == 200
    assert admin.delete(f"/api-keys/{key['id']}").status_code == 204
    assert fresh.get("/me").status_code == 401
    assert world.as_("b_admin").delete(f"/api-keys/{key['id']}").status_code == 404
    listed = [k["id"] for k in admin.get("/api-keys").json()["items"]]
    assert key["id"] in listed and "token" not in admin.get("/api-keys").json()["items"][0]
