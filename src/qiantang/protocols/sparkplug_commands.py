"""What a Sparkplug B host application sends: NCMD/DCMD payloads and its STATE messages.

- `encode_command`: an NCMD or DCMD payload writing metrics by alias or by name (Sparkplug
  3.0: a payload timestamp, no sequence number; where the edge node uses aliases
  the name must be left out, so a `CommandMetric` carries one or the other);
- `encode_rebirth`: the NCMD asking an edge node for a new NBIRTH and DBIRTHs
  (``Node Control/Rebirth`` = true);
- `encode_state` / `decode_state`: the host's retained STATE message on
  ``spBv1.0/STATE/{host_id}``, JSON ``{"online": bool, "timestamp": ms}`` (Sparkplug
  3.0: the same timestamp in the MQTT will, online false, and in the birth after it).

Values are encoded as the inverse of `qiantang.protocols.sparkplug_values`: negative
8/16/32-bit integers sign-extended to 32 bits, 64-bit ones in two's complement, arrays packed
little-endian. Every failure is a `SparkplugError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Final, TypeAlias

import msgspec

from qiantang.protocols import sparkplug_b_pb2 as pb
from qiantang.protocols.sparkplug_topics import SparkplugError
from qiantang.protocols.sparkplug_values import ARRAY_CODES, INT_RANGES, DataType, Wire

__all__ = [
    "DEVICE_REBIRTH",
    "NODE_REBIRTH",
    "CommandMetric",
    "HostState",
    "decode_state",
    "encode_command",
    "encode_rebirth",
    "encode_state",
    "encode_value",
]

NODE_REBIRTH: Final = "Node Control/Rebirth"
DEVICE_REBIRTH: Final = "Device Control/Rebirth"
D = DataType


class CommandMetric(msgspec.Struct, frozen=True):
    """One metric to write: by `alias` or by `name` (exactly one), as `datatype`.
    A `value` of None is sent as an explicit null."""

    datatype: DataType
    value: object
    name: str | None = None
    alias: int | None = None


def encode_command(metrics: Sequence[CommandMetric], timestamp_ms: int) -> bytes:
    """An NCMD or DCMD payload; raises `SparkplugError` naming the first bad metric."""
    if not metrics:
        raise SparkplugError("metrics", "empty", "a command needs at least one metric")
    payload = pb.Payload(timestamp=_u64(timestamp_ms, "timestamp"))
    for i, metric in enumerate(metrics):
        try:
            _fill(payload.metrics.add(), metric, timestamp_ms)
        except SparkplugError as err:
            raise err.prefixed(f"metrics[{i}]") from None
    return payload.SerializeToString()


def encode_rebirth(timestamp_ms: int) -> bytes:
    """The NCMD payload ``Node Control/Rebirth`` = true, by name: a host asks for a rebirth
    exactly when it no longer trusts its alias table."""
    return encode_command([CommandMetric(D.BOOLEAN, True, name=NODE_REBIRTH)], timestamp_ms)


def _u64(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise SparkplugError(field, "range", "must be an unsigned 64-bit integer")
    return value


def _fill(target: pb.Payload.Metric, metric: CommandMetric, timestamp_ms: int) -> None:
    if metric.alias is not None and metric.name is None:
        target.alias = _u64(metric.alias, "alias")
    elif metric.name is not None and metric.alias is None:
        if not metric.name:
            raise SparkplugError("name", "empty", "must not be empty")
        target.name = metric.name
    else:
        raise SparkplugError("name", "name_or_alias", "give exactly one of name and alias")
    target.timestamp = timestamp_ms
    target.datatype = int(metric.datatype)
    if metric.value is None:
        target.is_null = True
        return
    field, wire = encode_value(metric.datatype, metric.value)
    setattr(target, field, wire)


def _encode_int(datatype: DataType, value: object) -> tuple[str, Wire]:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SparkplugError("value", "value_type", f"{datatype.name} needs an int")
    bits, signed = INT_RANGES[datatype]
    low = -(1 << (bits - 1)) if signed else 0
    high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    if not low <= value <= high:
        raise SparkplugError("value", "range", f"{value} is out of range for {datatype.name}")
    if bits == 64:
        return "long_value", value & 0xFFFF_FFFF_FFFF_FFFF
    return "int_value", value & 0xFFFF_FFFF  # negatives sign-extended to 32 bits, as Tahu does


def _encode_float(datatype: DataType, value: object) -> tuple[str, Wire]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SparkplugError("value", "value_type", f"{datatype.name} needs a number")
    return ("float_value" if datatype is D.FLOAT else "double_value"), float(value)


def _encode_bool(datatype: DataType, value: object) -> tuple[str, Wire]:
    if not isinstance(value, bool):
        raise SparkplugError("value", "value_type", f"{datatype.name} needs a bool")
    return "boolean_value", value


def _encode_str(datatype: DataType, value: object) -> tuple[str, Wire]:
    if not isinstance(value, str):
        raise SparkplugError("value", "value_type", f"{datatype.name} needs a str")
    return "string_value", value


def _encode_bytes(datatype: DataType, value: object) -> tuple[str, Wire]:
    if not isinstance(value, bytes):
        raise SparkplugError("value", "value_type", f"{datatype.name} needs bytes")
    return "bytes_value", value


def _encode_datetime(datatype: DataType, value: object) -> tuple[str, Wire]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise SparkplugError("value", "value_type", "DATETIME needs milliseconds since 1970")
    return "long_value", value


def _pack_bools(value: list[object]) -> bytes:
    if any(not isinstance(v, bool) for v in value):
        raise SparkplugError("value", "value_type", "BOOLEAN_ARRAY needs bools")
    bits = bytearray((len(value) + 7) // 8)
    for i, flag in enumerate(value):
        if flag:
            bits[i >> 3] |= 0x80 >> (i & 7)
    return len(value).to_bytes(4, "little") + bytes(bits)


def _pack_strings(value: list[object]) -> bytes:
    if any(not isinstance(v, str) or "\x00" in v for v in value):
        raise SparkplugError("value", "value_type", "STRING_ARRAY needs strings without NUL")
    return b"".join(str(s).encode("utf-8") + b"\x00" for s in value)


def _encode_array(datatype: DataType, value: object) -> tuple[str, Wire]:
    if not isinstance(value, list):
        raise SparkplugError("value", "value_type", f"{datatype.name} needs a list")
    try:
        if datatype is D.BOOLEAN_ARRAY:
            return "bytes_value", _pack_bools(value)
        if datatype is D.STRING_ARRAY:
            return "bytes_value", _pack_strings(value)
        return "bytes_value", struct.pack(f"<{len(value)}{ARRAY_CODES[datatype]}", *value)
    except (struct.error, OverflowError, UnicodeEncodeError) as err:
        raise SparkplugError("value", "value_type", f"not a valid {datatype.name}") from err


_Encoder: TypeAlias = Callable[[DataType, object], tuple[str, Wire]]
_ENCODERS: Final[dict[DataType, _Encoder]] = {
    **dict.fromkeys(INT_RANGES, _encode_int),
    D.FLOAT: _encode_float,
    D.DOUBLE: _encode_float,
    D.BOOLEAN: _encode_bool,
    **dict.fromkeys((D.STRING, D.TEXT, D.UUID), _encode_str),
    **dict.fromkeys((D.BYTES, D.FILE), _encode_bytes),
    D.DATETIME: _encode_datetime,
    **dict.fromkeys((*ARRAY_CODES, D.BOOLEAN_ARRAY, D.STRING_ARRAY), _encode_array),
}


def encode_value(datatype: DataType, value: object) -> tuple[str, Wire]:
    """``(protobuf field, wire value)`` for `value` as `datatype`; raises `SparkplugError`
    if the value does not fit the type (DataSet and Template values are not supported)."""
    encoder = _ENCODERS.get(datatype)
    if encoder is None:
        raise SparkplugError("datatype", "unsupported", f"cannot encode {datatype.name} values")
    return encoder(datatype, value)


class HostState(msgspec.Struct, frozen=True):
    """A host application's STATE: `online` and the session timestamp (UTC ms)."""

    online: bool
    timestamp: int


_STATE_DECODER = msgspec.json.Decoder(HostState)
_STATE_ENCODER = msgspec.json.Encoder()


def encode_state(online: bool, timestamp_ms: int) -> bytes:
    """``{"online": ..., "timestamp": ...}`` as UTF-8 JSON."""
    return _STATE_ENCODER.encode(HostState(online, _u64(timestamp_ms, "timestamp")))


def decode_state(data: bytes) -> HostState:
    """Parse a STATE payload; raises `SparkplugError` if it is not one."""
    try:
        return _STATE_DECODER.decode(data)
    except msgspec.ValidationError as err:
        raise SparkplugError("payload", "state", f"is not a STATE message: {err}") from None
    except msgspec.DecodeError:
        raise SparkplugError("payload", "state", "is not JSON") from None
