"""The validation core of the data path: readings of one device -> stored points.

Shared by the MQTT uplink (`alink_uplink.py`) and HTTP ingest. Nothing that fails the
device's compiled thing model is stored; every refusal names the property and the rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from qiantang.domain.errors import FieldError
from qiantang.domain.telemetry import EventRecord, Point, Value
from qiantang.domain.validation import CompiledModel
from qiantang.ports.bus import BusBatch, TelemetryBus
from qiantang.ports.timeseries import TimeSeriesStore
from qiantang.services.models_cache import ModelCache

__all__ = ["Accepted", "IngestCore", "Reading"]

Reading = tuple[str, Value, int]  # (identifier, value, ts ms)
MAX_FUTURE_MS = 86_400_000  # as Alibaba: reports dated more than a day ahead are refused


@dataclass(slots=True)
class Accepted:
    """What one message yielded: points to store and refusals to report."""

    points: list[Point] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)

    def reason(self) -> str:
        """The refusals as one sentence for a reply or a log line."""
        return "; ".join(f"{e.field}: {e.message} ({e.rule})" for e in self.errors[:20])


class IngestCore:
    """Validates readings against compiled models, appends what passes to the store and
    publishes it on the bus (rules, live feed)."""

    def __init__(
        self,
        store: TimeSeriesStore,
        models: ModelCache,
        max_age_ms: int,
        bus: TelemetryBus | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.max_age_ms = max_age_ms
        self.bus = bus

    async def ensure_models(self, product_ids: Iterable[int]) -> None:
        """Compile any model not loaded yet (in a worker thread: it reads the registry)."""
        missing = {p for p in product_ids if self.models.cached(p) is None}
        for product_id in missing:
            await asyncio.to_thread(self.models.load, product_id)

    def properties(
        self, model: CompiledModel | None, device_id: int, readings: Sequence[Reading], now_ms: int
    ) -> Accepted:
        """Validate one device's property readings."""
        out = Accepted()
        if model is None:
            out.errors.append(FieldError("product", "exists", "the device's product is gone"))
            return out
        oldest, newest = now_ms - self.max_age_ms, now_ms + MAX_FUTURE_MS
        chunk: dict[str, tuple[Value, int]] = {}
        for identifier, value, ts in readings:
            if not oldest <= ts <= newest:
                out.errors.append(
                    FieldError(
                        f"{identifier}.time", "time_window", "timestamp outside the allowed window"
                    )
                )
            elif identifier in chunk:  # several readings of one property (history): validate
                self._validate(model, device_id, chunk, out)  # them chunk by chunk
                chunk = {identifier: (value, ts)}
            else:
                chunk[identifier] = (value, ts)
        self._validate(model, device_id, chunk, out)
        return out

    @staticmethod
    def _validate(
        model: CompiledModel, device_id: int, chunk: dict[str, tuple[Value, int]], out: Accepted
    ) -> None:
        if not chunk:
            return
        accepted, errors = model.validate_properties({k: v for k, (v, _) in chunk.items()})
        out.errors.extend(errors)
        out.points.extend(
            Point(ts, device_id, identifier, accepted[identifier])
            for identifier, (_, ts) in chunk.items()
            if identifier in accepted
        )

    def event(
        self,
        model: CompiledModel | None,
        device_id: int,
        identifier: str,
        output: dict[str, Value],
        ts: int,
    ) -> Accepted:
        """Validate one event post."""
        out = Accepted()
        if model is None:
            out.errors.append(FieldError("product", "exists", "the device's product is gone"))
            return out
        accepted, errors = model.validate_event(identifier, output)
        if errors:
            out.errors.extend(errors)
            return out
        event_type = next(e.type for e in model.model.events if e.identifier == identifier)
        out.events.append(EventRecord(ts, device_id, identifier, str(event_type), accepted))
        return out

    async def store_all(self, points: list[Point], events: list[EventRecord]) -> None:
        """Queue everything accepted for the store (which batches and flushes), then publish
        it on the bus. The store comes first: a slow consumer never costs stored data."""
        if points:
            await self.store.append(points)
        if events:
            await self.store.append_events(events)
        if self.bus is not None and (points or events):
            self.bus.publish(BusBatch(points, events))
