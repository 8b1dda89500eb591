"""The forwarder: drains the outbox to the platform and keeps the session alive.

After every (re)connect and handshake, the outbox's newest sequence number is the
*watermark*: rows at or below it are the backlog (what piled up while away, and anything
sent but not acknowledged), rows above it are live. Live rows go out as pack posts as soon
as they are committed; the backlog goes out as history posts, one device at a time in
sequence order, at most `drain_rate` messages a second, so a long outage does not crowd out
live data. At most `max_in_flight` messages await their Alink reply at once.

A reply with code 200 acknowledges its rows (removed from the outbox). A code that may
succeed later (429, 500, 503, 6401: sub-device not in topology yet, 9201) ends the session:
the gateway reconnects with back-off and sends again from the oldest unacknowledged row, so
on each connection every row is sent once, in the order it was taken. Any other code means
the platform will never accept those rows: they are rejected, counted and logged. No reply
in `reply_timeout_s` also ends the session.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import aiomqtt

from qiantang.edge.alink_messages import (
    MAX_PACK_PROPERTIES,
    Reply,
    encode_history,
    encode_pack,
    history_topic,
    take_pack,
)
from qiantang.edge.backoff import Backoff
from qiantang.edge.config import GatewayConfig
from qiantang.edge.errors import UplinkError
from qiantang.edge.health import Health
from qiantang.edge.model import now_ms
from qiantang.edge.outbox import Outbox, Row
from qiantang.edge.uplink import AlinkSession, DownlinkCallback, ReplyCallback, mqtt_client

__all__ = ["RETRY_CODES", "Forwarder", "TokenBucket"]

log = logging.getLogger(__name__)
RETRY_CODES: Final = frozenset({429, 500, 503, 6401, 9201})
_LIVE_FETCH: Final = 2_000


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self._at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> bool:
        """Take a token if one is there."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def refund(self) -> None:
        """Give back a token that was not used."""
        self.tokens = min(self.burst, self.tokens + 1)

    def wait_s(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return max(0.0, (1 - self.tokens) / self.rate)


@dataclass(slots=True)
class _Lanes:
    """Where sending stands on this connection."""

    watermark: int
    live_after: int
    devices: deque[str]
    admitted: set[str]
    backlog_after: dict[str, int] = field(default_factory=dict)
    fetched: deque[Row] = field(default_factory=deque)
    """Live rows read from the outbox and not sent yet, in sequence order."""


@dataclass(frozen=True, slots=True)
class _Flight:
    seqs: list[int]
    sent_at: float
    oldest_ts: int
    live: bool


class _Acks:
    """Acknowledged rows, removed from the outbox in batches by one task, so that reading
    replies never waits for a commit. Rows whose removal was not committed when the session
    ends are sent again (the platform keeps one row per device, property and time)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.seqs: list[int] = []
        self.ready = asyncio.Event()

    def add(self, seqs: list[int]) -> None:
        """Queue rows for removal."""
        self.seqs.extend(seqs)
        self.ready.set()

    async def run(self) -> None:
        """Remove queued rows, all that queued up during the last commit at once."""
        try:
            while True:
                await self.ready.wait()
                self.ready.clear()
                seqs, self.seqs = self.seqs, []
                await self.outbox.ack(seqs)
        finally:
            if self.seqs:  # the session ends: commit what was acknowledged so far
                seqs, self.seqs = self.seqs, []
                await asyncio.shield(self.outbox.ack(seqs))


class Forwarder:
    """Connects, hands shakes, sends, and reconnects with back-off, until cancelled."""

    def __init__(
        self,
        config: GatewayConfig,
        outbox: Outbox,
        on_downlink: DownlinkCallback,
        health: Health,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.on_downlink = on_downlink
        self.health = health
        self.wake = asyncio.Event()
        self.gateway = config.uplink.key
        self.session: AlinkSession | None = None
        self.acked = 0
        self.messages = 0
        self.latencies_ms: deque[int] = deque(maxlen=10_000)
        """Live messages: from the oldest sample's time to the platform's acknowledgement."""

    async def run(self) -> None:
        """Serve sessions forever."""
        up = self.config.uplink
        backoff = Backoff(up.reconnect_min_s, up.reconnect_max_s)
        while True:
            try:
                async with mqtt_client(up) as client:
                    await self._serve(AlinkSession(client, self.config), backoff)
            except* (UplinkError, aiomqtt.MqttError, OSError) as group:
                self.health.platform(False, str(group.exceptions[0]))
            finally:
                self.session = None
            await backoff.sleep()

    async def _serve(self, session: AlinkSession, backoff: Backoff) -> None:
        session.on_downlink = self.on_downlink
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(session.dispatch())
            admitted = await session.handshake()
            self.session = session
            self.health.platform(True, "")
            self.health.refused(session.refused)
            backoff.reset()
            tasks.create_task(self._send(session, admitted | {self.gateway}))

    async def _send(self, session: AlinkSession, admitted: set[str]) -> None:
        """Send until the session ends. Publishing does not wait for each PUBACK (the window
        is the Alink replies, `max_in_flight`): publish tasks start in creation order, so
        messages leave in order, and a failed one ends the session."""
        async with asyncio.TaskGroup() as tasks:
            await self._send_in(session, admitted, tasks)

    async def _send_in(
        self, session: AlinkSession, admitted: set[str], tasks: asyncio.TaskGroup
    ) -> None:
        box, out = self.outbox, self.config.outbox
        watermark = await box.max_seq()
        backlog = [d for d in await box.backlog_devices(watermark) if d in admitted]
        lanes = _Lanes(watermark, watermark, deque(backlog), admitted)
        flights: dict[str, _Flight] = {}
        slots = asyncio.Semaphore(out.max_in_flight)
        bucket = TokenBucket(out.drain_rate, max(1.0, out.drain_rate))
        acks = _Acks(box)
        tasks.create_task(acks.run())
        session.on_reply = self._reply_handler(flights, slots, acks)
        timeout = self.config.uplink.reply_timeout_s
        while True:
            _check_timeouts(flights, timeout)
            try:
                await asyncio.wait_for(slots.acquire(), timeout)
            except TimeoutError:
                continue
            self.wake.clear()
            message = await self._next(session, lanes, bucket)
            if message is None:
                slots.release()
                await self._idle(lanes, bucket)
                continue
            msg_id, topic, payload, rows = message
            oldest = min(r.ts for r in rows)
            live = topic == session.topics.pack_post
            flights[msg_id] = _Flight([r.seq for r in rows], time.monotonic(), oldest, live)
            self.messages += 1
            tasks.create_task(session.publish(topic, payload))

    async def _next(
        self, session: AlinkSession, lanes: _Lanes, bucket: TokenBucket
    ) -> tuple[str, str, bytes, list[Row]] | None:
        if lanes.devices and bucket.take():
            found = await self._backlog(session, lanes)
            if found is not None:
                return found
            bucket.refund()
        if not lanes.fetched:
            fetched = await self.outbox.live(lanes.live_after, _LIVE_FETCH)
            if not fetched:
                return None
            lanes.live_after = fetched[-1].seq
            # rows of sub-devices the platform refused stay in the outbox (until admitted,
            # or dropped at a bound)
            lanes.fetched.extend(r for r in fetched if r.device in lanes.admitted)
        rows = take_pack(list(itertools.islice(lanes.fetched, MAX_PACK_PROPERTIES)), self.gateway)
        for _ in rows:
            lanes.fetched.popleft()
        if not rows:
            return None
        msg_id = session.new_id()
        payload = encode_pack(msg_id, rows, self.gateway)
        return msg_id, session.topics.pack_post, payload, rows

    async def _backlog(
        self, session: AlinkSession, lanes: _Lanes
    ) -> tuple[str, str, bytes, list[Row]] | None:
        while lanes.devices:
            device = lanes.devices[0]
            rows = await self.outbox.backlog(
                device,
                lanes.backlog_after.get(device, 0),
                lanes.watermark,
                self.config.outbox.history_batch,
            )
            if not rows:
                lanes.devices.popleft()
                continue
            lanes.backlog_after[device] = rows[-1].seq
            lanes.devices.rotate(-1)
            msg_id = session.new_id()
            payload = encode_history(msg_id, device, rows)
            return msg_id, history_topic(device), payload, rows
        return None

    async def _idle(self, lanes: _Lanes, bucket: TokenBucket) -> None:
        wait = min(0.5, bucket.wait_s()) if lanes.devices else 0.5
        try:
            await asyncio.wait_for(self.wake.wait(), max(wait, 0.001))
        except TimeoutError:
            return
        await asyncio.sleep(self.config.outbox.linger_ms / 1000)

    def _reply_handler(
        self, flights: dict[str, _Flight], slots: asyncio.Semaphore, acks: _Acks
    ) -> ReplyCallback:
        async def on_reply(topic: str, reply: Reply) -> None:
            flight = flights.pop(reply.id, None)
            if flight is None:
                return  # not ours, or from a session before a reconnect
            slots.release()
            if reply.code == 200:
                acks.add(flight.seqs)
                self.acked += len(flight.seqs)
                if flight.live:
                    self.latencies_ms.append(now_ms() - flight.oldest_ts)
            elif reply.code in RETRY_CODES:
                raise UplinkError(f"platform answered {reply.code} {reply.message}: will resend")
            else:
                await self.outbox.reject(flight.seqs)
                log.warning(
                    "platform refused %d samples (%s %s); dropped as rejected",
                    len(flight.seqs),
                    reply.code,
                    reply.message,
                )
                self.health.error(f"platform refused samples: {reply.code} {reply.message}")

        return on_reply


def _check_timeouts(flights: dict[str, _Flight], timeout: float) -> None:
    now = time.monotonic()
    if any(now - f.sent_at > timeout for f in flights.values()):
        raise UplinkError(f"no reply from the platform in {timeout:g} s")
