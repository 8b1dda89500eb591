"""The live WebSocket feed end to end: a real server, real MQTT devices, real WebSocket
clients. Tenants see only their own devices, strangers are refused, state changes arrive,
and a client that never reads is sampled and then dropped instead of growing the server."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from qiantang.api.routers import live as live_router
from qiantang.services.live_feed import LiveFeed
from tests.conftest import Server, _start
from tests.helpers.mqtt import Device
from tests.helpers.tenants import enterprise_with_user

MODEL = {
    "properties": [
        {
            "identifier": "temperature",
            "name": "温度",
            "access_mode": "r",
            "data_type": {"type": "float", "specs": {"min": -40, "max": 200}},
        },
        {
            "identifier": "note",
            "name": "备注",
            "access_mode": "r",
            "data_type": {"type": "text", "specs": {"length": 2048}},
        },
    ],
    "events": [],
    "services": [],
}


class Tenant:
    """An enterprise with a signed-in engineer, a product and devices."""

    def __init__(self, server: Server, name: str, body17: str, username: str) -> None:
        self.api, self.enterprise = enterprise_with_user(server, name, body17, username, "admin")
        self.token = self.api.headers["Authorization"].removeprefix("Bearer ")
        self.product = self.api.post(
            "/products",
            json={"enterprise_id": self.enterprise["id"], "name": "空压机", "thing_model": MODEL},
        ).json()
        self.devices = [
            self.api.post(
                "/devices", json={"product_id": self.product["id"], "device_name": f"AC-{i}"}
            ).json()
            for i in range(2)
        ]
        self.mqtt_port = server.mqtt_port

    def device(self, index: int = 0) -> Device:
        d = self.devices[index]
        return Device(
            self.mqtt_port, self.product["product_key"], d["device_name"], d["device_secret"]
        )

    def bulk(self, index: int, rows: list[dict[str, Any]]) -> httpx.Response:
        name = self.devices[index]["device_name"]
        body = [
            {"product_key": self.product["product_key"], "device_name": name, **row} for row in rows
        ]
        return self.api.post("/ingest/bulk", content=json.dumps(body))


def online(dev: Device) -> None:
    """Connect and listen for post replies."""
    assert dev.connect()
    assert dev.subscribe(f"{dev.sys}/thing/event/property/post_reply") == [1]


def ws_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/api/v1/live"


def open_live(server: Server, token: str | None, **message: Any) -> ClientConnection:
    """A WebSocket client; with `message`, it sends one (the token goes in it)."""
    ws = connect(ws_url(server), compression=None, open_timeout=10)
    if message or token:
        ws.send(json.dumps({**({"token": token} if token else {}), **message}))
    return ws


def subscribe(server: Server, token: str, scope: str, scope_id: int) -> ClientConnection:
    ws = open_live(server, token, scope=scope, id=scope_id)
    ack = json.loads(ws.recv(timeout=10))
    assert ack == {
        "type": "subscribed",
        "scope": scope,
        "id": scope_id,
        "streams": ["alarm", "event", "state", "telemetry"],
    }
    return ws


def frames_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> list[dict[str, Any]]:
    """Frames received up to and including the first one `done` accepts."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        seen.append(frame)
        if done(frame):
            return seen


def closed_with(ws: ClientConnection, timeout: float = 10) -> ConnectionClosed:
    """The close the server ends `ws` with (frames before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            return closed


def feed_of(server: Server) -> LiveFeed:
    feed = server.runtime.live().live_feed
    assert feed is not None
    return feed


@pytest.fixture(scope="module")
def tenants(server: Server) -> tuple[Tenant, Tenant]:
    a = Tenant(server, "甬江机械", "91330200MA2C00011", "live-a")
    b = Tenant(server, "瓯江电器", "91330300MA2C00022", "live-b")
    grant = {  # the base platform may read A's temperatures; B grants nothing
        "enterprise_id": a.enterprise["id"],
        "platform_id": server.base_id,
        "products": [a.product["product_key"]],
        "properties": ["temperature"],
    }
    assert a.api.post("/grants", json=grant).status_code == 201
    return a, b


def test_tenant_sees_its_devices_and_nothing_of_another(
    server: Server, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    watch_a = subscribe(server, a.token, "enterprise", a.enterprise["id"])
    watch_b = subscribe(server, b.token, "enterprise", b.enterprise["id"])
    dev_a, dev_b = a.device(0), b.device(0)
    try:
        online(dev_a)
        online(dev_b)
        # B posts first: were it routed to A's client, it would arrive before A's frame
        assert dev_b.post({"temperature": 66.5}, "b1")["code"] == 200
        got_b = frames_until(watch_b, lambda f: f["type"] == "telemetry")
        assert got_b[-1]["device_id"] == b.devices[0]["id"]
        assert dev_a.post({"temperature": 21.25}, "a1")["code"] == 200
        got_a = frames_until(
            watch_a, lambda f: f["type"] == "telemetry" and f["values"] == {"temperature": 21.25}
        )
        assert got_a[-1]["device_id"] == a.devices[0]["id"]
        assert isinstance(got_a[-1]["ts"], int)
        ours = {d["id"] for d in a.devices}
        assert all(f["device_id"] in ours for f in got_a if "device_id" in f)
    finally:
        dev_a.close()
        dev_b.close()
        watch_a.close()
        watch_b.close()


def test_a_platform_operator_sees_only_what_a_grant_names(
    server: Server, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    watch = subscribe(server, server.operator_key, "platform", server.base_id)
    try:
        assert b.bulk(0, [{"properties": {"temperature": 55.5, "note": "b"}}]).status_code == 200
        assert (
            a.bulk(1, [{"properties": {"temperature": 44.5, "note": "secret"}}]).status_code == 200
        )
        frames = frames_until(watch, lambda f: f["type"] == "telemetry")
        assert frames[-1]["device_id"] == a.devices[1]["id"]
        assert frames[-1]["values"] == {"temperature": 44.5}  # "note" is not granted
        assert all(f.get("device_id") != b.devices[0]["id"] for f in frames)
    finally:
        watch.close()
    # the operator may not watch the enterprise that granted nothing
    refused = closed_with(
        open_live(server, server.operator_key, scope="enterprise", id=b.enterprise["id"])
    )
    assert refused.rcvd is not None and refused.rcvd.code == 4404


def test_alarms_reach_members_only(server: Server, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    device_id = a.devices[0]["id"]
    member = subscribe(server, a.token, "device", device_id)
    operator = subscribe(server, server.operator_key, "platform", server.base_id)
    feed = feed_of(server)
    try:
        # what the rule engine does on a raise (called here from the test's thread)
        feed.alarm(a.enterprise["id"], device_id, {"alarm_id": 5, "status": "active"})
        frame = frames_until(member, lambda f: f["type"] == "alarm")[-1]
        assert frame == {
            "alarm_id": 5,
            "status": "active",
            "type": "alarm",
            "enterprise_id": a.enterprise["id"],
            "device_id": device_id,
        }
        # the operator holds a grant of telemetry only: a point arrives, the alarm did not
        assert a.bulk(0, [{"properties": {"temperature": 12.5}}]).status_code == 200
        seen = frames_until(operator, lambda f: f["type"] == "telemetry")
        assert [f for f in seen if f["type"] == "alarm"] == []
    finally:
        member.close()
        operator.close()


def test_a_rule_raising_an_alarm_reaches_the_client(
    server: Server, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    device_id = a.devices[0]["id"]
    rule = a.api.post(
        f"/enterprises/{a.enterprise['id']}/rules",
        json={
            "name": "过热",
            "device_id": device_id,
            "condition": {"kind": "expression", "expression": "temperature > 150.0"},
            "alarm": {"severity": "critical", "message": {"zh-CN": "过热 {temperature}"}},
        },
    )
    assert rule.status_code == 201, rule.text
    ws = subscribe(server, a.token, "device", device_id)
    try:
        assert a.bulk(0, [{"properties": {"temperature": 180.5}}]).status_code == 200
        alarm = frames_until(ws, lambda f: f["type"] == "alarm")[-1]
        assert alarm["rule_id"] == rule.json()["id"] and alarm["device_id"] == device_id
        assert (alarm["status"], alarm["severity"]) == ("active", "critical")
        assert alarm["message"] == "过热 180.5"
    finally:
        ws.close()


def test_state_changes_reach_the_client(server: Server, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    target = a.devices[1]["id"]
    ws = subscribe(server, a.token, "device", target)
    dev = a.device(1)
    try:
        assert dev.connect()
        online = frames_until(ws, lambda f: f["type"] == "state")[-1]
        assert online["device_id"] == target and online["online"] is True
        dev.close()
        offline = frames_until(ws, lambda f: f["type"] == "state")[-1]
        assert offline["device_id"] == target and offline["online"] is False
        assert offline["ts"] >= online["ts"]
    finally:
        ws.close()


def test_unauthenticated_clients_are_refused(
    server: Server, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    device_id = a.devices[0]["id"]
    anonymous = open_live(server, None, scope="device", id=device_id)
    refused = closed_with(anonymous)
    assert refused.rcvd is not None and refused.rcvd.code == 4401
    assert "no token" in refused.rcvd.reason
    forged = connect(
        ws_url(server),
        additional_headers={"Authorization": "Bearer qk_nope_" + secrets.token_hex(8)},
        compression=None,
    )
    refused = closed_with(forged)
    assert refused.rcvd is not None and refused.rcvd.code == 4401
    assert refused.rcvd.reason.startswith("authentication failed")


def test_a_revoked_key_ends_the_stream(
    server: Server, tenants: tuple[Tenant, Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = tenants
    monkeypatch.setattr(live_router, "RECHECK_S", 0.2)  # the server runs in this process
    created = a.api.post("/api-keys", json={"name": "wall display"}).json()
    ws = subscribe(server, created["token"], "device", a.devices[0]["id"])
    assert a.api.delete(f"/api-keys/{created['id']}").status_code == 204
    closed = closed_with(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 4401
    assert "revoked" in closed.rcvd.reason


def test_another_tenants_scope_is_not_found(server: Server, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    foreign = closed_with(open_live(server, a.token, scope="device", id=b.devices[0]["id"]))
    missing = closed_with(open_live(server, a.token, scope="device", id=999_999))
    assert foreign.rcvd is not None and missing.rcvd is not None
    assert (foreign.rcvd.code, missing.rcvd.code) == (4404, 4404)
    assert foreign.rcvd.reason == f"device {b.devices[0]['id']} not found"
    other = closed_with(open_live(server, a.token, scope="enterprise", id=b.enterprise["id"]))
    assert other.rcvd is not None and other.rcvd.code == 4404
    platform = closed_with(open_live(server, a.token, scope="platform", id=server.base_id))
    assert platform.rcvd is not None and platform.rcvd.code == 4404


def test_bad_messages_name_the_field_and_keep_the_connection(
    server: Server, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _ = tenants
    ws = open_live(server, a.token, scope="machine", id=0)
    error = json.loads(ws.recv(timeout=10))
    assert error["type"] == "error"
    assert [(e["field"], e["rule"]) for e in error["errors"]] == [("scope", "enum"), ("id", "type")]
    ws.send("not json")
    assert json.loads(ws.recv(timeout=10))["errors"][0]["field"] == "message"
    ws.send(json.dumps({"type": "ping"}))
    assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
    ws.send(json.dumps({"scope": "product", "id": a.product["id"], "streams": ["telemetry"]}))
    assert json.loads(ws.recv(timeout=10))["streams"] == ["telemetry"]
    ws.close()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose live clients queue 16 frames and may lag for 1 s."""
    yield from _start(tmp_path_factory.mktemp("live"), live_queue_frames=16, live_stall_s=1.0)


def _reader_that_never_reads(server: Server, token: str, device_id: int) -> socket.socket:
    """A raw WebSocket client: handshake, one subscribe frame, then it never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = server.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    sock.sendall(
        (
            f"GET /api/v1/live HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101")
    payload = json.dumps({"token": token, "scope": "device", "id": device_id}).encode()
    assert len(payload) < 126
    mask = secrets.token_bytes(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


def test_a_client_that_never_reads_is_sampled_then_dropped(small_server: Server) -> None:
    a = Tenant(small_server, "曹娥江纺织", "91330600MA2C00033", "live-slow")
    device_id = a.devices[0]["id"]
    sock = _reader_that_never_reads(small_server, a.token, device_id)
    feed = feed_of(small_server)
    filler = secrets.token_hex(1000)  # 2,000 characters that do not compress
    start = int(time.time() * 1000)

    def lagging() -> bool:
        stats = feed.client_stats()
        return bool(stats) and stats[0].sampling

    sent = 0
    while not lagging():
        rows = [{"ts": start + sent + i, "properties": {"note": filler}} for i in range(500)]
        assert a.bulk(0, rows).json()["accepted"] == 500
        sent += 500
        assert sent < 20_000, "the client was never sampled"
    (stats,) = feed.client_stats()
    assert stats.pending <= 16 and stats.max_pending <= 16
    # while sampled, more posts only replace the latest value of each property
    more = [
        {"ts": start + sent + i, "properties": {"note": filler, "temperature": i}}
        for i in range(200)
    ]
    assert a.bulk(0, more).json()["accepted"] == 400
    (stats,) = feed.client_stats()
    assert stats.pending <= 16 and stats.sampled >= 199
    dropped_before = feed.stats().clients_dropped
    deadline = time.monotonic() + 10
    while feed.stats().clients_dropped == dropped_before:  # past live_stall_s it is dropped
        assert time.monotonic() < deadline, "the slow client was never dropped"
        now = int(time.time() * 1000)
        a.bulk(0, [{"ts": now + i, "properties": {"note": filler}} for i in range(50)])
    assert feed.client_stats() == []
    sock.close()


def test_a_client_that_falls_behind_is_told_and_gets_the_latest_values(
    small_server: Server,
) -> None:
    a = Tenant(small_server, "钱塘精工", "91330100MA2C00044", "live-lag")
    ws = connect(ws_url(small_server), compression=None, max_queue=1)
    ws.send(json.dumps({"token": a.token, "scope": "device", "id": a.devices[0]["id"]}))
    assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
    feed = feed_of(small_server)
    filler = secrets.token_hex(1000)
    start = int(time.time() * 1000)
    sent = 0
    while not feed.client_stats()[0].sampling:  # the client reads nothing meanwhile
        rows = [{"ts": start + sent + i, "properties": {"note": filler}} for i in range(500)]
        assert a.bulk(0, rows).json()["accepted"] == 500
        sent += 500
        assert sent < 20_000, "the client was never sampled"
    last = {"ts": start + sent, "properties": {"temperature": 99.5, "note": "done"}}
    assert a.bulk(0, [last]).json()["accepted"] == 2
    frames = frames_until(
        ws, lambda f: f["type"] == "telemetry" and f["values"].get("temperature") == 99.5
    )
    lags = [f for f in frames if f["type"] == "lag"]
    assert lags and sum(f["sampled"] for f in lags) > 0
    assert all(f["dropped"] == 0 for f in lags)
    assert frames[-1]["values"] == {"temperature": 99.5, "note": "done"}
    assert len(frames) < sent  # the backlog reached the client sampled, not frame by frame
    ws.close()
