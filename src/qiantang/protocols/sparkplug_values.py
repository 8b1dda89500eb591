"""Sparkplug B data types and the mapping between wire values and Python values.

Sparkplug 3.0 ("Datatype Details") carries every integer in an unsigned protobuf field
(``int_value``: uint32 for the 8, 16 and 32-bit types, ``long_value``: uint64 for the 64-bit
types and DateTime); negative values travel as two's complement. Decoding accepts both the 32-bit
sign-extended form (what Eclipse Tahu's Java encoder writes) and the narrow form (``0xFF``
for an Int8 of -1), and refuses values outside the type's range. Float values come back as
the shortest decimal that rounds to the same 32-bit float (``12.1``, not
``12.100000381469727``), as Java's ``Float.toString`` shows them.

Arrays travel as ``bytes_value``: packed little-endian values; a BooleanArray is a 4-byte
little-endian count followed by the bits, most significant bit first; a StringArray is a
run of NUL-terminated UTF-8 strings.

Every failure raises `SparkplugError` with field ``value`` or ``datatype`` (callers prefix
the path). The
way back, Python values to wire values, is in `qiantang.protocols.sparkplug_commands`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Final, TypeAlias

import msgspec

from qiantang.protocols.sparkplug_topics import SparkplugError

__all__ = [
    "ARRAY_CODES",
    "INT_RANGES",
    "ArrayValue",
    "DataType",
    "Scalar",
    "ThingType",
    "Wire",
    "basic_datatype",
    "decode_value",
    "float32",
    "metric_datatype",
    "raw_scalar",
    "thing_type",
]

Scalar: TypeAlias = int | float | bool | str
ArrayValue: TypeAlias = list[int] | list[float] | list[bool] | list[str]
Wire: TypeAlias = int | float | bool | str | bytes
"""A raw value as the protobuf ``oneof value`` holds it."""


class DataType(IntEnum):
    """Sparkplug B data types (the ``DataType`` enum of ``sparkplug_b.proto``)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19
    PROPERTYSET = 20
    PROPERTYSET_LIST = 21
    INT8_ARRAY = 22
    INT16_ARRAY = 23
    INT32_ARRAY = 24
    INT64_ARRAY = 25
    UINT8_ARRAY = 26
    UINT16_ARRAY = 27
    UINT32_ARRAY = 28
    UINT64_ARRAY = 29
    FLOAT_ARRAY = 30
    DOUBLE_ARRAY = 31
    BOOLEAN_ARRAY = 32
    STRING_ARRAY = 33
    DATETIME_ARRAY = 34


D = DataType
_METRIC_TYPES: Final[dict[int, DataType]] = {
    d.value: d for d in DataType if d not in (D.UNKNOWN, D.PROPERTYSET, D.PROPERTYSET_LIST)
}
_BASIC_TYPES: Final[dict[int, DataType]] = {d.value: d for d in DataType if 1 <= d <= 14}


def metric_datatype(number: int) -> DataType:
    """The data type a metric declares; raises `SparkplugError` if it is not one a metric
    may have (Unknown, PropertySet and PropertySetList are not)."""
    found = _METRIC_TYPES.get(number)
    if found is None:
        raise SparkplugError("datatype", "datatype", f"{number} is not a metric data type")
    return found


def basic_datatype(number: int) -> DataType:
    """A DataSet column, template parameter or property type (Int8 .. Text)."""
    found = _BASIC_TYPES.get(number)
    if found is None:
        raise SparkplugError("datatype", "datatype", f"{number} is not a basic data type")
    return found


# ---------------------------------------------------------------- wire -> Python

INT_RANGES: Final[dict[DataType, tuple[int, bool]]] = {
    # integer type -> (bits, signed)
    D.INT8: (8, True),
    D.INT16: (16, True),
    D.INT32: (32, True),
    D.INT64: (64, True),
    D.UINT8: (8, False),
    D.UINT16: (16, False),
    D.UINT32: (32, False),
    D.UINT64: (64, False),
}
_F32 = struct.Struct("<f")


def _wrong_field(datatype: DataType, field: str | None) -> SparkplugError:
    return SparkplugError("value", "value_type", f"{datatype.name} cannot travel in {field}")


def _int(datatype: DataType, field: str | None, raw: Wire) -> int:
    if field not in ("int_value", "long_value") or type(raw) is not int:
        raise _wrong_field(datatype, field)
    bits, signed = INT_RANGES[datatype]
    value = raw
    if signed:
        if value >= 1 << 63:
            value -= 1 << 64
        elif field == "int_value" and value >= 1 << 31:
            value -= 1 << 32
        if bits < 64 and 1 << (bits - 1) <= value < 1 << bits:
            value -= 1 << bits
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        low, high = 0, (1 << bits) - 1
    if not low <= value <= high:
        raise SparkplugError("value", "range", f"{value} is out of range for {datatype.name}")
    return value


def float32(value: float) -> float:
    """The shortest decimal that is the same 32-bit float as `value`."""
    if not math.isfinite(value):
        return value
    packed = _F32.pack(value)
    for digits in (6, 7, 8):
        shorter = float(f"{value:.{digits}g}")
        try:
            if _F32.pack(shorter) == packed:
                return shorter
        except OverflowError:
            continue
    return value


def _float(datatype: DataType, field: str | None, raw: Wire) -> float:
    if field == "float_value" and type(raw) is float:
        return float32(raw)
    if field == "double_value" and type(raw) is float:
        return raw
    raise _wrong_field(datatype, field)


def _bool(datatype: DataType, field: str | None, raw: Wire) -> bool:
    if field != "boolean_value" or type(raw) is not bool:
        raise _wrong_field(datatype, field)
    return raw


def _str(datatype: DataType, field: str | None, raw: Wire) -> str:
    if field != "string_value":
        raise _wrong_field(datatype, field)
    if type(raw) is not str:  # the protobuf runtime hands out bytes for invalid UTF-8
        raise SparkplugError("value", "utf8", "is not valid UTF-8")
    return raw


def _datetime(datatype: DataType, field: str | None, raw: Wire) -> int:
    if field not in ("long_value", "int_value") or type(raw) is not int:
        raise _wrong_field(datatype, field)
    return raw


def _bytes(datatype: DataType, field: str | None, raw: Wire) -> bytes:
    if field != "bytes_value" or type(raw) is not bytes:
        raise _wrong_field(datatype, field)
    return raw


ARRAY_CODES: Final[dict[DataType, str]] = {
    # packed array type -> struct format code of one item (little-endian)
    D.INT8_ARRAY: "b",
    D.INT16_ARRAY: "h",
    D.INT32_ARRAY: "i",
    D.INT64_ARRAY: "q",
    D.UINT8_ARRAY: "B",
    D.UINT16_ARRAY: "H",
    D.UINT32_ARRAY: "I",
    D.UINT64_ARRAY: "Q",
    D.FLOAT_ARRAY: "f",
    D.DOUBLE_ARRAY: "d",
    D.DATETIME_ARRAY: "Q",
}


def _packed_array(datatype: DataType, field: str | None, raw: Wire) -> ArrayValue:
    data = _bytes(datatype, field, raw)
    code = ARRAY_CODES[datatype]
    size = struct.calcsize(code)
    if len(data) % size:
        raise SparkplugError(
            "value", "array_length", f"{len(data)} bytes is not a whole number of {code!r} items"
        )
    items = list(struct.unpack(f"<{len(data) // size}{code}", data))
    return [float32(x) for x in items] if datatype is D.FLOAT_ARRAY else items


def _bool_array(datatype: DataType, field: str | None, raw: Wire) -> list[bool]:
    data = _bytes(datatype, field, raw)
    if len(data) < 4:
        raise SparkplugError("value", "array_length", "a BooleanArray starts with a 4-byte count")
    count = int.from_bytes(data[:4], "little")
    if len(data) - 4 != (count + 7) // 8:
        raise SparkplugError(
            "value", "array_length", f"{count} booleans do not fit {len(data) - 4} bytes"
        )
    bits = data[4:]
    return [bool(bits[i >> 3] & (0x80 >> (i & 7))) for i in range(count)]


def _string_array(datatype: DataType, field: str | None, raw: Wire) -> list[str]:
    data = _bytes(datatype, field, raw)
    if data and not data.endswith(b"\x00"):
        raise SparkplugError("value", "array_length", "a StringArray ends with NUL")
    try:
        return [part.decode("utf-8") for part in data.split(b"\x00")[:-1]]
    except UnicodeDecodeError:
        raise SparkplugError("value", "utf8", "is not valid UTF-8") from None


_Decoder: TypeAlias = Callable[[DataType, str | None, Wire], "Scalar | bytes | ArrayValue"]
_DECODERS: Final[dict[DataType, _Decoder]] = {
    **dict.fromkeys(INT_RANGES, _int),
    D.FLOAT: _float,
    D.DOUBLE: _float,
    D.BOOLEAN: _bool,
    D.STRING: _str,
    D.TEXT: _str,
    D.UUID: _str,
    D.DATETIME: _datetime,
    D.BYTES: _bytes,
    D.FILE: _bytes,
    **dict.fromkeys(ARRAY_CODES, _packed_array),
    D.BOOLEAN_ARRAY: _bool_array,
    D.STRING_ARRAY: _string_array,
}


def decode_value(datatype: DataType, field: str | None, raw: Wire) -> Scalar | bytes | ArrayValue:
    """The Python value of `raw`, which arrived in protobuf field `field`, as `datatype`.

    DataSet and Template values are messages, not wire scalars; they are decoded by
    `qiantang.protocols.sparkplug_payload`.
    """
    decoder = _DECODERS.get(datatype)
    if decoder is None:
        raise SparkplugError("value", "value_type", f"{datatype.name} is not a scalar type")
    return decoder(datatype, field, raw)


def raw_scalar(field: str | None, raw: Wire) -> Wire:
    """A wire value decoded without a data type: checked for UTF-8, otherwise as it is."""
    if field == "string_value" and type(raw) is not str:
        raise SparkplugError("value", "utf8", "is not valid UTF-8")
    return raw


# ---------------------------------------------------------------- thing-model mapping


class ThingType(msgspec.Struct, frozen=True):
    """The thing-model data type a Sparkplug type maps to: `type` is one of ``int``,
    ``float``, ``double``, ``bool``, ``text``, ``date`` or ``array`` (then `item` is the
    item type)."""

    type: str
    item: str | None = None


_THING_TYPES: Final[Mapping[DataType, ThingType]] = {
    **dict.fromkeys(INT_RANGES, ThingType("int")),
    D.FLOAT: ThingType("float"),
    D.DOUBLE: ThingType("double"),
    D.BOOLEAN: ThingType("bool"),
    **dict.fromkeys((D.STRING, D.TEXT, D.UUID), ThingType("text")),
    D.DATETIME: ThingType("date"),
    **dict.fromkeys(
        (D.INT8_ARRAY, D.INT16_ARRAY, D.INT32_ARRAY, D.INT64_ARRAY),
        ThingType("array", "int"),
    ),
    **dict.fromkeys(
        (D.UINT8_ARRAY, D.UINT16_ARRAY, D.UINT32_ARRAY, D.UINT64_ARRAY),
        ThingType("array", "int"),
    ),
    D.FLOAT_ARRAY: ThingType("array", "float"),
    D.DOUBLE_ARRAY: ThingType("array", "double"),
    D.STRING_ARRAY: ThingType("array", "text"),
}


def thing_type(datatype: DataType) -> ThingType | None:
    """The thing-model type for `datatype`, or None where the thing model has none
    (Bytes, File, DataSet, Template, BooleanArray, DateTimeArray).

    UInt64 maps to ``int``, whose range is 64-bit signed: values above 2**63 - 1 will be
    refused by the thing-model validator.
    """
    return _THING_TYPES.get(datatype)
