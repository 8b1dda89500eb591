"""Telemetry types: what flows from a device into the platform.

Timestamps are int64 milliseconds since the Unix epoch (UTC) everywhere.
Values keep the JSON shape of the thing model's data type: int/float/double -> int or float,
bool -> bool (Alink sends 0/1, the validator normalises to bool), text/date/enum as their
JSON types (date is int ms, enum is int), struct -> dict, array -> list.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec

__all__ = ["EventRecord", "Point", "Value"]

Value: TypeAlias = "int | float | str | bool | list[Value] | dict[str, Value] | None"


class Point(msgspec.Struct, frozen=True):
    """One property value of one device at one instant."""

    ts: int
    device_id: int
    property: str
    value: Value


class EventRecord(msgspec.Struct, frozen=True):
    """One event a device posted (`thing/event/{identifier}/post`)."""

    ts: int
    device_id: int
    identifier: str
    event_type: str
    output: dict[str, Value]
