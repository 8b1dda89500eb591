"""MQTT 5 wire data types (OASIS MQTT 5.0 §1.5, §2.2.2): variable byte integers,
strings, binary data and property blocks, read with a bounds check on every step;
every overrun or bad value is an `Mqtt5Error` carrying the reason code to send."""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "MALFORMED",
    "MQTT5_LEVEL",
    "PROTOCOL_ERROR",
    "USER_PROPERTY",
    "Mqtt5Error",
    "Properties",
    "WireBuffer",
    "connect_level",
    "encode_packet",
    "string",
    "varint",
]

MQTT5_LEVEL: Final = 5
MALFORMED: Final = 0x81
PROTOCOL_ERROR: Final = 0x82
# property id -> wire type: b byte, h two-byte int, i four-byte int, v varint,
# s UTF-8 string, d binary data, p string pair (MQTT 5 §2.2.2.2)
_PROPERTY_TYPES: Final = {
    0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "d", 0x0B: "v", 0x11: "i", 0x12: "s",
    0x13: "h", 0x15: "s", 0x16: "d", 0x17: "b", 0x18: "i", 0x19: "b", 0x1A: "s", 0x1C: "s",
    0x1F: "s", 0x21: "h", 0x22: "h", 0x23: "h", 0x24: "b", 0x25: "b", 0x26: "p", 0x27: "i",
    0x28: "b", 0x29: "b", 0x2A: "b",
}  # fmt: skip
USER_PROPERTY: Final = 0x26

Properties = dict[int, int | bytes]


class Mqtt5Error(Exception):
    """A packet the connection cannot go on after; `code` is the MQTT 5 reason code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(f"{message} (reason 0x{code:02X})")


def varint(n: int) -> bytes:
    """A variable byte integer (§1.5.5)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_packet(header: int, body: bytes) -> bytes:
    """A whole packet: the first byte, the remaining length, the body."""
    return bytes((header,)) + varint(len(body)) + body


class WireBuffer:
    """Reads MQTT data types from a packet body; every overrun is a malformed packet."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        """The next `n` bytes."""
        end = self.pos + n
        if end > len(self.data):
            raise Mqtt5Error(MALFORMED, "packet shorter than its contents")
        chunk, self.pos = self.data[self.pos : end], end
        return chunk

    def byte(self) -> int:
        """One byte."""
        return self.take(1)[0]

    def int16(self) -> int:
        """A two-byte integer."""
        return int(struct.unpack("!H", self.take(2))[0])

    def int32(self) -> int:
        """A four-byte integer."""
        return int(struct.unpack("!I", self.take(4))[0])

    def varint(self) -> int:
        """A variable byte integer of at most 4 bytes."""
        value = 0
        for shift in range(0, 28, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise Mqtt5Error(MALFORMED, "variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        """Binary data: a two-byte length, then the bytes."""
        return self.take(self.int16())

    def string(self) -> bytes:
        """A UTF-8 string (well-formed, no U+0000), as its bytes."""
        raw = self.binary()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise Mqtt5Error(MALFORMED, "string is not UTF-8") from err
        if b"\x00" in raw:
            raise Mqtt5Error(MALFORMED, "string contains U+0000")
        return raw

    def rest(self) -> bytes:
        """Everything after the cursor."""
        chunk, self.pos = self.data[self.pos :], len(self.data)
        return chunk

    def properties(self, allowed: frozenset[int]) -> Properties:
        """The property block at the cursor: each id once (user properties excepted)."""
        length = self.varint()
        block = WireBuffer(self.take(length))
        found: Properties = {}
        while block.pos < len(block.data):
            pid = block.varint()
            kind = _PROPERTY_TYPES.get(pid)
            if kind is None:
                raise Mqtt5Error(MALFORMED, f"unknown property 0x{pid:02X}")
            if pid not in allowed:
                raise Mqtt5Error(PROTOCOL_ERROR, f"property 0x{pid:02X} is not allowed here")
            value = _read_value(block, kind)
            if pid != USER_PROPERTY:
                if pid in found:
                    raise Mqtt5Error(PROTOCOL_ERROR, f"property 0x{pid:02X} given twice")
                found[pid] = value
        return found


def _read_value(block: WireBuffer, kind: str) -> int | bytes:
    if kind == "b":
        return block.byte()
    if kind == "h":
        return block.int16()
    if kind == "i":
        return block.int32()
    if kind == "v":
        return block.varint()
    if kind == "p":
        return block.string() + b"\x00" + block.string()
    return block.string() if kind == "s" else block.binary()


def string(raw: bytes) -> bytes:
    """`raw` with its two-byte length in front (a string or binary data)."""
    return struct.pack("!H", len(raw)) + raw


def connect_level(body: bytes) -> int | None:
    """The protocol level of a CONNECT body (None when it does not look like one)."""
    buf = WireBuffer(body)
    try:
        name = buf.binary()
        level = buf.byte()
    except Mqtt5Error:
        return None
    return level if name in (b"MQTT", b"MQIsdp") else None
