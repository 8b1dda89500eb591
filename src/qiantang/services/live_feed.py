"""The live feed: one bus subscription fanned out to WebSocket clients by scope.

`LiveFeed` reads the telemetry bus (`qiantang.ports.bus`) and hands each client the frames of
its scope - a device, a product, an enterprise or a platform subtree - filtered by what the
client may see (`qiantang.services.live_feed_scope`). Clients are indexed by device, product,
enterprise and platform id, and each device is resolved to its product, enterprise and
platforms once (cached for `directory_ttl_s`), so a batch costs O(devices in it + matching
clients), not O(clients x points). Frames are encoded once per device and shared by every
client that sees all its properties. Each client's outbox is bounded
(`qiantang.services.live_feed_client`): a slow client is sampled, then dropped.

Frames (JSON text):

- ``{"type": "telemetry", "device_id": 7, "ts": 1733050000000, "values": {"temperature": 36.5}}``
- ``{"type": "state", "device_id": 7, "ts": ..., "online": false}``
- ``{"type": "event", "device_id": 7, "ts": ..., "identifier": "overTemp", "event_type": "alert",
  "output": {...}}`` (members of the enterprise only)
- ``{"type": "alarm", "device_id": 7, "enterprise_id": 3, ...}`` (members only; the rest of the
  frame is the payload given to `LiveFeed.alarm`)
- ``{"type": "lag", "sampled": n, "dropped": m}`` after a sampled stretch (see the client module)

Alarms: the rule engine calls ``LiveFeed.alarm(enterprise_id, device_id, payload)`` for every
alarm change (raised, updated, acknowledged, cleared) with a JSON-able payload such as
``{"alarm_id": 12, "rule_id": 3, "status": "active", "severity": "major", "ts": ..., "message":
"..."}``. It never blocks and never raises; call it from the event loop (it hops onto the loop
when called from another thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any, Protocol

import orjson

from qiantang.domain.telemetry import EventRecord, Point, Value
from qiantang.ports.bus import BusBatch, BusClosed, StateChange, Subscription, TelemetryBus
from qiantang.services.live_feed_client import ClientStats, LiveClient, LiveLimits
from qiantang.services.live_feed_scope import DeviceInfo, LiveScope, ScopeKind, Sight

__all__ = ["DeviceDirectory", "FeedStats", "LiveFeed"]

log = logging.getLogger(__name__)
_DEVICE = attrgetter("device_id")


class DeviceDirectory(Protocol):
    """Resolves devices to where they belong (blocking; run in a worker thread)."""

    def resolve(self, device_ids: Collection[int]) -> dict[int, DeviceInfo]:
        """Known devices among `device_ids`."""
        ...


@dataclass(frozen=True, slots=True)
class FeedStats:
    """The feed as a whole: clients, devices cached, what the bus dropped for it."""

    clients: int
    devices_cached: int
    clients_dropped: int
    bus_dropped_batches: int
    frames_queued: int


@dataclass(slots=True)
class _DeviceItems:
    points: list[Point] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    states: list[StateChange] = field(default_factory=list)


def _text(frame: Mapping[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def _by_device(
    batches: Iterable[BusBatch], wanted: Callable[[int], bool]
) -> dict[int, _DeviceItems]:
    """The batches' items of the `wanted` devices, by device. Points of one message sit
    together, so runs are grouped in C (`groupby`) and unwanted runs are skipped unread."""
    grouped: dict[int, _DeviceItems] = {}
    for batch in batches:
        for device_id, run in groupby(batch.points, _DEVICE):
            if wanted(device_id):
                items = grouped.get(device_id) or grouped.setdefault(device_id, _DeviceItems())
                items.points.extend(run)
        for event in batch.events:
            if wanted(event.device_id):
                grouped.setdefault(event.device_id, _DeviceItems()).events.append(event)
        for state in batch.states:
            if wanted(state.device_id):
                grouped.setdefault(state.device_id, _DeviceItems()).states.append(state)
    return grouped


def _telemetry(device_id: int, points: list[Point]) -> list[tuple[int, dict[str, Value], str]]:
    """Points grouped by timestamp, each group with its encoded frame."""
    by_ts: dict[int, dict[str, Value]] = {}
    for point in points:
        by_ts.setdefault(point.ts, {})[point.property] = point.value
    return [
        (
            ts,
            values,
            _text({"type": "telemetry", "device_id": device_id, "ts": ts, "values": values}),
        )
        for ts, values in by_ts.items()
    ]


class LiveFeed:
    """Fan-out of the bus to live clients (one subscription for all of them)."""

    def __init__(
        self,
        bus: TelemetryBus,
        directory: DeviceDirectory,
        limits: LiveLimits | None = None,
        *,
        bus_capacity: int = 4096,
        directory_ttl_s: float = 60.0,
    ) -> None:
        self._bus = bus
        self._directory = directory
        self.limits = limits or LiveLimits()
        self._bus_capacity = bus_capacity
        self._ttl = directory_ttl_s
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._index: dict[ScopeKind, dict[int, set[LiveClient]]] = {k: {} for k in ScopeKind}
        self._infos: dict[int, DeviceInfo | None] = {}
        self._infos_at = time.monotonic()
        self._pending: set[asyncio.Task[None]] = set()
        self._clients_dropped = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Subscribe to the bus and start fanning out (call on the event loop)."""
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._subscription = self._bus.subscribe("live-feed", self._bus_capacity)
            self._task = asyncio.create_task(self._run(), name="live-feed")

    async def close(self) -> None:
        """Stop reading the bus and drop every client."""
        if self._subscription is not None:
            self._subscription.close()
        for task in [t for t in (self._task, *self._pending) if t is not None]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self.clients():
            client.drop("the server is shutting down")
        self._task = None

    # --- clients ---------------------------------------------------------------------------
    def connect(
        self, scope: LiveScope, on_drop: Callable[[LiveClient, str], None] | None = None
    ) -> LiveClient:
        """A new client of `scope`; `on_drop` is called if the feed drops it."""
        client = LiveClient(scope, self.limits, self._dropping(on_drop))
        self._add(client)
        return client

    def rescope(self, client: LiveClient, scope: LiveScope, *, reset: bool) -> None:
        """Give `client` a new scope (`reset`: forget what was queued for the old one)."""
        self._remove(client)
        client.rescope(scope, reset=reset)
        self._add(client)

    def disconnect(self, client: LiveClient) -> None:
        """Forget a client (its connection ended)."""
        self._remove(client)

    def clients(self) -> list[LiveClient]:
        """Every connected client."""
        # copies first: tests and metrics may call this from another thread
        return [
            c
            for by_id in list(self._index.values())
            for cs in list(by_id.values())
            for c in list(cs)
        ]

    def client_stats(self) -> list[ClientStats]:
        """Per-client counters."""
        return [c.stats() for c in self.clients()]

    def stats(self) -> FeedStats:
        """Counters of the whole feed."""
        sub = self._subscription
        return FeedStats(
            len(self.clients()),
            len(self._infos),
            self._clients_dropped,
            sub.dropped_batches if sub is not None else 0,
            sum(s.queued for s in self.client_stats()),
        )

    def forget_device(self, device_id: int) -> None:
        """Resolve the device again next time (it moved or was deleted)."""
        self._infos.pop(device_id, None)

    def _dropping(
        self, on_drop: Callable[[LiveClient, str], None] | None
    ) -> Callable[[LiveClient, str], None]:
        def dropped(client: LiveClient, reason: str) -> None:
            self._clients_dropped += 1
            self._remove(client)
            log.info("live client of %s %s dropped: %s", client.scope.kind, client.scope.id, reason)
            if on_drop is not None:
                on_drop(client, reason)

        return dropped

    def _add(self, client: LiveClient) -> None:
        scope = client.scope
        self._index[scope.kind].setdefault(scope.id, set()).add(client)

    def _remove(self, client: LiveClient) -> None:
        by_id = self._index[client.scope.kind]
        members = by_id.get(client.scope.id)
        if members is not None:
            members.discard(client)
            if not members:
                del by_id[client.scope.id]

    # --- alarms ----------------------------------------------------------------------------
    def alarm(self, enterprise_id: int, device_id: int, payload: Mapping[str, Any]) -> None:
        """Stream an alarm change to the members watching the device (never blocks)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if not _on_loop(loop):
            loop.call_soon_threadsafe(self.alarm, enterprise_id, device_id, payload)
            return
        frame = {**payload, "type": "alarm", "enterprise_id": enterprise_id, "device_id": device_id}
        try:
            text = _text(frame)
        except TypeError:
            log.warning("alarm payload of device %s is not JSON: %r", device_id, payload)
            return
        task = loop.create_task(self._deliver_alarm(device_id, text))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver_alarm(self, device_id: int, text: str) -> None:
        if not self._may_match(device_id):
            return
        await self._resolve([device_id])
        info = self._infos.get(device_id)
        if info is None:
            return
        for client in self._targets(info):
            sight = client.sight(info)
            if sight is not None and sight.member and client.wants("alarm"):
                client.offer_other(text)

    # --- fan-out ---------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._subscription is not None
        while True:
            try:
                batches = [await self._subscription.get()]
            except BusClosed:
                return
            while len(batches) < 64 and (more := self._subscription.get_nowait()) is not None:
                batches.append(more)
            try:
                await self._dispatch(batches)
            except Exception:  # one bad batch must not stop the feed
                log.exception("live feed could not dispatch a batch")

    async def _dispatch(self, batches: list[BusBatch]) -> None:
        if not any(self._index.values()):
            return
        grouped = _by_device(batches, self._may_match)
        await self._resolve(list(grouped))
        for device_id, items in grouped.items():
            info = self._infos.get(device_id)
            if info is not None:
                targets = self._targets(info)
                if targets:
                    self._deliver(info, items, targets)

    def _may_match(self, device_id: int) -> bool:
        index = self._index
        if index[ScopeKind.PRODUCT] or index[ScopeKind.ENTERPRISE] or index[ScopeKind.PLATFORM]:
            return True
        return device_id in index[ScopeKind.DEVICE]

    async def _resolve(self, device_ids: list[int]) -> None:
        if time.monotonic() - self._infos_at > self._ttl:
            self._infos, self._infos_at = {}, time.monotonic()
        unknown = [d for d in device_ids if d not in self._infos]
        if not unknown:
            return
        found = await asyncio.to_thread(self._directory.resolve, unknown)
        for device_id in unknown:
            self._infos[device_id] = found.get(device_id)

    def _targets(self, info: DeviceInfo) -> list[LiveClient]:
        index = self._index
        targets = [
            *index[ScopeKind.DEVICE].get(info.device_id, ()),
            *index[ScopeKind.PRODUCT].get(info.product_id, ()),
            *index[ScopeKind.ENTERPRISE].get(info.enterprise_id, ()),
        ]
        platforms = index[ScopeKind.PLATFORM]
        if platforms:
            for platform_id in info.platform_ids:
                targets.extend(platforms.get(platform_id, ()))
        return targets

    def _deliver(self, info: DeviceInfo, items: _DeviceItems, targets: list[LiveClient]) -> None:
        frames = _telemetry(info.device_id, items.points) if items.points else []
        states = [
            (
                s.device_id,
                _text({"type": "state", "device_id": s.device_id, "ts": s.ts, "online": s.online}),
            )
            for s in items.states
        ]
        events = [_event_text(e) for e in items.events]
        for client in targets:
            sight = client.sight(info)
            if sight is None:
                continue
            if frames and client.wants("telemetry"):
                _offer_telemetry(client, sight, info.device_id, frames)
            if client.wants("state"):
                for device_id, text in states:
                    client.offer_state(device_id, text)
            if sight.member and client.wants("event"):
                for text in events:
                    client.offer_other(text)


def _offer_telemetry(
    client: LiveClient,
    sight: Sight,
    device_id: int,
    frames: list[tuple[int, dict[str, Value], str]],
) -> None:
    for ts, values, text in frames:
        if sight.properties is None:
            client.offer_telemetry(device_id, ts, values, text)
            continue
        seen = {p: v for p, v in values.items() if sight.allows(p)}
        if seen:
            frame = {"type": "telemetry", "device_id": device_id, "ts": ts, "values": seen}
            client.offer_telemetry(device_id, ts, seen, _text(frame))


def _event_text(event: EventRecord) -> str:
    return _text(
        {
            "type": "event",
            "device_id": event.device_id,
            "ts": event.ts,
            "identifier": event.identifier,
            "event_type": event.event_type,
            "output": event.output,
        }
    )


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
