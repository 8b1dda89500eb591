"""What flows through the gateway: readings from connectors, samples for the outbox, and the
`Connector` port every protocol implements.

A connector does protocol I/O only: it reads raw values (numbers, booleans, strings as the
machine holds them) and writes raw values back. Mapping raw values to thing-model values
(scale, offset, type) is the converter's job (`qiantang.edge.convert`).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from qiantang.edge.errors import WriteRefused

__all__ = [
    "Connector",
    "ConnectorStatus",
    "Quality",
    "Raw",
    "RawReading",
    "ReadingSink",
    "Sample",
    "StatusSink",
    "now_ms",
]

Raw: TypeAlias = "int | float | bool | str"
"""A value as the machine holds it, before conversion."""


class Quality(StrEnum):
    """How far a reading can be trusted (OPC UA status code severity; Modbus: good or bad)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class ConnectorStatus(StrEnum):
    """A connector's link to its machine."""

    STARTING = "starting"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class RawReading:
    """One point read from a machine: `point` is the property identifier it maps to."""

    point: str
    value: Raw | None
    quality: Quality
    ts: int


@dataclass(frozen=True, slots=True)
class Sample:
    """A converted value bound for the platform: `device` is ``productKey/deviceName``."""

    device: str
    property: str
    ts: int
    value: Raw


ReadingSink = Callable[[RawReading], None]
"""Where a connector hands readings; never blocks."""
StatusSink = Callable[[ConnectorStatus, str], None]
"""Where a connector reports its link status and, when down, why."""


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class Connector(abc.ABC):
    """One machine's protocol I/O. `run` owns the connection: it connects, reads (subscribes
    or polls), reconnects with back-off after failures and returns only when cancelled.
    `write` and `call` may run concurrently with `run`; they raise `ConnectorError` when the
    machine cannot be reached and `WriteRefused` for requests that make no sense."""

    @abc.abstractmethod
    async def run(self, emit: ReadingSink, report: StatusSink) -> None:
        """Read until cancelled."""

    @abc.abstractmethod
    async def write(self, values: Mapping[str, Raw]) -> None:
        """Write raw values, keyed by point (property identifier)."""

    async def call(self, service: str, params: Mapping[str, Raw]) -> dict[str, Raw]:
        """Invoke a service on the machine; the default connector has none."""
        raise WriteRefused(f"services.{service}", "this connector has no services")

    @abc.abstractmethod
    async def probe(self) -> str:
        """Connect once, read every point once, disconnect; a one-line summary, or raise
        `ConnectorError` naming what failed."""
