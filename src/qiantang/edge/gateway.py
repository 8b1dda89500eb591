"""The gateway process: connectors feed converters, converters feed the outbox, the forwarder
drains it to the platform, downlink requests go back to the connectors.

Readings are converted as they arrive and committed to the outbox in small batches (every
`FLUSH_S` or `FLUSH_ROWS`, whichever comes first); only committed samples are ever sent.
Samples waiting for a commit are bounded too (`MAX_PENDING`): past that the oldest are
dropped and counted with the outbox's dropped samples. Health samples are put every
``health.period_s``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from qiantang.edge.backoff import Backoff
from qiantang.edge.config import GatewayConfig
from qiantang.edge.convert import DeviceConverter
from qiantang.edge.downlink import Downlink, Target
from qiantang.edge.forwarder import Forwarder
from qiantang.edge.health import Health
from qiantang.edge.model import (
    Connector,
    ConnectorStatus,
    RawReading,
    ReadingSink,
    Sample,
    StatusSink,
    now_ms,
)
from qiantang.edge.outbox import Outbox
from qiantang.edge.registry import ConnectorRegistry, registry

__all__ = ["FLUSH_ROWS", "FLUSH_S", "MAX_PENDING", "Gateway"]

log = logging.getLogger(__name__)
FLUSH_S: Final = 0.02
FLUSH_ROWS: Final = 2000
MAX_PENDING: Final = 200_000


class Gateway:
    """One gateway: build with a validated config, then `run` until cancelled."""

    def __init__(self, config: GatewayConfig, connectors: ConnectorRegistry = registry) -> None:
        self.config = config
        keys = [d.key for d in config.devices]
        self.health = Health(config.uplink.key, keys)
        self.connectors: dict[str, Connector] = {
            d.key: connectors.get(d.connector.type).create(d) for d in config.devices
        }
        self.converters = {d.key: DeviceConverter(d) for d in config.devices}
        self.downlink = Downlink(
            {k: Target(self.converters[k], c) for k, c in self.connectors.items()},
            self.health.error,
        )
        self.outbox: Outbox | None = None
        self.forwarder: Forwarder | None = None
        self._pending: list[Sample] = []
        self._lost = 0
        self._flush = asyncio.Event()

    def _emit(self, device: str) -> ReadingSink:
        converter = self.converters[device]

        def accept(reading: RawReading) -> None:
            try:
                sample = converter.sample(reading)
            except ValueError as err:
                self.health.error(str(err))
                return
            if sample is None:
                self.health.bad_readings += 1
                return
            self._pending.append(sample)
            if len(self._pending) > MAX_PENDING:
                del self._pending[0]
                self._lost += 1
            self._flush.set()

        return accept

    def _report(self, device: str) -> StatusSink:
        def report(status: ConnectorStatus, reason: str) -> None:
            self.health.connector(device, status, reason)

        return report

    async def run(self) -> None:
        """Run every part until cancelled; the outbox is closed on the way out."""
        out = self.config.outbox
        self.outbox = await Outbox.open(
            out.path, out.max_samples, int(out.max_age_s * 1000), out.synchronous
        )
        self.forwarder = Forwarder(self.config, self.outbox, self.downlink, self.health)
        self.downlink.publish = self._publish
        log.info(
            "gateway %s: %d sub-devices, outbox %s (%d waiting)",
            self.config.uplink.key,
            len(self.connectors),
            out.path,
            self.outbox.stats_now().depth,
        )
        parts = [
            self._supervise(key, functools.partial(c.run, self._emit(key), self._report(key)))
            for key, c in self.connectors.items()
        ]
        parts += [self._writer(), self._supervise("platform", self.forwarder.run)]
        if self.config.health.enabled:
            parts.append(self._health())
        tasks = [asyncio.create_task(part) for part in parts]
        try:
            await asyncio.gather(*tasks)
        finally:
            await _stop(tasks)
            await self.downlink.close()
            await self._commit()
            await self.outbox.close()

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run a part again after an unexpected error (a bug in a connector must not stop the
        other machines or the uplink); expected failures are handled inside each part."""
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await run()
            except Exception as err:
                log.exception("%s stopped on an unexpected error; restarting", name)
                if name in self.connectors:
                    self.health.connector(name, ConnectorStatus.DOWN, f"internal error: {err!r}")
                else:
                    self.health.platform(False, f"internal error: {err!r}")
            await backoff.sleep()

    async def _publish(self, topic: str, payload: bytes) -> None:
        assert self.forwarder is not None
        session = self.forwarder.session
        if session is not None:
            await session.publish(topic, payload)

    async def _commit(self) -> None:
        assert self.outbox is not None
        batch, self._pending = self._pending, []
        lost, self._lost = self._lost, 0
        if lost:
            await self.outbox.count_dropped(lost)
        if batch:
            await self.outbox.put(batch)
            assert self.forwarder is not None
            self.forwarder.wake.set()

    async def _writer(self) -> None:
        while True:
            await self._flush.wait()
            if len(self._pending) < FLUSH_ROWS:
                await asyncio.sleep(FLUSH_S)
            self._flush.clear()
            await self._commit()

    async def _health(self) -> None:
        assert self.outbox is not None
        while True:
            await self.outbox.expire()
            self._pending.extend(self.health.samples(self.outbox.stats_now(), now_ms()))
            self._flush.set()
            await asyncio.sleep(self.config.health.period_s)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel `tasks` and wait for them, cancelling again while any keeps running: on Python
    3.11 a cancellation that lands while a `TaskGroup` child fails, or while `wait_for`'s
    inner await completes, is lost, and a retry loop would go on. Bounded: 20 rounds."""
    for _ in range(20):
        pending = [t for t in tasks if not t.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)
    else:
        log.error("%d tasks did not stop", sum(1 for t in tasks if not t.done()))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("a part of the gateway failed: %r", task.exception())
