"""Modbus data, pure: register words <-> typed values, and block reads that merge
neighbouring points.

Registers are 16-bit words. ``byte_order`` is the order of the two bytes inside a word (big:
``AB``, the Modbus norm; little: ``BA``); ``word_order`` the order of the words of a 32- or
64-bit value (big: most significant word first). Strings are packed two characters per
register in byte order, padding (NUL and trailing spaces) stripped.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "BIT_TABLES",
    "MAX_BITS_PER_READ",
    "MAX_REGISTERS_PER_READ",
    "Block",
    "DataType",
    "Order",
    "Span",
    "Table",
    "decode",
    "encode",
    "plan_blocks",
    "register_count",
]

DataType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool", "string"
]
Order = Literal["big", "little"]
Table = Literal["coil", "discrete_input", "holding_register", "input_register"]
BIT_TABLES: Final = frozenset(("coil", "discrete_input"))
MAX_REGISTERS_PER_READ: Final = 125
MAX_BITS_PER_READ: Final = 2000
_FORMATS: Final = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


def register_count(data_type: DataType, length: int = 1) -> int:
    """How many registers a value takes (`length` is the register count of a string)."""
    if data_type == "string":
        return length
    if data_type == "bool":
        return 1
    return struct.calcsize(_FORMATS[data_type]) // 2


def _to_bytes(words: Sequence[int], byte_order: Order, word_order: Order) -> bytes:
    ordered = list(words) if word_order == "big" else list(reversed(words))
    fmt = ">" if byte_order == "big" else "<"
    return b"".join(struct.pack(f"{fmt}H", w & 0xFFFF) for w in ordered)


def _to_words(data: bytes, byte_order: Order, word_order: Order) -> list[int]:
    fmt = ">" if byte_order == "big" else "<"
    words = [struct.unpack(f"{fmt}H", data[i : i + 2])[0] for i in range(0, len(data), 2)]
    return words if word_order == "big" else list(reversed(words))


def decode(
    words: Sequence[int],
    data_type: DataType,
    byte_order: Order = "big",
    word_order: Order = "big",
    bit: int | None = None,
) -> int | float | bool | str:
    """The value held by `words` (exactly `register_count` of them)."""
    if data_type == "bool":
        return bool(words[0] >> bit & 1) if bit is not None else words[0] != 0
    if data_type == "string":
        data = b"".join(_to_bytes([w], byte_order, "big") for w in words)
        return data.rstrip(b"\x00 ").decode("utf-8", errors="replace")
    data = _to_bytes(words, byte_order, word_order)
    value: int | float = struct.unpack(f">{_FORMATS[data_type]}", data)[0]
    return value


def encode(
    value: int | float | bool | str,
    data_type: DataType,
    byte_order: Order = "big",
    word_order: Order = "big",
    length: int = 1,
) -> list[int]:
    """The registers that hold `value`; `ValueError` when it does not fit the type."""
    if data_type == "bool":
        return [1 if value else 0]
    if data_type == "string":
        data = str(value).encode("utf-8")
        if len(data) > 2 * length:
            raise ValueError(f"{len(data)} bytes do not fit {length} registers")
        data = data.ljust(2 * length, b"\x00")
        return [_to_words(data[i : i + 2], byte_order, "big")[0] for i in range(0, len(data), 2)]
    if isinstance(value, str):
        raise ValueError(f"a {data_type} register needs a number")
    fmt = _FORMATS[data_type]
    number: int | float = float(value) if fmt in "fd" else round(value)
    try:
        data = struct.pack(f">{fmt}", number)
    except struct.error as err:
        raise ValueError(f"{value!r} does not fit {data_type}") from err
    return _to_words(data, byte_order, word_order)


@dataclass(frozen=True, slots=True)
class Span:
    """Where one point lives: its table, first address and register (or bit) count."""

    key: str
    table: Table
    address: int
    count: int


@dataclass(slots=True)
class Block:
    """One read request covering several points."""

    table: Table
    address: int
    count: int
    spans: list[Span] = field(default_factory=list)

    def words(self, values: Sequence[int], span: Span) -> list[int]:
        """The slice of a block read that belongs to `span`."""
        start = span.address - self.address
        return list(values[start : start + span.count])


def plan_blocks(spans: Sequence[Span], max_gap: int = 0) -> list[Block]:
    """Merge points of the same table into as few reads as the protocol allows: neighbours
    whose gap is at most `max_gap` registers (bits) share a read, up to 125 registers or
    2000 bits per read. Points are never split."""
    blocks: list[Block] = []
    for table in ("coil", "discrete_input", "holding_register", "input_register"):
        limit = MAX_BITS_PER_READ if table in BIT_TABLES else MAX_REGISTERS_PER_READ
        current: Block | None = None
        for span in sorted((s for s in spans if s.table == table), key=lambda s: s.address):
            end = span.address + span.count
            if (
                current is not None
                and span.address - (current.address + current.count) <= max_gap
                and max(end, current.address + current.count) - current.address <= limit
            ):
                current.count = max(end, current.address + current.count) - current.address
                current.spans.append(span)
                continue
            current = Block(span.table, span.address, span.count, [span])
            blocks.append(current)
    return blocks
