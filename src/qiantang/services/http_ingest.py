"""HTTP ingest for scripts and gateways: one device's Alink-style post, a bulk JSON body of
many devices' readings, and InfluxDB line protocol (measurement = product key, tag
``device`` = device name, fields = properties). The same validation as MQTT, with an error
per refused point or line; everything valid is stored."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import FieldError, InvalidInput
from qiantang.domain.telemetry import Point
from qiantang.protocols.line_protocol import LinePoint
from qiantang.registry.tables import Device, Product
from qiantang.services.ingest import IngestCore, Reading

__all__ = [
    "BulkEntry",
    "DeviceRef",
    "IngestReport",
    "decode_bulk",
    "entries_from_lines",
    "ingest_entries",
    "writable_devices",
]

MAX_ERRORS = 1000


class BulkEntry(msgspec.Struct, frozen=True):
    """One device's readings at one instant (`ts` ms; default: the time of receipt)."""

    product_key: str
    device_name: str
    properties: dict[str, Any]
    ts: int | None = None


_BULK = msgspec.json.Decoder(list[BulkEntry])


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """What ingest needs to know about a device."""

    device_id: int
    product_id: int
    enterprise_id: int
    enabled: bool


@dataclass(slots=True)
class IngestReport:
    """Accepted point count and the refusals (capped at `MAX_ERRORS`)."""

    accepted: int = 0
    rejected: int = 0
    errors: list[dict[str, object]] = field(default_factory=list)

    def refuse(self, where: int, error: FieldError) -> None:
        """Count a refusal; keep its detail while under the cap."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"index": where, **error.as_dict()})


def decode_bulk(body: bytes) -> list[BulkEntry]:
    """Decode a bulk JSON body (an array of entries)."""
    try:
        return _BULK.decode(body)
    except msgspec.DecodeError as err:
        raise InvalidInput.of("body", "bulk_format", f"not a bulk ingest body: {err}") from err


def entries_from_lines(points: Sequence[LinePoint]) -> list[BulkEntry]:
    """Line-protocol points as bulk entries (a missing ``device`` tag leaves it empty)."""
    return [
        BulkEntry(p.measurement, p.tags.get("device", ""), dict(p.fields), p.ts_ms) for p in points
    ]


def writable_devices(
    db: Session, who: Principal, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], DeviceRef]:
    """The devices named by (product key, device name) that `who` may write for."""
    wanted = list(set(keys))
    found: dict[tuple[str, str], DeviceRef] = {}
    for chunk_start in range(0, len(wanted), 500):
        chunk = wanted[chunk_start : chunk_start + 500]
        rows = db.execute(
            select(Product.product_key, Device.device_name, Device.id, Product.id)
            .join(Product, Product.id == Device.product_id)
            .add_columns(Device.enterprise_id, Device.enabled)
            .where(tuple_(Product.product_key, Device.device_name).in_(chunk))
        )
        for pk, dn, device_id, product_id, enterprise_id, enabled in rows:
            if who.writes_in(enterprise_id):
                found[(pk, dn)] = DeviceRef(device_id, product_id, enterprise_id, enabled)
    return found


async def ingest_entries(
    core: IngestCore,
    entries: Sequence[BulkEntry],
    devices: dict[tuple[str, str], DeviceRef],
    now_ms: int,
    line_numbers: Sequence[int] | None = None,
) -> IngestReport:
    """Validate every entry against its device's model and store what passes."""
    await core.ensure_models({d.product_id for d in devices.values()})
    report = IngestReport()
    points: list[Point] = []
    for i, entry in enumerate(entries):
        where = line_numbers[i] if line_numbers is not None else i
        ref = devices.get((entry.product_key, entry.device_name))
        if ref is None or not ref.enabled:
            report.refuse(where, FieldError("device", "exists", "no such device for this key"))
            continue
        ts = entry.ts if entry.ts is not None else now_ms
        readings: list[Reading] = [(k, v, ts) for k, v in entry.properties.items()]
        result = core.properties(
            core.models.cached(ref.product_id), ref.device_id, readings, now_ms
        )
        points.extend(result.points)
        for error in result.errors:
            report.refuse(where, error)
    report.accepted = len(points)
    await core.store_all(points, [])
    return report
