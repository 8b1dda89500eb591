"""Telemetry retention: each enterprise keeps its data `retention_days` (or the default)."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.ports.timeseries import TimeSeriesStore
from qiantang.registry.tables import Device, Enterprise

__all__ = ["RetentionJob"]

log = logging.getLogger(__name__)
DAY_MS = 86_400_000


class RetentionJob:
    """Deletes telemetry older than each enterprise's retention, periodically."""

    def __init__(
        self, sessions: sessionmaker[Session], store: TimeSeriesStore, default_days: int
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._default_days = default_days

    def _plan(self) -> list[tuple[int, list[int]]]:
        """(retention days, device ids) per enterprise that has devices."""
        with self._sessions() as db:
            days = {
                eid: rd or self._default_days
                for eid, rd in db.execute(select(Enterprise.id, Enterprise.retention_days))
            }
            devices: dict[int, list[int]] = {}
            for device_id, enterprise_id in db.execute(select(Device.id, Device.enterprise_id)):
                devices.setdefault(enterprise_id, []).append(device_id)
        return [(days.get(eid, self._default_days), ids) for eid, ids in devices.items()]

    async def run_once(self, now_ms: int | None = None) -> int:
        """Apply every enterprise's retention now; returns the rows deleted."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        deleted = 0
        for days, device_ids in await asyncio.to_thread(self._plan):
            deleted += await self._store.apply_retention(device_ids, now - days * DAY_MS)
        return deleted

    async def run_forever(self, interval_s: float) -> None:
        """Run every `interval_s` seconds until cancelled; a failure is logged, not fatal."""
        while True:
            try:
                deleted = await self.run_once()
                if deleted:
                    log.info("retention removed %d rows", deleted)
            except Exception:
                log.exception("retention run failed")
            await asyncio.sleep(interval_s)
