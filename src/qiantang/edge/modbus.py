"""The Modbus connector (pymodbus client): TCP or RTU, one unit id per sub-device.

Points are grouped by poll period; each group is planned into block reads that merge
neighbouring registers (`qiantang.edge.modbus_codec.plan_blocks`) and polled on a fixed
schedule (a late poll skips the ticks it missed rather than bursting). A failed read takes
the link down: the client is closed and reconnected with back-off. Writes (property set) use
FC5 for one coil, FC6 for one register and FC16 for wider values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from qiantang.edge.backoff import Backoff
from qiantang.edge.config import ConnectionConfig, DeviceConfig, PointConfig
from qiantang.edge.errors import ConnectorError, WriteRefused
from qiantang.edge.modbus_codec import (
    BIT_TABLES,
    Block,
    DataType,
    Order,
    Span,
    Table,
    decode,
    encode,
    plan_blocks,
    register_count,
)
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

__all__ = ["PLUGIN", "ModbusConnection", "ModbusConnector", "ModbusDevice", "ModbusPoint"]

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class ModbusConnection(ConnectionConfig):
    """Where the unit is: TCP (`host`, `port`) or RTU (`serial_port` and line settings)."""

    type: Literal["modbus"]
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = Field(default=19200, ge=300)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(default=1, ge=0, le=247)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    poll_ms: int = Field(default=1000, ge=10, le=3_600_000)
    max_gap: int = Field(default=8, ge=0, le=100)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _serial_needs_port(self) -> ModbusConnection:
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport rtu needs serial_port")
        return self


class ModbusPoint(PointConfig):
    """A point: table (function code), address, data type and word layout, poll period."""

    table: Table
    address: int = Field(ge=0, le=65535)
    data_type: DataType = "uint16"
    byte_order: Order = "big"
    word_order: Order = "big"
    length: int = Field(default=1, ge=1, le=123, description="registers of a string")
    bit: int | None = Field(default=None, ge=0, le=15)
    poll_ms: int | None = Field(default=None, ge=10, le=3_600_000)

    @model_validator(mode="after")
    def _fits_table(self) -> ModbusPoint:
        if self.table in BIT_TABLES and self.data_type not in ("bool", "uint16"):
            raise ValueError(f"a {self.table} holds a bool, not {self.data_type}")
        if self.bit is not None and self.data_type != "bool":
            raise ValueError("bit is for data_type bool")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) the point takes."""
        return 1 if self.table in BIT_TABLES else register_count(self.data_type, self.length)


class ModbusDevice(DeviceConfig):
    """A sub-device read over Modbus."""

    connector: ModbusConnection
    points: tuple[ModbusPoint, ...]


class ModbusConnector(Connector):
    """Polls one Modbus unit and writes to it."""

    def __init__(self, device: ModbusDevice) -> None:
        self.config = device.connector
        self.points = {p.property: p for p in device.points}
        groups: dict[int, list[ModbusPoint]] = {}
        for point in device.points:
            groups.setdefault(point.poll_ms or self.config.poll_ms, []).append(point)
        self.groups = {
            period: plan_blocks(
                [Span(p.property, p.table, p.address, p.count) for p in points],
                self.config.max_gap,
            )
            for period, points in sorted(groups.items())
        }
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self.reads = 0

    def _new_client(self) -> Client:
        c = self.config
        if c.transport == "rtu":
            assert c.serial_port is not None
            return AsyncModbusSerialClient(
                c.serial_port,
                baudrate=c.baudrate,
                parity=c.parity,
                stopbits=c.stopbits,
                bytesize=c.bytesize,
                timeout=c.timeout_s,
                retries=1,
                reconnect_delay=0,
            )
        return AsyncModbusTcpClient(
            c.host, port=c.port, timeout=c.timeout_s, retries=1, reconnect_delay=0
        )

    def describe(self) -> str:
        """Where the unit is, for logs."""
        c = self.config
        where = f"{c.host}:{c.port}" if c.transport == "tcp" else c.serial_port
        return f"modbus {c.transport} {where} unit {c.unit_id}"

    async def _connect(self) -> Client:
        client = self._new_client()
        if not await client.connect():
            client.close()
            raise ConnectorError(f"{self.describe()}: cannot connect")
        return client

    async def run(self, emit: ReadingSink, report: StatusSink) -> None:
        """Connect, poll every group on its period, reconnect with back-off."""
        backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        while True:
            try:
                self._client = await self._connect()
                report(ConnectorStatus.UP, "")
                backoff.reset()
                async with asyncio.TaskGroup() as tasks:
                    for period, blocks in self.groups.items():
                        tasks.create_task(self._poll(period, blocks, emit))
            except* ConnectorError as group:
                report(ConnectorStatus.DOWN, str(group.exceptions[0]))
            finally:
                if self._client is not None:
                    self._client.close()
                    self._client = None
            await backoff.sleep()

    async def _poll(self, period_ms: int, blocks: list[Block], emit: ReadingSink) -> None:
        period = period_ms / 1000
        next_at = time.monotonic()
        while True:
            for block in blocks:
                await self._read_block(block, emit)
            next_at += period
            now = time.monotonic()
            if next_at < now:  # late: skip the missed ticks
                next_at += period * ((now - next_at) // period + 1)
            await asyncio.sleep(next_at - now)

    async def _read_block(self, block: Block, emit: ReadingSink) -> None:
        values = await self._read(block)
        ts = now_ms()
        for span in block.spans:
            point = self.points[span.key]
            words = block.words(values, span)
            value: Raw = bool(words[0]) if point.table in BIT_TABLES else self._decode(point, words)
            emit(RawReading(point.property, value, Quality.GOOD, ts))

    @staticmethod
    def _decode(point: ModbusPoint, words: list[int]) -> Raw:
        return decode(words, point.data_type, point.byte_order, point.word_order, point.bit)

    async def _read(self, block: Block) -> list[int]:
        readers = {
            "coil": "read_coils",
            "discrete_input": "read_discrete_inputs",
            "holding_register": "read_holding_registers",
            "input_register": "read_input_registers",
        }
        response = await self._request(
            readers[block.table], block.address, count=block.count, device_id=self.config.unit_id
        )
        self.reads += 1
        if block.table in BIT_TABLES:
            return [int(b) for b in response.bits[: block.count]]
        return list(response.registers)

    async def _request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        client = self._client
        if client is None or not client.connected:
            raise ConnectorError(f"{self.describe()}: not connected")
        try:
            async with self._lock:
                response = await getattr(client, method)(*args, **kwargs)
        except ModbusException as err:
            raise ConnectorError(f"{self.describe()}: {method} failed: {err}") from err
        if response.isError():
            raise ConnectorError(f"{self.describe()}: {method} answered {response}")
        return response

    async def write(self, values: Mapping[str, Raw]) -> None:
        """Write each value with the narrowest function code that fits."""
        plans = [(self._writable(name), value) for name, value in values.items()]
        for point, value in plans:
            unit = self.config.unit_id
            if point.table == "coil":
                await self._request("write_coil", point.address, bool(value), device_id=unit)
                continue
            try:
                words = encode(
                    value, point.data_type, point.byte_order, point.word_order, point.length
                )
            except ValueError as err:
                raise WriteRefused(f"params.{point.property}", str(err)) from err
            if point.data_type == "bool" and point.bit is not None:
                raise WriteRefused(f"params.{point.property}", "a single bit cannot be written")
            if len(words) == 1:
                await self._request("write_register", point.address, words[0], device_id=unit)
            else:
                await self._request("write_registers", point.address, words, device_id=unit)

    def _writable(self, name: str) -> ModbusPoint:
        point = self.points.get(name)
        if point is None:
            raise WriteRefused(f"params.{name}", "is not mapped to a point of this device")
        if point.table not in ("coil", "holding_register"):
            raise WriteRefused(f"params.{name}", f"a {point.table} is read-only")
        return point

    async def probe(self) -> str:
        """Connect, read every block once, close."""
        self._client = await self._connect()
        readings: list[RawReading] = []
        try:
            blocks = [b for group in self.groups.values() for b in group]
            for block in blocks:
                await self._read_block(block, readings.append)
        finally:
            self._client.close()
            self._client = None
        return f"{self.describe()}: {len(readings)} points in {len(blocks)} reads"


def _create(device: DeviceConfig) -> Connector:
    assert isinstance(device, ModbusDevice)
    return ModbusConnector(device)


PLUGIN = ConnectorPlugin(ModbusDevice, _create)
