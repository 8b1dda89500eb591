"""Rule actions against a running server: signed webhooks to a real local HTTP server (with
retries), property sets and service calls reaching a real MQTT device, derived points that
are stored, queryable and on the bus. `RuleActions.run` is driven with `Firing`s on the
server's own event loop, with the server's command service and ingest core."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from qiantang.domain.rule_actions import parse_actions
from qiantang.registry.tables import Rule as RuleRow
from qiantang.services.rule_actions import Firing, RuleActions, stored_actions
from qiantang.services.webhooks import WebhookPolicy, WebhookSecrets
from tests.conftest import Server, _start, free_port
from tests.e2e.test_alink_telemetry import wait_for
from tests.e2e.test_downlink import Responder
from tests.helpers.tenants import enterprise_with_user

T = TypeVar("T")
SECRET = "shared-webhook-secret-0001"
F = {"type": "float", "specs": {"min": 0, "max": 100_000}}
MODEL = {
    "properties": [
        {"identifier": "setpoint", "name": "设定值", "access_mode": "rw", "data_type": F},
        {"identifier": "temperature", "name": "温度", "access_mode": "r", "data_type": F},
        {"identifier": "voltage", "name": "电压", "access_mode": "r", "data_type": F},
        {"identifier": "current", "name": "电流", "access_mode": "r", "data_type": F},
        {"identifier": "pf", "name": "功率因数", "access_mode": "r", "data_type": F},
        {"identifier": "power_kw", "name": "有功功率", "access_mode": "r", "data_type": F},
    ],
    "events": [],
    "services": [
        {
            "identifier": "start",
            "name": "启动",
            "call_type": "async",
            "input_data": [
                {
                    "identifier": "speed",
                    "name": "转速",
                    "data_type": {"type": "int", "specs": {"min": 0, "max": 3000}},
                }
            ],
            "output_data": [
                {
                    "identifier": "ok",
                    "name": "成功",
                    "data_type": {"type": "bool", "specs": {"false": "否", "true": "是"}},
                }
            ],
        }
    ],
}


class Receiver(BaseHTTPRequestHandler):
    """Answers per path: /ok 200, /flaky 500 twice then 200, /down always 500."""

    calls: list[tuple[str, dict[str, str], bytes]]
    flaky_left: int

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls.append((self.path, dict(self.headers.items()), body))
        status = 200
        if self.path == "/down":
            status = 500
        elif self.path == "/flaky" and type(self).flaky_left > 0:
            type(self).flaky_left -= 1
            status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Handler", (Receiver,), {"calls": [], "flaky_left": 2})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose webhooks retry quickly (3 attempts, 50 ms first back-off)."""
    yield from _start(
        tmp_path_factory.mktemp("actions"), webhook_attempts=3, webhook_backoff_s=0.05
    )


class Rig:
    """The server's loop and a `RuleActions` on it, with a tenant, a device and a stranger."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.telemetry = server.runtime.live()
        self.loop = self.telemetry.background[0].get_loop()
        self.eng, self.ent = enterprise_with_user(
            server, "动作测试厂", "91330200MA2B00071", "ra-eng"
        )
        product = self.eng.post(
            "/products",
            json={"enterprise_id": self.ent["id"], "name": "电机", "thing_model": MODEL},
        ).json()
        self.product = product
        self.dev = self.eng.post(
            "/devices", json={"product_id": product["id"], "device_name": "RA-1"}
        ).json()
        self.device = Responder(
            server.mqtt_port, product["product_key"], "RA-1", self.dev["device_secret"]
        )
        self.device.start()
        other, other_ent = enterprise_with_user(server, "别家厂", "91330200MA2B00072", "ra-other")
        other_product = other.post(
            "/products",
            json={"enterprise_id": other_ent["id"], "name": "别家", "thing_model": MODEL},
        ).json()
        made = other.post(
            "/devices", json={"product_id": other_product["id"], "device_name": "XX-1"}
        )
        assert made.status_code == 201, made.text
        self.stranger = made.json()
        rt = server.runtime
        secrets = WebhookSecrets(rt.device_secrets)
        self.secrets = secrets
        policy = WebhookPolicy(attempts=3, backoff_s=0.05)

        async def make() -> RuleActions:
            return RuleActions(
                self.telemetry.commands, self.telemetry.core, rt.sessions, secrets, policy
            )

        self.actions = self.call(make())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def firing(self, rule_id: int, values: dict[str, Any], **kw: Any) -> Firing:
        base: dict[str, Any] = {
            "rule_id": rule_id,
            "rule_name": f"rule {rule_id}",
            "enterprise_id": self.ent["id"],
            "device_id": self.dev["id"],
            "product_id": self.product["id"],
            "ts": int(time.time() * 1000),
            "transition": "fire",
            "values": values,
        }
        return Firing(**(base | kw))

    def run(self, raw: list[dict[str, Any]], firing: Firing) -> None:
        """Parse as the API would, store (sealing secrets), read back, run."""
        specs = parse_actions(stored_actions(parse_actions(raw), self.secrets), stored=True)
        self.call(self.actions.run(specs, firing))

    def outcomes(self, rule_id: int) -> list[tuple[str, int, str]]:
        return [
            (d.action, d.attempt, d.outcome) for d in reversed(self.actions.deliveries(rule_id))
        ]


@pytest.fixture(scope="module")
def rig(server: Server) -> Iterator[Rig]:
    rig = Rig(server)
    yield rig
    rig.device.close()
    rig.call(rig.actions.close())


def test_webhook_reaches_the_server_signed(rig: Rig, receiver: tuple[str, type[Receiver]]) -> None:
    url, handler = receiver
    firing = rig.firing(
        101, {"temperature": 91.5}, transition="raise", alarm_id=7, severity="major", message="过热"
    )
    rig.run([{"type": "webhook", "url": f"{url}/ok", "secret": SECRET}], firing)
    wait_for(lambda: rig.outcomes(101) == [("webhook", 1, "delivered")])
    _, headers, body = next(c for c in handler.calls if c[0] == "/ok")
    stamp = headers["X-Qiantang-Timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Qiantang-Signature"] == f"sha256={expected}"
    assert abs(int(stamp) - time.time() * 1000) < 60_000
    sent = json.loads(body)
    assert sent["rule"] == {"id": 101, "name": "rule 101"} and sent["transition"] == "raise"
    assert sent["device"]["id"] == rig.dev["id"] and sent["device"]["device_name"] == "RA-1"
    assert sent["values"] == {"temperature": 91.5} and sent["ts"] == firing.ts
    assert sent["alarm"] == {"id": 7, "severity": "major", "message": "过热"}
    assert rig.actions.deliveries(101)[0].status_code == 200


def test_a_failing_endpoint_is_retried_then_delivered(
    rig: Rig, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    rig.run([{"type": "webhook", "url": f"{url}/flaky", "secret": SECRET}], rig.firing(102, {}))
    wait_for(lambda: rig.outcomes(102)[-1:] == [("webhook", 3, "delivered")])
    log = list(reversed(rig.actions.deliveries(102)))
    assert [(d.outcome, d.status_code) for d in log] == [
        ("retrying", 500),
        ("retrying", 500),
        ("delivered", 200),
    ]
    assert len({d.delivery_id for d in log}) == 1
    calls = [h for p, h, _ in handler.calls if p == "/flaky"]
    assert [h["X-Qiantang-Attempt"] for h in calls] == ["1", "2", "3"]
    assert len({h["X-Qiantang-Delivery"] for h in calls}) == 1


def test_an_endpoint_that_always_fails_is_given_up_and_reported(
    rig: Rig, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    rig.run(
        [
            {"type": "webhook", "url": f"{url}/down", "secret": SECRET},
            {"type": "webhook", "url": dead, "secret": SECRET},
        ],
        rig.firing(103, {}),
    )
    wait_for(lambda: sum(d.outcome == "failed" for d in rig.actions.deliveries(103)) == 2)
    by_url = {
        target: [
            (d.attempt, d.outcome)
            for d in reversed(rig.actions.deliveries(103))
            if d.target == target
        ]
        for target in (f"{url}/down", dead)
    }
    assert by_url[f"{url}/down"] == [(1, "retrying"), (2, "retrying"), (3, "failed")]
    assert by_url[dead] == [(1, "retrying"), (2, "retrying"), (3, "failed")]
    final = {d.target: d for d in rig.actions.deliveries(103) if d.outcome == "failed"}
    assert final[f"{url}/down"].status_code == 500
    assert "ConnectError" in (final[dead].error or "") and "gave up after 3" in (
        final[dead].error or ""
    )
    assert sum(p == "/down" for p, _, _ in handler.calls) == 3


def test_set_property_reaches_the_device(rig: Rig) -> None:
    rig.device.mode = "ok"
    before = len(rig.device.received)
    action = {"type": "set_property", "properties": {"setpoint": {"expr": "temperature / 2.0"}}}
    rig.run([action], rig.firing(104, {"temperature": 84.0}))
    wait_for(lambda: rig.outcomes(104) == [("set_property", 1, "replied")])
    topic, body = rig.device.received[before]
    assert topic.endswith("/thing/service/property/set") and body["params"] == {"setpoint": 42.0}
    command_id = rig.actions.deliveries(104)[0].command_id
    assert body["id"] == str(command_id)
    command = rig.eng.get(f"/commands/{command_id}").json()
    assert command["status"] == "replied" and command["params"] == {"setpoint": 42.0}


def test_call_service_is_validated_before_sending(rig: Rig) -> None:
    rig.device.mode = "ok"
    before = len(rig.device.received)
    action = {"type": "call_service", "service": "start", "input": {"speed": {"expr": "rpm * 10"}}}
    rig.run([action], rig.firing(105, {"rpm": 900}))  # 9000 > max 3000
    wait_for(lambda: rig.outcomes(105) == [("call_service", 1, "failed")])
    assert "params.speed" in (rig.actions.deliveries(105)[0].error or "")
    rig.run([action], rig.firing(105, {"rpm": 150}, ts=int(time.time() * 1000) + 1))
    wait_for(lambda: rig.outcomes(105)[-1:] == [("call_service", 1, "replied")])
    topic, body = rig.device.received[before]
    assert topic.endswith("/thing/service/start") and body["params"] == {"speed": 1500}
    assert len(rig.device.received) == before + 1


def test_commands_reach_only_the_rules_enterprise(rig: Rig) -> None:
    action = {
        "type": "set_property",
        "properties": {"setpoint": 1.0},
        "device_id": rig.stranger["id"],
    }
    rig.run([action], rig.firing(106, {}))
    wait_for(lambda: rig.outcomes(106) == [("set_property", 1, "failed")])
    assert "not found" in (rig.actions.deliveries(106)[0].error or "")


def test_an_expression_that_fails_is_recorded(rig: Rig) -> None:
    action = {"type": "derive", "property": "power_kw", "expr": "voltage * current"}
    rig.run([action], rig.firing(107, {"voltage": 220.0}))  # `current` missing
    log = rig.actions.deliveries(107)
    assert [(d.action, d.outcome) for d in log] == [("derive", "failed")]
    assert "current" in (log[0].error or "")


def test_derive_writes_a_queryable_point_on_the_bus(rig: Rig) -> None:
    async def subscribe() -> Any:
        return rig.telemetry.bus.subscribe("test-derive", capacity=64)

    subscription = rig.call(subscribe())
    action = {"type": "derive", "property": "power_kw", "expr": "voltage * current * pf / 1000.0"}
    firing = rig.firing(108, {"voltage": 380.0, "current": 10.0, "pf": 0.9})
    try:
        rig.run([action], firing)
        assert rig.outcomes(108) == [("derive", 1, "stored")]
        batches = []
        while (batch := subscription.get_nowait()) is not None:
            batches.append(batch)
        on_bus = [p for b in batches for p in b.points if p.property == "power_kw"]
        assert [(p.device_id, p.ts, round(float(p.value), 6)) for p in on_bus] == [
            (rig.dev["id"], firing.ts, 3.42)
        ]
    finally:
        rig.loop.call_soon_threadsafe(subscription.close)
    points = wait_for(
        lambda: rig.eng.get(
            f"/devices/{rig.dev['id']}/telemetry",
            params={"property": "power_kw", "start_ms": firing.ts - 1, "end_ms": firing.ts + 1},
        ).json()["points"]
    )
    assert [(p["ts"], round(p["value"], 6)) for p in points] == [(firing.ts, 3.42)]


def test_the_same_firing_runs_once_and_derive_cannot_loop(rig: Rig) -> None:
    action = {"type": "derive", "property": "power_kw", "expr": "voltage * 0.001"}
    firing = rig.firing(109, {"voltage": 1000.0})
    rig.run([action], firing)
    skipped = rig.actions.repeats_skipped
    rig.run([action], firing)  # what a derived point re-triggering the rule would look like
    assert rig.actions.repeats_skipped == skipped + 1
    assert rig.outcomes(109) == [("derive", 1, "stored")]


def test_derive_refused_by_the_thing_model(rig: Rig) -> None:
    first = rig.firing(110, {})
    rig.run([{"type": "derive", "property": "energy", "expr": "1.0"}], first)
    rig.run(
        [{"type": "derive", "property": "pf", "expr": "-1.0"}], rig.firing(110, {}, ts=first.ts + 1)
    )
    log = list(reversed(rig.actions.deliveries(110)))
    assert [(d.target, d.outcome) for d in log] == [("energy", "failed"), ("pf", "failed")]
    assert "unknown_property" in (log[0].error or "") and "min" in (log[1].error or "")


def test_actions_follow_the_transition(rig: Rig, receiver: tuple[str, type[Receiver]]) -> None:
    url, _ = receiver
    actions = [
        {"type": "webhook", "url": f"{url}/ok", "secret": SECRET, "on": ["clear"]},
        {"type": "derive", "property": "power_kw", "expr": "2.0"},
    ]
    rig.run(actions, rig.firing(111, {}, transition="raise"))
    assert rig.outcomes(111) == [("derive", 1, "stored")]
    rig.run(actions, rig.firing(111, {}, transition="clear"))
    wait_for(lambda: rig.outcomes(111)[-1:] == [("webhook", 1, "delivered")])
    assert [a for a, _, _ in rig.outcomes(111)] == ["derive", "webhook"]


def test_a_rule_made_over_http_fires_its_actions(
    rig: Rig, receiver: tuple[str, type[Receiver]]
) -> None:
    """The whole chain: rule API -> MQTT message -> engine -> webhooks (one endpoint down,
    retried by the server's configured policy and reported over the API), downlink, derive."""
    url, handler = receiver
    rig.device.mode = "ok"
    body = {
        "name": "功率超限联动",
        "device_id": rig.dev["id"],
        "condition": {"kind": "expression", "expression": "voltage * current * pf > 1000.0"},
        "alarm": {"severity": "critical", "message": {"zh-CN": "功率过高", "en": "Power high"}},
        "actions": [
            {"type": "webhook", "url": f"{url}/chain", "secret": SECRET},
            {"type": "webhook", "url": f"{url}/down", "secret": SECRET},
            {"type": "set_property", "properties": {"setpoint": {"expr": "current * 2.0"}}},
            {"type": "derive", "property": "power_kw", "expr": "voltage * current * pf / 1000.0"},
        ],
    }
    made = rig.eng.post(f"/enterprises/{rig.ent['id']}/rules", json=body)
    assert made.status_code == 201, made.text
    rule = made.json()
    assert SECRET not in made.text and rule["actions"][0]["has_secret"] is True
    assert SECRET not in rig.eng.get(f"/enterprises/{rig.ent['id']}/rules/{rule['id']}").text
    with rig.server.runtime.sessions() as db:
        kept = db.get(RuleRow, rule["id"])
        assert kept is not None
        assert SECRET not in json.dumps(kept.actions)
        assert kept.actions[0]["sealed_secret"].startswith("v1.")
    before = len(rig.device.received)
    ts = int(time.time() * 1000)
    rig.device.publish(
        f"{rig.device.sys}/thing/event/property/post",
        {
            "id": "chain-1",
            "version": "1.0",
            "method": "thing.event.property.post",
            "params": {
                "voltage": {"value": 400.0, "time": ts},
                "current": {"value": 20.0, "time": ts},
                "pf": {"value": 0.5, "time": ts},
            },
        },
    )
    _, headers, sent = wait_for(lambda: next((c for c in handler.calls if c[0] == "/chain"), None))
    stamp = headers["X-Qiantang-Timestamp"]
    mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + sent, hashlib.sha256).hexdigest()
    assert headers["X-Qiantang-Signature"] == f"sha256={mac}"
    payload = json.loads(sent)
    assert payload["rule"]["id"] == rule["id"] and payload["transition"] == "raise"
    assert payload["alarm"]["severity"] == "critical" and payload["ts"] == ts
    wait_for(lambda: len(rig.device.received) > before)
    topic, downlink = rig.device.received[before]
    assert topic.endswith("/thing/service/property/set") and downlink["params"] == {
        "setpoint": 40.0
    }
    deliveries = f"/enterprises/{rig.ent['id']}/rules/{rule['id']}/deliveries"
    outcomes = wait_for(
        lambda: (
            (got := {(d["action"], d["outcome"]) for d in rig.eng.get(deliveries).json()["items"]})
            >= {("webhook", "delivered"), ("set_property", "replied"), ("derive", "stored")}
            and got
        )
    )
    failed = wait_for(
        lambda: [
            d
            for d in rig.eng.get(deliveries).json()["items"]
            if d["outcome"] == "failed" and d["target"] == f"{url}/down"
        ]
    )
    assert failed[0]["attempt"] == 3 and failed[0]["status_code"] == 500
    assert "gave up after 3 attempts" in failed[0]["error"]
    assert not any(o == "failed" for a, o in outcomes if a != "webhook")
    points = wait_for(
        lambda: rig.eng.get(
            f"/devices/{rig.dev['id']}/telemetry",
            params={"property": "power_kw", "start_ms": ts, "end_ms": ts + 1},
        ).json()["points"]
    )
    assert [(p["ts"], p["value"]) for p in points] == [(ts, 4.0)]
