"""A three-phase multifunction power meter (三相多功能电能表) on a workshop feeder: the load
follows the shift calendar (full on shift, a base load in changeovers and breaks), phases
carry slightly different currents, and energy integrates the active power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from qiantang.sim.machine import ShiftCalendar, SimMachine, clamp

__all__ = ["PowerMeter"]

_NOMINAL_V = 220.0  # phase voltage of a 380 V network


class PowerMeter(SimMachine):
    """One feeder meter; `rated_kw` is the workshop's full-shift load."""

    KIND: ClassVar[str] = "power_meter"
    WRITABLE: ClassVar[Mapping[str, tuple[float, float] | None]] = {"ctRatio": (1, 10000)}
    SLOW: ClassVar[frozenset[str]] = frozenset({"ctRatio"})

    def __init__(
        self,
        seed: int,
        start_ms: int,
        calendar: ShiftCalendar | None = None,
        *,
        rated_kw: float | None = None,
    ) -> None:
        super().__init__(seed, start_ms, calendar)
        rng = self.rng
        self.rated_kw = rated_kw if rated_kw is not None else rng.uniform(80.0, 400.0)
        self.load_share = 0.8
        self.pf = rng.uniform(0.86, 0.95)
        self.phase_share = [rng.uniform(0.95, 1.05) for _ in range(3)]
        self.energy_kwh = rng.uniform(10_000.0, 5_000_000.0)
        self.ct_ratio = rng.choice((100, 200, 300, 400, 600, 800))
        self.volts = [_NOMINAL_V * rng.uniform(0.99, 1.02) for _ in range(3)]
        self._over = [False, False, False]

    @property
    def rated_current(self) -> float:
        """The per-phase current at the rated load and a power factor of 0.9."""
        return self.rated_kw * 1000.0 / (3 * _NOMINAL_V * 0.9)

    def _step(self, dt_s: float) -> None:
        rng = self.rng
        goal = rng.uniform(0.7, 1.0) if self.staffed else 0.3
        self.load_share += (goal - self.load_share) * dt_s / 60.0 + rng.gauss(0.0, 0.005)
        self.load_share = clamp(self.load_share, 0.05, 1.2)
        for i in range(3):
            self.volts[i] += (_NOMINAL_V * 1.005 - self.volts[i]) * dt_s / 300.0
            self.volts[i] += rng.gauss(0.0, 0.15) - 2.0 * (self.load_share - 0.6) * dt_s / 300.0
        self.energy_kwh += self.active_power * dt_s / 3600.0
        for i, current in enumerate(self.currents()):
            over = current > 1.1 * self.rated_current
            if over and not self._over[i]:
                self.emit("overCurrent", phase=i, current=round(current, 2))
            self._over[i] = over

    @property
    def active_power(self) -> float:
        """Total active power, kW."""
        return self.rated_kw * self.load_share

    def currents(self) -> list[float]:
        """Phase currents, A."""
        per_phase = self.active_power * 1000.0 / 3.0
        return [
            per_phase * share / (v * self.pf)
            for share, v in zip(self.phase_share, self.volts, strict=True)
        ]

    def properties(self) -> dict[str, Any]:
        """Voltages, currents, powers, power factor, frequency, energy and unbalance."""
        rng = self.rng
        currents = [c * rng.uniform(0.995, 1.005) for c in self.currents()]
        mean = sum(currents) / 3.0
        unbalance = 100.0 * max(abs(c - mean) for c in currents) / mean if mean > 0 else 0.0
        power = self.active_power * rng.uniform(0.995, 1.005)
        reactive = power * math.tan(math.acos(self.pf))
        return {
            "ua": round(self.volts[0], 1),
            "ub": round(self.volts[1], 1),
            "uc": round(self.volts[2], 1),
            "ia": round(currents[0], 2),
            "ib": round(currents[1], 2),
            "ic": round(currents[2], 2),
            "activePower": round(power, 2),
            "reactivePower": round(reactive, 2),
            "powerFactor": round(self.pf + rng.uniform(-0.003, 0.003), 3),
            "frequency": round(50.0 + rng.gauss(0.0, 0.015), 2),
            "energy": round(self.energy_kwh, 2),
            "currentUnbalance": round(unbalance, 1),
            "ctRatio": self.ct_ratio,
        }
