"""Simulated machines behind one Modbus TCP server (pymodbus), one unit id per machine as on
an RS-485 line behind a serial-to-Ethernet converter. The register map of each kind comes
from `qiantang.sim.points.modbus_points`; `update` writes the models' values, and a register
or coil the edge gateway wrote is handed to the model as a property set."""

from __future__ import annotations

import logging
import struct
import time
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from qiantang.sim.machine import SimMachine
from qiantang.sim.plan import DevicePlan
from qiantang.sim.points import ScalarPoint, modbus_points

__all__ = ["ModbusFront", "decode_point", "encode_point"]

_FC_COILS, _FC_HOLDING = 1, 3
_FORMAT = {"uint16": ">H", "int32": ">i", "float64": ">d"}
_LIMITS = {"uint16": (0, 0xFFFF), "int32": (-(2**31), 2**31 - 1)}


def encode_point(point: ScalarPoint, value: Any) -> list[int]:
    """The registers holding `value` (big-endian words; ints clamped to the register)."""
    fmt = _FORMAT[point.data_type]
    if point.data_type in _LIMITS:
        low, high = _LIMITS[point.data_type]
        scaled = round(float(value) / point.scale) if point.scale != 1.0 else int(value)
        raw = struct.pack(fmt, max(low, min(high, scaled)))
    else:
        raw = struct.pack(fmt, float(value))
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def decode_point(point: ScalarPoint, registers: list[int]) -> int | float:
    """The value `registers` hold for `point`."""
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    value: int | float = struct.unpack(_FORMAT[point.data_type], raw)[0]
    return value * point.scale if point.scale != 1.0 else value


class ModbusFront:
    """One Modbus TCP server on 127.0.0.1:`port`; each machine's plan gives its unit id."""

    def __init__(self, port: int, machines: list[tuple[DevicePlan, SimMachine]]) -> None:
        self.port = port
        self.machines = machines
        self.server: ModbusTcpServer | None = None
        self._written: dict[tuple[int, str], Any] = {}

    async def start(self) -> None:
        """Create the units and start listening."""
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        devices = []
        for plan, machine in self.machines:
            points = modbus_points(machine.KIND)
            registers = sum(p.registers for p in points if p.table == "holding_register")
            coils = sum(1 for p in points if p.table == "coil")
            devices.append(
                SimDevice(
                    id=plan.unit_id,
                    simdata=(
                        [SimData(0, count=max(coils, 1), values=False, datatype=DataType.BITS)],
                        [SimData(0, count=1, values=False, datatype=DataType.BITS)],
                        [
                            SimData(
                                0, count=max(registers, 1), values=0, datatype=DataType.REGISTERS
                            )
                        ],
                        [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
                    ),
                )
            )
        self.server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)
        await self.update()

    async def update(self) -> None:
        """Take what the gateway wrote, step the models to now, write their values."""
        assert self.server is not None
        for plan, machine in self.machines:
            await self._take_writes(plan.unit_id, machine)
            machine.advance((time.time() * 1000 - machine.now_ms) / 1000.0)
            values = machine.properties()
            for point in modbus_points(machine.KIND):
                if point.identifier not in values:
                    continue
                value = values[point.identifier]
                key = (plan.unit_id, point.identifier)
                if self._written.get(key) == value:
                    continue
                if point.table == "coil":
                    await self.server.async_setValues(
                        plan.unit_id, _FC_COILS, point.address, [bool(value)]
                    )
                else:
                    await self.server.async_setValues(
                        plan.unit_id, _FC_HOLDING, point.address, encode_point(point, value)
                    )
                self._written[key] = value
            machine.take_events()  # Modbus has no events

    async def _take_writes(self, unit: int, machine: SimMachine) -> None:
        assert self.server is not None
        changed: dict[str, Any] = {}
        for point in modbus_points(machine.KIND):
            key = (unit, point.identifier)
            if not point.writable or key not in self._written:
                continue
            if point.table == "coil":
                got: Any = bool(
                    (await self.server.async_getValues(unit, _FC_COILS, point.address, 1))[0]
                )
            else:
                regs = await self.server.async_getValues(
                    unit, _FC_HOLDING, point.address, point.registers
                )
                got = decode_point(point, [int(r) for r in regs])
            if got != self._written[key] and not _close(got, self._written[key]):
                changed[point.identifier] = got
        if changed:
            machine.set_properties(changed)

    async def stop(self) -> None:
        """Stop the server."""
        if self.server is not None:
            await self.server.shutdown()  # type: ignore[no-untyped-call]


def _close(a: Any, b: Any) -> bool:
    """Equal as numbers (an int property read back from a register as a float, say)."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return False
