"""The converter: raw machine values <-> thing-model values, per point.

Uplink: ``value = raw * scale + offset``, then cast to the point's type (``int`` rounds to
the nearest integer, ``bool`` is ``value != 0``, ``text`` is ``str``); with no type the
number stays as read (an int stays an int when scale and offset keep it whole). Downlink is
the inverse: ``raw = (value - offset) / scale``; a connector rounds it to its register type.
Readings of bad quality are not converted (the gateway counts them instead).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from qiantang.domain.telemetry import Value
from qiantang.edge.config import DeviceConfig, PointConfig
from qiantang.edge.errors import WriteRefused
from qiantang.edge.model import Quality, Raw, RawReading, Sample

__all__ = ["DeviceConverter", "from_raw", "to_raw"]


def from_raw(point: PointConfig, raw: Raw) -> Raw:
    """A raw reading as the property value."""
    if isinstance(raw, str):
        return raw if point.type in (None, "text") else _number_from_text(point, raw)
    value: int | float = raw
    if point.scale != 1.0 or point.offset != 0.0:
        value = raw * point.scale + point.offset
        if isinstance(raw, int) and float(value).is_integer() and point.type != "float":
            value = int(value)
    return _cast(point, value)


def _number_from_text(point: PointConfig, raw: str) -> Raw:
    try:
        number = float(raw)
    except ValueError as err:
        raise ValueError(f"{point.property}: {raw!r} is not a number") from err
    return _cast(point, number * point.scale + point.offset)


def _cast(point: PointConfig, value: int | float | bool) -> Raw:
    if point.type == "int":
        return round(value)
    if point.type == "float":
        return float(value)
    if point.type == "bool":
        return bool(value)
    if point.type == "text":
        return str(value)
    return value


def to_raw(point: PointConfig, value: Value) -> Raw:
    """A property value, as set from the platform, in the machine's terms."""
    if isinstance(value, str):
        return value
    if not isinstance(value, int | float) or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise WriteRefused(f"params.{point.property}", "expected a number, a bool or a string")
    if isinstance(value, bool):
        return value
    raw = (value - point.offset) / point.scale
    if isinstance(value, int) and point.scale == 1.0 and point.offset == 0.0:
        return value
    return raw


class DeviceConverter:
    """The converter of one sub-device: every point's mapping, both directions."""

    def __init__(self, device: DeviceConfig) -> None:
        self.device = device.key
        self._points = {p.property: p for p in device.points}

    def sample(self, reading: RawReading) -> Sample | None:
        """The sample for a reading; None for bad quality, unknown points or no value."""
        point = self._points.get(reading.point)
        if point is None or reading.quality is Quality.BAD or reading.value is None:
            return None
        return Sample(self.device, reading.point, reading.ts, from_raw(point, reading.value))

    def downlink(self, values: Mapping[str, Value]) -> dict[str, Raw]:
        """Raw values to write for a property set; `WriteRefused` names an unmapped one."""
        out: dict[str, Raw] = {}
        for name, value in values.items():
            point = self._points.get(name)
            if point is None:
                raise WriteRefused(f"params.{name}", "is not mapped to a point of this device")
            out[name] = to_raw(point, value)
        return out
