"""How a machine's scalar properties appear on the wire of its OPC UA or Modbus front-end.

The edge gateway forwards scalar values only (no structs or arrays), so a front-end exposes
the kind's scalar properties: on OPC UA one variable each (``ns=N;s={device}.{property}``),
on Modbus a register map built in thing-model order: bools on coils, enums in one holding
register (uint16), ints in two (int32), floats and doubles in four (float64, so the value
read is the value the model posted), big-endian words. Text properties go to OPC UA only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from qiantang.domain.thingmodel import BoolType, EnumType, NumberType, TextType
from qiantang.sim.catalog import thing_model

__all__ = ["ScalarPoint", "modbus_points", "opcua_points"]

_REGISTERS = {"uint16": 1, "int32": 2, "float64": 4}


@dataclass(frozen=True, slots=True)
class ScalarPoint:
    """One scalar property: `kind` is int, float, double, enum, bool or text; `table`,
    `address` and `data_type` place it in a Modbus map (empty for OPC UA points)."""

    identifier: str
    kind: str
    writable: bool
    table: str = ""
    address: int = 0
    data_type: str = ""
    scale: float = 1.0

    @property
    def registers(self) -> int:
        """Registers (or coils) the point takes."""
        return _REGISTERS.get(self.data_type, 1)


def _scalars(kind: str) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    for prop in thing_model(kind).properties:
        dt = prop.data_type
        if not isinstance(dt, NumberType | EnumType | BoolType | TextType):
            continue
        name: str = dt.type
        out.append((prop.identifier, name, prop.access_mode == "rw"))
    return out


@cache
def opcua_points(kind: str) -> tuple[ScalarPoint, ...]:
    """The kind's scalar properties as OPC UA variables."""
    return tuple(ScalarPoint(i, k, w) for i, k, w in _scalars(kind))


@cache
def modbus_points(kind: str) -> tuple[ScalarPoint, ...]:
    """The kind's scalar properties (text left out) in a Modbus register map."""
    points: list[ScalarPoint] = []
    register, coil = 0, 0
    for identifier, name, writable in _scalars(kind):
        if name == "text":
            continue
        if name == "bool":
            points.append(ScalarPoint(identifier, name, writable, "coil", coil, "bool"))
            coil += 1
            continue
        data_type = {"enum": "uint16", "int": "int32"}.get(name, "float64")
        point = ScalarPoint(identifier, name, writable, "holding_register", register, data_type)
        points.append(point)
        register += point.registers
    return tuple(points)
