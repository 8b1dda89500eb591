"""The running telemetry path: store, ingress, uplink and the in-memory device state."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from qiantang.ports.bus import TelemetryBus
from qiantang.ports.ingress import MqttIngress
from qiantang.ports.timeseries import TimeSeriesStore
from qiantang.services.alink_uplink import AlinkUplink
from qiantang.services.commands import CommandService
from qiantang.services.device_auth import DeviceAuthenticator
from qiantang.services.ingest import IngestCore
from qiantang.services.live_feed import LiveFeed
from qiantang.services.models_cache import ModelCache
from qiantang.services.ota import OtaService
from qiantang.services.rule_engine import RuleEngine
from qiantang.services.shadow import ShadowService
from qiantang.services.sparkplug_uplink import SparkplugUplink
from qiantang.services.telemetry_state import DeviceStates, MessageLog
from qiantang.services.thingsboard_uplink import ThingsBoardUplink

__all__ = ["Telemetry"]


@dataclass(slots=True)
class Telemetry:
    """Everything the API and the broker share about live data."""

    store: TimeSeriesStore
    core: IngestCore
    models: ModelCache
    authenticator: DeviceAuthenticator
    states: DeviceStates
    message_log: MessageLog
    uplink: AlinkUplink
    commands: CommandService
    shadows: ShadowService
    ota: OtaService
    thingsboard: ThingsBoardUplink
    bus: TelemetryBus
    ingress: MqttIngress | None = None
    live_feed: LiveFeed | None = None
    rules: RuleEngine | None = None
    sparkplug: SparkplugUplink | None = None  # set once the broker runs: STATE on close
    background: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        """Stop background jobs and the broker (handing over what it acknowledged), then
        flush and close the store."""
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.commands.close()
        if self.ingress is not None:
            if self.sparkplug is not None:
                await self.sparkplug.stop()  # the host's STATE death, while the broker runs
            await self.ingress.stop()
        if self.rules is not None:
            await self.rules.close()  # flushes open alarms; the store is still open
        if self.live_feed is not None:
            await self.live_feed.close()
        self.bus.close()
        await self.store.close()
