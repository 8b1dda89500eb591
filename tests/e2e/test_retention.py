"""Retention per enterprise: telemetry older than the enterprise's retention goes away."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import Server, _start
from tests.e2e.test_alink_telemetry import MODEL, wait_for
from tests.helpers.codes import credit_code

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def fast_retention(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _start(tmp_path_factory.mktemp("retention"), retention_interval_s=0.2)


def test_each_enterprise_keeps_its_own_retention(fast_retention: Server) -> None:
    server = fast_retention
    op = server.client(server.operator_key)
    now = int(time.time() * 1000)
    made = {}
    for n, days in ((1, 1), (2, None)):
        ent = op.post(
            "/enterprises",
            json={
                "name": f"企业{n}",
                "credit_code": credit_code(f"91330200MA2B0004{n}"),
                "industry_code": "C34",
                "region_code": "330200",
                "home_platform_id": server.base_id,
            },
        ).json()
        op.post(
            "/users",
            json={
                "username": f"ret{n}",
                "password": "retention-pw",
                "role": "admin",
                "enterprise_id": ent["id"],
            },
        )
        admin = server.client(
            server.client()
            .post("/auth/login", json={"username": f"ret{n}", "password": "retention-pw"})
            .json()["token"]
        )
        if days:
            assert (
                admin.patch(f"/enterprises/{ent['id']}", json={"retention_days": days}).json()[
                    "retention_days"
                ]
                == days
            )
        product = admin.post(
            "/products", json={"enterprise_id": ent["id"], "name": "机", "thing_model": MODEL}
        ).json()
        dev = admin.post(
            "/devices", json={"product_id": product["id"], "device_name": f"RET-{n}"}
        ).json()
        body = [
            {
                "product_key": product["product_key"],
                "device_name": dev["device_name"],
                "ts": now - age,
                "properties": {"count": age // 1000},
            }
            for age in (3 * DAY_MS, 2 * DAY_MS, 60_000)
        ]
        assert admin.post("/ingest/bulk", json=body).json()["accepted"] == 3
        made[n] = (admin, dev["id"])

    def points(n: int) -> list[int]:
        admin, device_id = made[n]
        got = admin.get(
            f"/devices/{device_id}/telemetry",
            params={"start_ms": now - 10 * DAY_MS, "end_ms": now + 1},
        ).json()
        return [p["ts"] for p in got["points"]]

    kept = [now - 3 * DAY_MS, now - 2 * DAY_MS, now - 60_000]
    wait_for(lambda: points(2) == kept)  # stored (the store flushes within 250 ms)
    wait_for(lambda: points(1) == [now - 60_000])  # one day kept
    time.sleep(1.0)  # five more retention runs (every 0.2 s) must leave the default's data alone
    assert points(2) == kept  # default: a year
