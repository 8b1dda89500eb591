"""InfluxDB line protocol decoder for HTTP ingest.

Why our own: the pure-Python parsers on PyPI do not fit. ``pyilpp`` is a 0.1 pyparsing
grammar, unmaintained and slow; ``influx-line-protocol`` and ``influx-line`` only build lines;
``line-protocol-parser`` is maintained but a C extension that parses one line at a time and
raises on the first error, so it is not the pure-Python, per-line-error decoder wanted here.

Syntax (InfluxDB v2 "Line protocol" reference)::

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

- Escapes: in measurements ``\\,`` ``\\ `` and ``\\\\``; in tag keys, tag values and field keys
  also ``\\=``. A backslash before any other character stays a literal backslash. In string
  field values ``\\"`` and ``\\\\``, other backslashes literal.
- Field values: float (``1``, ``-1.5``, ``1e-3``), integer ``1i`` (signed 64 bit), unsigned
  ``1u`` (unsigned 64 bit), string ``"..."`` (at most 64 KiB), boolean ``t T true True TRUE``
  / ``f F false False FALSE``. Non-finite floats are refused.
- Timestamp: an integer in the given precision, converted to int milliseconds (floor); absent,
  `now_ms` is used. Lines are split on ``\\n`` (a ``\\r`` before it is dropped); blank lines and
  ``#`` comments are skipped.
- Names (measurement, tag keys, field keys) may not begin with ``_`` (reserved by InfluxDB),
  tag values may not be empty, and a key may not repeat within its set.

A bad line becomes ``(line_number, FieldError)`` in `LineBatch.errors` (1-based line numbers);
the other lines are still accepted.
"""

from __future__ import annotations

import math
import re
from typing import Final, Literal, TypeAlias

import msgspec

from qiantang.domain.errors import FieldError, InvalidInput

__all__ = ["FieldValue", "LineBatch", "LinePoint", "Precision", "decode_lines"]

FieldValue: TypeAlias = int | float | str | bool
Precision: TypeAlias = Literal["ns", "us", "ms", "s"]

_MEASUREMENT = re.compile(r"(?:[^\\, ]|\\.)+")
_KEY = re.compile(r"(?:[^\\,= ]|\\.)+")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_BARE = re.compile(r"[^, ]+")
_SPACES = re.compile(r" +")
_TIMESTAMP = re.compile(r"-?[0-9]{1,19} *")
_INTEGER = re.compile(r"-?[0-9]+i")
_UNSIGNED = re.compile(r"[0-9]+u")
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_NAME_UNESCAPE = re.compile(r"\\([, \\])")
_KEY_UNESCAPE = re.compile(r"\\([,= \\])")
_STRING_UNESCAPE = re.compile(r'\\(["\\])')
_BOOLS: Final[dict[str, bool]] = {
    **dict.fromkeys(("t", "T", "true", "True", "TRUE"), True),
    **dict.fromkeys(("f", "F", "false", "False", "FALSE"), False),
}
_TO_MS: Final[dict[str, tuple[int, int]]] = {  # precision -> (multiply, floor-divide)
    "ns": (1, 1_000_000),
    "us": (1, 1_000),
    "ms": (1, 1),
    "s": (1_000, 1),
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
_MAX_STRING = 65_536


class LinePoint(msgspec.Struct, frozen=True):
    """One accepted line: `ts_ms` in int milliseconds, `line` its 1-based line number."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts_ms: int
    line: int


class LineBatch(msgspec.Struct, frozen=True):
    """The accepted points and, for every rejected line, its number and the broken rule."""

    points: list[LinePoint]
    errors: list[tuple[int, FieldError]]


class _LineError(Exception):
    def __init__(self, field: str, rule: str, message: str) -> None:
        self.error = FieldError(field, rule, message)


def _unescape(pattern: re.Pattern[str], raw: str) -> str:
    return pattern.sub(r"\1", raw) if "\\" in raw else raw


def _name(raw: str, field: str) -> str:
    if raw.startswith("_"):
        raise _LineError(field, "reserved_name", f"{raw[:64]!r} begins with '_'")
    return raw


def _key(line: str, pos: int, field: str, what: str) -> tuple[str, int]:
    found = _KEY.match(line, pos)
    if found is None:
        raise _LineError(field, "syntax", f"expected {what} at column {pos + 1}")
    return _unescape(_KEY_UNESCAPE, found.group()), found.end()


def _expect(line: str, pos: int, char: str, field: str) -> int:
    if line.startswith(char, pos):
        return pos + 1
    raise _LineError(field, "syntax", f"expected {char!r} at column {pos + 1}")


def _tags(line: str, pos: int) -> tuple[dict[str, str], int]:
    tags: dict[str, str] = {}
    while line.startswith(",", pos):
        key, pos = _key(line, pos + 1, "tags", "a tag key")
        field = f"tags.{key[:64]}"
        pos = _expect(line, pos, "=", field)
        value, pos = _key(line, pos, field, "a non-empty tag value")
        if key in tags:
            raise _LineError(field, "duplicate", "tag key appears twice")
        tags[_name(key, field)] = value
    return tags, pos


def _integer(raw: str, field: str, low: int, high: int) -> int:
    value = int(raw[:-1]) if len(raw) <= 22 else high + 1  # no 4000-digit int() calls
    if not low <= value <= high:
        raise _LineError(field, "range", f"integer outside {low}..{high}")
    return value


def _number(raw: str, field: str) -> FieldValue:
    if raw[-1] == "i" and _INTEGER.fullmatch(raw):
        return _integer(raw, field, _INT64_MIN, _INT64_MAX)
    if raw[-1] == "u" and _UNSIGNED.fullmatch(raw):
        return _integer(raw, field, 0, _UINT64_MAX)
    if _FLOAT.fullmatch(raw) is None:
        raise _LineError(field, "type", f"{raw[:64]!r} is not a float, integer or boolean")
    number = float(raw)
    if not math.isfinite(number):
        raise _LineError(field, "finite", "float must be finite")
    return number


def _field_value(line: str, pos: int, field: str) -> tuple[FieldValue, int]:
    if line.startswith('"', pos):
        found = _STRING.match(line, pos)
        if found is None:
            raise _LineError(field, "syntax", "unterminated string")
        text = _unescape(_STRING_UNESCAPE, found.group(1))
        if len(text.encode("utf-8", "surrogatepass")) > _MAX_STRING:
            raise _LineError(field, "too_long", "string longer than 64 KiB")
        return text, found.end()
    found = _BARE.match(line, pos)
    if found is None:
        raise _LineError(field, "syntax", f"expected a field value at column {pos + 1}")
    raw = found.group()
    boolean = _BOOLS.get(raw)
    return (boolean if boolean is not None else _number(raw, field)), found.end()


def _fields(line: str, pos: int) -> tuple[dict[str, FieldValue], int]:
    fields: dict[str, FieldValue] = {}
    while True:
        key, pos = _key(line, pos, "fields", "a field key")
        field = f"fields.{key[:64]}"
        pos = _expect(line, pos, "=", field)
        value, pos = _field_value(line, pos, field)
        if key in fields:
            raise _LineError(field, "duplicate", "field key appears twice")
        fields[_name(key, field)] = value
        if not line.startswith(",", pos):
            return fields, pos
        pos += 1


def _timestamp(line: str, pos: int, precision: str, now_ms: int) -> int:
    if pos == len(line):
        return now_ms
    found = _TIMESTAMP.fullmatch(line, pos)
    if found is None:
        raise _LineError("timestamp", "syntax", f"expected an integer at column {pos + 1}")
    raw = int(line[pos:].rstrip(" "))
    if not _INT64_MIN <= raw <= _INT64_MAX:
        raise _LineError("timestamp", "range", "outside the signed 64-bit range")
    multiply, divide = _TO_MS[precision]
    ts = raw * multiply // divide
    if not _INT64_MIN <= ts <= _INT64_MAX:
        raise _LineError("timestamp", "range", "outside the 64-bit millisecond range")
    return ts


def _parse_line(line: str, start: int, number: int, precision: str, now_ms: int) -> LinePoint:
    found = _MEASUREMENT.match(line, start)
    if found is None:
        raise _LineError("measurement", "required", "line must start with a measurement")
    measurement = _name(_unescape(_NAME_UNESCAPE, found.group()), "measurement")
    tags, pos = _tags(line, found.end())
    spaces = _SPACES.match(line, pos)
    if spaces is None:
        raise _LineError("fields", "syntax", f"expected a space at column {pos + 1}")
    fields, pos = _fields(line, spaces.end())
    spaces = _SPACES.match(line, pos)
    if spaces is not None:
        pos = spaces.end()
    elif pos != len(line):
        raise _LineError("fields", "syntax", f"unexpected {line[pos]!r} at column {pos + 1}")
    ts = _timestamp(line, pos, precision, now_ms)
    return LinePoint(measurement, tags, fields, ts, number)


def _fast_tags(items: list[str]) -> dict[str, str] | None:
    tags: dict[str, str] = {}
    for item in items:
        key, _, raw = item.partition("=")
        if not key or not raw or key[0] == "_" or key in tags or "=" in raw:
            return None
        tags[key] = raw
    return tags


def _fast_fields(items: list[str]) -> dict[str, FieldValue] | None:
    fields: dict[str, FieldValue] = {}
    for item in items:
        key, _, raw = item.partition("=")
        if not key or not raw or key[0] == "_" or key in fields or "=" in raw:
            return None
        boolean = _BOOLS.get(raw)
        try:
            fields[key] = boolean if boolean is not None else _number(raw, "")
        except _LineError:
            return None
    return fields


def _fast_line(line: str, start: int, number: int, precision: str, now_ms: int) -> LinePoint | None:
    """Plain lines (no escapes, no strings) by `str.split`; None means "use the full parser"."""
    parts = line[start:].split(" ")
    if len(parts) not in (2, 3) or "\\" in line or '"' in line:
        return None
    head = parts[0].split(",")
    tags = _fast_tags(head[1:])
    fields = _fast_fields(parts[1].split(","))
    if tags is None or fields is None or not head[0] or head[0][0] == "_":
        return None
    try:
        ts = now_ms if len(parts) == 2 else _timestamp(parts[2], 0, precision, now_ms)
    except _LineError:
        return None
    return LinePoint(head[0], tags, fields, ts, number)


def _lines(body: bytes | str) -> list[str | None]:
    """Split into lines; a line that is not valid UTF-8 becomes None."""
    if isinstance(body, str):
        return [_clean(line) for line in body.split("\n")]
    try:
        return [_clean(line) for line in body.decode("utf-8").split("\n")]
    except UnicodeDecodeError:
        pass
    out: list[str | None] = []
    for raw in body.split(b"\n"):
        try:
            out.append(_clean(raw.decode("utf-8")))
        except UnicodeDecodeError:
            out.append(None)
    return out


def _clean(line: str) -> str | None:
    if line.isascii():
        return line[:-1] if line.endswith("\r") else line
    try:
        line.encode("utf-8")  # a str may carry lone surrogates
    except UnicodeEncodeError:
        return None
    return line[:-1] if line.endswith("\r") else line


def decode_lines(body: bytes | str, precision: Precision = "ns", *, now_ms: int) -> LineBatch:
    """Decode a line-protocol body; bad lines are reported, good ones kept.

    `precision` is the unit of the timestamps in `body`; anything else raises `InvalidInput`
    (field ``precision``) since it concerns the whole request, not a line.
    """
    if precision not in _TO_MS:
        raise InvalidInput.of("precision", "enum", "must be one of ns, us, ms, s")
    points: list[LinePoint] = []
    errors: list[tuple[int, FieldError]] = []
    for number, line in enumerate(_lines(body), start=1):
        if line is None:
            errors.append((number, FieldError("line", "encoding", "is not valid UTF-8")))
            continue
        start = len(line) - len(line.lstrip(" \t"))
        if start == len(line) or line[start] == "#":
            continue
        point = _fast_line(line, start, number, precision, now_ms)
        if point is not None:
            points.append(point)
            continue
        try:
            points.append(_parse_line(line, start, number, precision, now_ms))
        except _LineError as bad:
            errors.append((number, bad.error))
    return LineBatch(points, errors)
