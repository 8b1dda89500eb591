"""The simulated machine kinds: their model class, thing model (TSL JSON shipped in
`qiantang/sim/tsl/`), product name and device-name prefix.

`build_machine` makes a model for one device of a demo plan. A device flagged `faulty` is
the demo's show case: a compressor whose bearing fault starts within two minutes and trips
it within about ten, or a CNC whose tool is close to worn out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from qiantang.domain.thingmodel import ThingModel
from qiantang.protocols.tsl import import_tsl
from qiantang.sim.cnc import CncMachine
from qiantang.sim.compressor import AirCompressor, BearingFault
from qiantang.sim.injection import InjectionMoldingMachine
from qiantang.sim.loom import Loom
from qiantang.sim.machine import SimMachine
from qiantang.sim.power_meter import PowerMeter

__all__ = ["KINDS", "MachineKind", "build_machine", "load_tsl", "thing_model"]


@dataclass(frozen=True, slots=True)
class MachineKind:
    """One kind of simulated machine."""

    kind: str
    product_name: str
    prefix: str
    model: type[SimMachine]


KINDS: dict[str, MachineKind] = {
    k.kind: k
    for k in (
        MachineKind("cnc_machine", "立式加工中心", "CNC", CncMachine),
        MachineKind("injection_molding", "精密注塑机", "IMM", InjectionMoldingMachine),
        MachineKind("air_compressor", "螺杆空压机", "CMP", AirCompressor),
        MachineKind("loom", "喷气织机", "LOOM", Loom),
        MachineKind("power_meter", "三相多功能电能表", "PM", PowerMeter),
    )
}


@cache
def _tsl_text(kind: str) -> str:
    if kind not in KINDS:
        raise KeyError(f"no simulated machine kind {kind!r}")
    return (resources.files("qiantang.sim") / "tsl" / f"{kind}.json").read_text(encoding="utf-8")


def load_tsl(kind: str) -> dict[str, Any]:
    """The kind's TSL JSON document (a fresh copy)."""
    doc: dict[str, Any] = json.loads(_tsl_text(kind))
    return doc


@cache
def thing_model(kind: str) -> ThingModel:
    """The kind's thing model."""
    return import_tsl(load_tsl(kind)).model


def build_machine(kind: str, seed: int, start_ms: int, *, faulty: bool = False) -> SimMachine:
    """A model of `kind` seeded by `seed` whose clock starts at `start_ms`."""
    spec = KINDS[kind]
    if spec.model is AirCompressor and faulty:
        # onset 30-120 s, vibration alarm about 3-6 min later, trip at 4-9 min
        onset = 30.0 + seed % 90
        return AirCompressor(seed, start_ms, fault=BearingFault(onset, 240.0 + seed % 180))
    if spec.model is CncMachine and faulty:
        return CncMachine(seed, start_ms, initial_wear=80.0 + seed % 10, tool_life_s=900.0)
    return spec.model(seed, start_ms)
