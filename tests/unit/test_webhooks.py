"""Webhook signing, the bounded per-rule log and the bounded delivery queue."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable

from qiantang.services.webhooks import (
    Delivery,
    DeliveryLog,
    WebhookJob,
    WebhookPolicy,
    WebhookSender,
    sign,
    verify_signature,
)
from tests.conftest import free_port

SECRET = "a-long-shared-secret"


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"rule":{"id":1}}'
    expected = hmac.new(SECRET.encode(), b"1767225600123." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1767225600123", body) == f"sha256={expected}"


def test_verify_checks_secret_body_and_freshness() -> None:
    body, stamp = b"{}", "1767225600123"
    good = sign(SECRET, stamp, body)
    now = 1767225600123 + 1000
    assert verify_signature(SECRET, stamp, body, good, now_ms=now)
    assert not verify_signature("another-long-secret", stamp, body, good, now_ms=now)
    assert not verify_signature(SECRET, stamp, b"{ }", good, now_ms=now)
    assert not verify_signature(SECRET, "1767225600124", body, good, now_ms=now)
    assert not verify_signature(SECRET, stamp, body, good, now_ms=now + 600_000)  # a replay
    assert not verify_signature(SECRET, "-1", body, good, now_ms=now)


def test_log_is_bounded_per_rule_and_in_rules() -> None:
    deliveries = DeliveryLog(per_rule=3, rules=2)
    for rule in (1, 2):
        for attempt in range(1, 6):
            deliveries.record(Delivery(rule, "webhook", "u", "d", attempt, 0, "retrying"))
    assert [d.attempt for d in deliveries.of(1)] == [5, 4, 3]
    deliveries.record(Delivery(3, "webhook", "u", "d", 1, 0, "delivered"))
    assert deliveries.of(1) == [] and len(deliveries.of(2)) == 3 and len(deliveries.of(3)) == 1
    deliveries.forget(2)
    assert deliveries.of(2) == []


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_dead_endpoint_cannot_grow_the_queue() -> None:
    deliveries = DeliveryLog()
    policy = WebhookPolicy(attempts=3, backoff_s=30.0, workers=1, queue=2)
    sender = WebhookSender(deliveries, policy)
    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: connection refused
    try:
        accepted = [
            sender.submit(WebhookJob(9, url, SECRET, b"{}", f"d{i}", timeout_s=2)) for i in range(5)
        ]
        assert accepted == [True, True, False, False, False]
        assert sender.dropped == 3 and sender.in_flight == 2
        await until(lambda: sum(d.outcome == "retrying" for d in deliveries.of(9)) == 2)
        retrying = [d for d in deliveries.of(9) if d.outcome == "retrying"]
        assert all("ConnectError" in (d.error or "") and d.attempt == 1 for d in retrying)
        assert sum(d.outcome == "dropped" for d in deliveries.of(9)) == 3
        assert sender.in_flight == 2  # both wait for their retry, still counted
    finally:
        await sender.close()


async def test_gives_up_after_the_configured_attempts() -> None:
    deliveries = DeliveryLog()
    sender = WebhookSender(deliveries, WebhookPolicy(attempts=3, backoff_s=0.01, workers=2))
    url = f"http://127.0.0.1:{free_port()}/hook"
    try:
        assert sender.submit(WebhookJob(4, url, SECRET, b"{}", "d1", timeout_s=2))
        await until(lambda: any(d.outcome == "failed" for d in deliveries.of(4)))
        assert [(d.attempt, d.outcome) for d in reversed(deliveries.of(4))] == [
            (1, "retrying"),
            (2, "retrying"),
            (3, "failed"),
        ]
        assert "gave up after 3 attempts" in (deliveries.of(4)[0].error or "")
        assert sender.in_flight == 0
    finally:
        await sender.close()
