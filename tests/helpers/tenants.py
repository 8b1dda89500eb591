"""Setting up a tenant over HTTP: an enterprise at the base platform and a signed-in user."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Server
from tests.helpers.codes import credit_code


def enterprise_with_user(
    server: Server, name: str, body17: str, username: str, role: str = "engineer"
) -> tuple[httpx.Client, dict[str, Any]]:
    """Onboard `name` (credit code `body17` + check character) at the base platform and
    return a client signed in as a new `role` of it, with the enterprise record."""
    op = server.client(server.operator_key)
    ent = op.post(
        "/enterprises",
        json={
            "name": name,
            "credit_code": credit_code(body17),
            "industry_code": "C34",
            "region_code": "330200",
            "home_platform_id": server.base_id,
        },
    ).json()
    password = f"{username}-pw"
    user = {"username": username, "password": password, "role": role, "enterprise_id": ent["id"]}
    assert op.post("/users", json=user).status_code == 201
    login = server.client().post("/auth/login", json={"username": username, "password": password})
    return server.client(login.json()["token"]), ent
