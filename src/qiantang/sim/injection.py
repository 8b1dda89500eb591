"""An injection moulding machine (注塑机): barrel zones heated towards their set points, a
moulding cycle of clamp, inject, hold, cool and eject, shots counted, rejects more likely
when the melt or the mould is off temperature.

`machineState`: 0 停机 (heaters off or nobody on shift), 1 手动 (warming up), 3 全自动
(moulding), 4 报警 (a barrel zone over temperature, until it cools).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from qiantang.sim.machine import ShiftCalendar, SimMachine, clamp

__all__ = ["InjectionMoldingMachine"]

AMBIENT_C = 25.0
_PHASES = ("close", "inject", "hold", "cool", "open")
_REASONS = (1, 2, 3, 4, 99)  # 短射, 飞边, 缩痕, 气泡, 其他


class InjectionMoldingMachine(SimMachine):
    """One moulding machine with six barrel zones and one mould."""

    KIND: ClassVar[str] = "injection_molding"
    WRITABLE: ClassVar[Mapping[str, tuple[float, float] | None]] = {
        "heaterOn": None,
        "moldId": None,
    }
    SLOW: ClassVar[frozenset[str]] = frozenset({"moldId", "processParams", "lastMoldChange"})

    def __init__(
        self,
        seed: int,
        start_ms: int,
        calendar: ShiftCalendar | None = None,
        *,
        warm: bool = True,
        reject_rate: float = 0.01,
    ) -> None:
        super().__init__(seed, start_ms, calendar)
        rng = self.rng
        nozzle = rng.choice((200.0, 220.0, 230.0, 240.0))
        self.set_points = [nozzle - 5.0 * (5 - i) for i in range(6)]  # feed zone to nozzle
        self.zones = list(self.set_points) if warm else [AMBIENT_C] * 6
        self.mold_set = rng.uniform(40.0, 70.0)
        self.mold_temp = self.mold_set if warm else AMBIENT_C
        self.oil_temp = 42.0 if warm else AMBIENT_C
        self.peak_pressure = rng.uniform(80.0, 140.0)
        self.hold_pressure = self.peak_pressure * rng.uniform(0.45, 0.6)
        self.clamp_kn = rng.choice((900.0, 1600.0, 2500.0, 3600.0))
        self.durations = {
            "close": 1.5,
            "inject": rng.uniform(0.8, 2.0),
            "hold": rng.uniform(3.0, 6.0),
            "cool": rng.uniform(10.0, 25.0),
            "open": 2.5,
        }
        self.reject_rate = reject_rate
        self.heater_on = True
        self.mold_id = f"M-{rng.randint(100, 999)}"
        self.mold_changed_ms = start_ms - rng.randint(1, 30) * 86_400_000
        self.shot_count = rng.randint(10_000, 2_000_000)
        self.reject_count = int(self.shot_count * reject_rate * rng.uniform(0.5, 1.5))
        self.last_cycle_s = round(sum(self.durations.values()), 2)
        self.phase = "cool"
        self.phase_s = rng.uniform(0.0, self.durations["cool"])
        self.cycle_s = self.phase_s
        self.state = 3 if warm else 0

    # --- dynamics ----------------------------------------------------------------------------
    @property
    def melt_temperature(self) -> float:
        """Melt temperature: the nozzle zone plus shear heating while injecting."""
        shear = 6.0 if self.phase == "inject" else 3.0
        return self.zones[5] + shear

    def _step(self, dt_s: float) -> None:
        self._heat(dt_s)
        overheat = next((i for i, t in enumerate(self.zones) if t > self.set_points[i] + 25), None)
        if overheat is not None:
            if self.state != 4:
                self.emit(
                    "barrelOverheat", zone=overheat + 1, temperature=round(self.zones[overheat], 1)
                )
            self.state = 4
            return
        warm = all(abs(t - s) < 10.0 for t, s in zip(self.zones, self.set_points, strict=True))
        if not self.heater_on or not self.staffed:
            self.state = 0
        elif not warm:
            self.state = 1
        else:
            self.state = 3
            self._mould(dt_s)

    def _heat(self, dt_s: float) -> None:
        rng = self.rng
        for i, target in enumerate(self.set_points):
            goal = target if self.heater_on else AMBIENT_C
            tau = 300.0 if self.heater_on else 1800.0
            self.zones[i] += (goal - self.zones[i]) * dt_s / tau + rng.gauss(0.0, 0.05)
        heat_in = 0.6 if self.state == 3 else 0.0
        self.mold_temp += ((self.mold_set - self.mold_temp) * 0.01 + heat_in * 0.02) * dt_s
        if not self.heater_on:
            self.mold_temp += (AMBIENT_C - self.mold_temp) * dt_s / 1800.0
        oil_goal = 45.0 if self.state == 3 else 32.0
        self.oil_temp += (oil_goal - self.oil_temp) * dt_s / 900.0

    def _mould(self, dt_s: float) -> None:
        self.phase_s += dt_s
        self.cycle_s += dt_s
        if self.phase_s < self.durations[self.phase]:
            return
        self.phase_s = 0.0
        index = _PHASES.index(self.phase)
        if index == len(_PHASES) - 1:
            self._finish_shot()
        self.phase = _PHASES[(index + 1) % len(_PHASES)]

    def _finish_shot(self) -> None:
        self.shot_count += 1
        self.last_cycle_s = round(self.cycle_s, 2)
        self.cycle_s = 0.0
        off = abs(self.melt_temperature - self.set_points[5] - 3.0) + abs(
            self.mold_temp - self.mold_set
        )
        chance = self.reject_rate * (1.0 + (off / 5.0) ** 2)
        if self.rng.random() < chance:
            self.reject_count += 1
            self.emit("qualityReject", shotNumber=self.shot_count, reason=self.rng.choice(_REASONS))

    # --- what it posts -----------------------------------------------------------------------
    def _pressures(self) -> tuple[float, float, float]:
        """(injection pressure, injection speed, screw position) for the current phase."""
        share = self.phase_s / self.durations[self.phase]
        if self.state != 3:
            return 0.0, 0.0, 80.0
        if self.phase == "inject":
            return (
                self.peak_pressure * min(1.0, 0.3 + share),
                120.0 * (1 - share),
                80.0 - 70 * share,
            )
        if self.phase == "hold":
            return self.hold_pressure, 2.0, 10.0 - 2.0 * share
        if self.phase == "cool":
            return 6.0, 0.0, 8.0 + 72.0 * min(1.0, share * 1.6)  # plasticising for the next shot
        return 0.0, 0.0, 80.0

    def properties(self) -> dict[str, Any]:
        """Temperatures, pressures, cycle, counters and state."""
        rng = self.rng
        pressure, speed, screw = self._pressures()
        clamped = self.state == 3 and self.phase != "open"
        return {
            "machineState": self.state,
            "barrelTemperatures": [round(t, 1) for t in self.zones],
            "meltTemperature": round(self.melt_temperature + rng.gauss(0.0, 0.3), 1),
            "moldTemperature": round(self.mold_temp + rng.gauss(0.0, 0.2), 1),
            "injectionPressure": round(clamp(pressure * rng.uniform(0.98, 1.02), 0.0, 250.0), 1),
            "holdingPressure": round(self.hold_pressure, 1),
            "injectionSpeed": round(speed, 1),
            "screwPosition": round(clamp(screw, 0.0, 500.0), 2),
            "clampForce": round(self.clamp_kn if clamped else 0.0),
            "cycleTime": self.last_cycle_s,
            "shotCount": self.shot_count,
            "rejectCount": self.reject_count,
            "heaterOn": self.heater_on,
            "moldId": self.mold_id,
            "oilTemperature": round(self.oil_temp, 1),
            "processParams": {
                "injectionTime": round(self.durations["inject"], 2),
                "holdingTime": round(self.durations["hold"], 2),
                "coolingTime": round(self.durations["cool"], 1),
                "meltTemperature": round(self.set_points[5]),
                "backPressureOn": True,
            },
            "lastMoldChange": self.mold_changed_ms,
        }

    def set_properties(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Heater switch and mould number (a new mould number is a mould change)."""
        taken = super().set_properties(params)
        if "moldId" in taken:
            self.mold_changed_ms = self.now_ms
            self.emit("moldChanged", moldId=self.mold_id, changeTime=self.now_ms)
        return taken

    def call_service(self, identifier: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """`emergencyStop` switches the heaters off; `switchRecipe` is accepted when stopped."""
        if identifier == "emergencyStop":
            self.heater_on = False
            self.state = 0
            return {"result": True}
        if identifier == "switchRecipe":
            ok = self.state != 3
            return {"result": ok, "message": "已切换" if ok else "自动运行中，请先停机"}
        return None
