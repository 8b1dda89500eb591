"""What the rule engine knows of devices, and how it reads messages out of a bus batch.

Device identity (product, enterprise, name) is loaded from the registry once per device, in
a worker thread and for all the unknown devices of a batch at once, and refreshed after
`ttl_s` (a renamed device shows in alarm messages within that time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.telemetry import Point, Value
from qiantang.registry.tables import Device

__all__ = ["DeviceDirectory", "DeviceInfo", "messages_of"]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the engine needs of a device: its product, enterprise and attributes."""

    product_id: int
    enterprise_id: int
    attributes: Mapping[str, Value]
    loaded: float


class DeviceDirectory:
    """Device id -> `DeviceInfo`, loaded on first sight and refreshed after `ttl_s`."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 60.0) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._devices: dict[int, DeviceInfo] = {}

    def get(self, device_id: int) -> DeviceInfo | None:
        """The device if known (no I/O)."""
        return self._devices.get(device_id)

    def _load(self, device_ids: Sequence[int]) -> None:
        now = time.monotonic()
        with self._sessions() as db:
            for row in db.scalars(select(Device).where(Device.id.in_(device_ids))):
                attributes: dict[str, Value] = {
                    "id": row.id,
                    "name": row.device_name,
                    "nickname": row.nickname,
                    "identifier": row.identifier,
                }
                self._devices[row.id] = DeviceInfo(
                    row.product_id, row.enterprise_id, attributes, now
                )

    async def ensure(self, device_ids: Iterable[int]) -> None:
        """Load the devices not known yet (or known for longer than `ttl_s`)."""
        horizon = time.monotonic() - self._ttl_s
        missing = [
            d for d in device_ids if (i := self._devices.get(d)) is None or i.loaded < horizon
        ]
        if missing:
            await asyncio.to_thread(self._load, missing)


def messages_of(points: Sequence[Point]) -> list[tuple[int, int, dict[str, Value]]]:
    """Points split back into messages, in order: a message is a run of points of one
    device and one timestamp with no property twice (a batch may hold several messages of
    one device stamped in the same millisecond)."""
    if not points:
        return []
    first, last = points[0], points[-1]
    if first.device_id == last.device_id and first.ts == last.ts:
        values = {p.property: p.value for p in points}
        if len(values) == len(points):
            return [(first.device_id, first.ts, values)]
    out: list[tuple[int, int, dict[str, Value]]] = []
    device_id, ts = first.device_id, first.ts
    group: dict[str, Value] = {}
    for p in points:
        if p.device_id != device_id or p.ts != ts or p.property in group:
            out.append((device_id, ts, group))
            device_id, ts, group = p.device_id, p.ts, {}
        group[p.property] = p.value
    out.append((device_id, ts, group))
    return out
