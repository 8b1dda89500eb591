"""Signed HTTP webhooks: sealing their secrets, signing, sending with retries, the log.

**What is signed.** Each attempt sends the JSON body with these headers::

    X-Qiantang-Timestamp: 1767225600123           (ms since the epoch, when this attempt left)
    X-Qiantang-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
    X-Qiantang-Delivery:  <id, the same for every attempt of one delivery>
    X-Qiantang-Attempt:   <1, 2, ...>

The signed content is the timestamp header's ASCII digits, one ``.`` and the exact body bytes;
a receiver recomputes the HMAC with the shared secret, compares in constant time and refuses
timestamps too far from its clock (replays). `verify_signature` does exactly that.

**Retries.** Connection errors, timeouts and 5xx answers are retried after
``backoff_s * 2**(attempt-1)`` seconds (capped, with jitter) until `WebhookPolicy.attempts`
attempts were made; other 4xx answers end the delivery at once. Every attempt is recorded in
a bounded per-rule `DeliveryLog`. At most `WebhookPolicy.queue` deliveries are in flight
(queued, waiting for a retry or being sent): a dead endpoint cannot grow memory without
bound, and what does not fit is dropped and counted (`WebhookSender.dropped`).

**Secrets at rest.** A webhook secret is chosen by the user and needed again to sign, so it
cannot be one-way hashed; it is sealed with AES-256-GCM under a key derived from the
platform's master key (the key that derives device secrets, `services/security.py`). A
stolen registry holds no usable webhook secret; API reads never show it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import random
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qiantang.domain.errors import QiantangError
from qiantang.services.security import DeviceSecrets

__all__ = [
    "Delivery",
    "DeliveryLog",
    "SecretUnavailable",
    "WebhookJob",
    "WebhookPolicy",
    "WebhookSecrets",
    "WebhookSender",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Qiantang-Signature"
TIMESTAMP_HEADER = "X-Qiantang-Timestamp"
_SEAL_PREFIX = "v1."
_SEAL_AAD = b"qiantang/webhook-secret/v1"


class SecretUnavailable(QiantangError):
    """A sealed secret does not open (the master key changed, or it was tampered with)."""


class WebhookSecrets:
    """Seals and opens webhook secrets under a key derived from the master key."""

    def __init__(self, master: DeviceSecrets) -> None:
        derived = master.mac("webhook-secret-seal")  # HMAC-SHA256 of the master key, base64
        self._aead = AESGCM(base64.urlsafe_b64decode(derived + "=" * (-len(derived) % 4)))

    def seal(self, secret: str) -> str:
        """``v1.`` + base64url(nonce + AES-GCM ciphertext and tag)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), _SEAL_AAD)
        return _SEAL_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str:
        """The secret back; raises `SecretUnavailable` when it does not open."""
        if not sealed.startswith(_SEAL_PREFIX):
            raise SecretUnavailable("not a sealed webhook secret")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_SEAL_PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], _SEAL_AAD).decode()
        except (InvalidTag, ValueError) as err:
            raise SecretUnavailable(
                "the webhook secret does not open (master key changed?)"
            ) from err


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now_ms: int | None = None,
    tolerance_ms: int = 300_000,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    if not timestamp.isdigit():
        return False
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - int(timestamp)) > tolerance_ms:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    """How hard to try: attempts per delivery, back-off, concurrency, bounds."""

    attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    workers: int = 4
    queue: int = 1000  # deliveries in flight at most (queued + waiting to retry + sending)
    log_size: int = 100  # attempts remembered per rule


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt of one action (webhook attempts, commands sent, points derived).

    `outcome`: ``delivered``, ``retrying``, ``failed`` (gave up or refused), ``dropped``
    (no room in the queue), or for other actions ``sent`` / ``replied`` / ``stored`` ..."""

    rule_id: int
    action: str
    target: str
    delivery_id: str
    attempt: int
    at_ms: int
    outcome: str
    status_code: int | None = None
    error: str | None = None
    command_id: int | None = None


class DeliveryLog:
    """The latest attempts per rule, bounded per rule and in the number of rules."""

    def __init__(self, per_rule: int = 100, rules: int = 10_000) -> None:
        self._per_rule = per_rule
        self._rules = rules
        self._logs: OrderedDict[int, deque[Delivery]] = OrderedDict()

    def record(self, delivery: Delivery) -> None:
        """Remember an attempt (the oldest of the rule falls off when it is full)."""
        entries = self._logs.get(delivery.rule_id)
        if entries is None:
            entries = self._logs[delivery.rule_id] = deque(maxlen=self._per_rule)
            if len(self._logs) > self._rules:
                self._logs.popitem(last=False)
        else:
            self._logs.move_to_end(delivery.rule_id)
        entries.append(delivery)

    def of(self, rule_id: int) -> list[Delivery]:
        """A rule's attempts, newest first."""
        return list(reversed(self._logs.get(rule_id, ())))

    def forget(self, rule_id: int) -> None:
        """Drop a rule's log (the rule was deleted)."""
        self._logs.pop(rule_id, None)


@dataclass(frozen=True, slots=True)
class WebhookJob:
    """One delivery: the body is fixed, each attempt is signed anew."""

    rule_id: int
    url: str
    secret: str
    body: bytes
    delivery_id: str
    timeout_s: float = 5.0
    attempt: int = 1


def _now_ms() -> int:
    return int(time.time() * 1000)


class WebhookSender:
    """Posts webhook jobs from a bounded queue with a few workers, retrying with back-off."""

    def __init__(
        self,
        deliveries: DeliveryLog,
        policy: WebhookPolicy | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.policy = policy or WebhookPolicy()
        self._log = deliveries
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self.policy.workers * 2),
            headers={"User-Agent": "qiantang-webhook/1"},
        )
        self._queue: asyncio.Queue[WebhookJob] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.in_flight = 0
        self.dropped = 0
        self._closed = False

    def submit(self, job: WebhookJob) -> bool:
        """Queue a delivery; False (recorded as ``dropped``) when the queue is full."""
        if self._closed or self.in_flight >= self.policy.queue:
            self.dropped += 1
            self._record(job, "dropped", error="too many deliveries in flight")
            return False
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"webhook-{i}")
                for i in range(self.policy.workers)
            ]
        self.in_flight += 1
        self._queue.put_nowait(job)
        return True

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._attempt(job)
            except Exception:  # never lose a worker to a surprise
                log.exception("webhook worker: unexpected error")
                self._end()

    async def _attempt(self, job: WebhookJob) -> None:
        stamp = str(_now_ms())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(job.secret, stamp, job.body),
            "X-Qiantang-Delivery": job.delivery_id,
            "X-Qiantang-Attempt": str(job.attempt),
        }
        try:
            response = await self._client.post(
                job.url, content=job.body, headers=headers, timeout=job.timeout_s
            )
        except httpx.HTTPError as err:
            self._retry_or_fail(job, None, f"{type(err).__name__}: {err}".rstrip(": "))
            return
        code = response.status_code
        if 200 <= code < 300:
            self._record(job, "delivered", code)
            self._end()
        elif code >= 500 or code == 429:
            self._retry_or_fail(job, code, f"HTTP {code}")
        else:
            self._record(job, "failed", code, f"HTTP {code}: not retried")
            self._end()

    def _retry_or_fail(self, job: WebhookJob, code: int | None, error: str) -> None:
        if job.attempt >= self.policy.attempts or self._closed:
            self._record(job, "failed", code, f"{error}; gave up after {job.attempt} attempts")
            self._end()
            return
        self._record(job, "retrying", code, error)
        delay = min(self.policy.backoff_s * 2 ** (job.attempt - 1), self.policy.backoff_max_s)
        delay *= random.uniform(0.75, 1.0)  # noqa: S311 - jitter, not cryptography
        again = replace(job, attempt=job.attempt + 1)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def requeue() -> None:
            self._timers.discard(handle)
            self._queue.put_nowait(again)

        handle = loop.call_later(delay, requeue)
        self._timers.add(handle)

    def _end(self) -> None:
        self.in_flight -= 1

    def _record(
        self, job: WebhookJob, outcome: str, code: int | None = None, error: str | None = None
    ) -> None:
        self._log.record(
            Delivery(
                job.rule_id,
                "webhook",
                job.url,
                job.delivery_id,
                job.attempt,
                _now_ms(),
                outcome,
                code,
                error,
            )
        )

    async def close(self) -> None:
        """Stop: pending retries are abandoned, workers cancelled, connections closed."""
        self._closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        await self._client.aclose()
