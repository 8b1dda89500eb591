"""A third-party connector kind registered without touching the core: it counts.

``count`` takes the values 0, 1, 2 ... at `rate` a second, stamped with the wall clock (made
strictly increasing), so every sample is unique and the tests can say exactly which ones reached the platform."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from qiantang.edge.config import ConnectionConfig, DeviceConfig
from qiantang.edge.model import (
    Connector,
    ConnectorStatus,
    Quality,
    Raw,
    RawReading,
    ReadingSink,
    StatusSink,
    now_ms,
)
from qiantang.edge.registry import ConnectorPlugin


class CounterConnection(ConnectionConfig):
    type: Literal["counter"]
    rate: float = Field(default=100.0, gt=0, le=1000)


class CounterDevice(DeviceConfig):
    connector: CounterConnection


class CounterConnector(Connector):
    """Counts while `running` is set; `generated` is how many values it has emitted."""

    def __init__(self, device: CounterDevice) -> None:
        self.rate = device.connector.rate
        self.generated = 0
        self.running = asyncio.Event()
        self.running.set()
        self.last_ts = 0

    async def run(self, emit: ReadingSink, report: StatusSink) -> None:
        report(ConnectorStatus.UP, "")
        while True:
            await self.running.wait()
            ts = self.last_ts = max(now_ms(), self.last_ts + 1)
            emit(RawReading("count", self.generated, Quality.GOOD, ts))
            self.generated += 1
            await asyncio.sleep(1 / self.rate)

    async def write(self, values: Mapping[str, Raw]) -> None:
        return None

    async def probe(self) -> str:
        return "counter"


def _create(device: DeviceConfig) -> Connector:
    assert isinstance(device, CounterDevice)
    return CounterConnector(device)


PLUGIN = ConnectorPlugin(CounterDevice, _create)
