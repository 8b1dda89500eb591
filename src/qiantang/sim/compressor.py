"""A screw air compressor (螺杆空压机) feeding an air receiver: it loads until the discharge
pressure reaches the unload set point, runs unloaded until it falls to the load set point
(0.6-0.9 MPa), and stops to standby after a long unloaded spell. Power, current, flow and
specific power follow the load state; a bearing fault, once it starts, grows exponentially,
raising vibration and bearing temperature until the machine trips.

`runState`: 0 停机 (stopped remotely), 1 加载运行, 2 空载运行, 3 故障停机, 4 待机.
Vibration is a velocity RMS in mm/s: about 2 when healthy; `VIBRATION_ALARM` (7.1 mm/s, the
zone C/D boundary of ISO 10816-3 for medium machines on rigid foundations) is crossed at a
fault severity of about 0.5, and the machine trips at severity 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from qiantang.sim.machine import ShiftCalendar, SimMachine, clamp

__all__ = ["VIBRATION_ALARM", "AirCompressor", "BearingFault"]

VIBRATION_ALARM = 7.1
_RATINGS = ((37.0, 5.8), (55.0, 8.6), (75.0, 11.8))  # kW, m³/min at 0.8 MPa (~6.4 kW per m³/min)
_ATM_MPA = 0.1013
_RECEIVER_M3 = 3.0
_STANDBY_AFTER_S = 300.0
_STOPPED, _LOADED, _UNLOADED, _TRIPPED, _STANDBY = 0, 1, 2, 3, 4


class BearingFault:
    """Severity 0..1 of a bearing fault starting `onset_s` after the model starts, growing
    from `initial` to 1 in `growth_s` seconds (exponentially)."""

    def __init__(self, onset_s: float, growth_s: float, initial: float = 0.05) -> None:
        self.onset_s, self.growth_s, self.initial = onset_s, growth_s, initial
        self.rate = math.log(1.0 / initial) / growth_s

    def severity(self, elapsed_s: float) -> float:
        """Severity at `elapsed_s` seconds after the model started."""
        if elapsed_s < self.onset_s:
            return 0.0
        return min(1.0, self.initial * math.exp(self.rate * (elapsed_s - self.onset_s)))

    def time_to(self, severity: float) -> float:
        """Seconds after the model's start at which the severity reaches `severity`."""
        return self.onset_s + math.log(severity / self.initial) / self.rate


class AirCompressor(SimMachine):
    """One compressor and its receiver; `fault` (optional) is its bearing fault, and a
    tripped machine is repaired after `repair_s` (the fault is then gone)."""

    KIND: ClassVar[str] = "air_compressor"
    WRITABLE: ClassVar[Mapping[str, tuple[float, float] | None]] = {
        "remoteEnabled": None,
        "loadPressure": (0.5, 0.8),
        "unloadPressure": (0.6, 0.9),
    }
    SLOW: ClassVar[frozenset[str]] = frozenset(
        {"runtimeInfo", "vibrationSamples", "lastMaintenance", "controllerVersion"}
    )

    def __init__(
        self,
        seed: int,
        start_ms: int,
        calendar: ShiftCalendar | None = None,
        *,
        fault: BearingFault | None = None,
        repair_s: float = 1200.0,
    ) -> None:
        super().__init__(seed, start_ms, calendar)
        rng = self.rng
        self.rated_kw, self.rated_flow = rng.choice(_RATINGS)
        self.fault = fault
        self.repair_s = repair_s
        self.elapsed_s = 0.0
        self.load_pressure = round(rng.uniform(0.62, 0.68), 2)
        self.unload_pressure = round(rng.uniform(0.8, 0.86), 2)
        self.remote_enabled = True
        self.pressure = rng.uniform(self.load_pressure, self.unload_pressure)
        self.state = _LOADED
        self.demand_share = rng.uniform(0.5, 0.8)
        self.exhaust_temp = rng.uniform(78.0, 88.0)
        self.base_vibration = rng.uniform(1.4, 2.4)
        self.unloaded_s = 0.0
        self.trip_s = 0.0
        self.run_hours = rng.uniform(2_000.0, 30_000.0)
        self.load_hours = self.run_hours * rng.uniform(0.6, 0.85)
        self.start_count = rng.randint(500, 9_000)
        self.energy_kwh = self.load_hours * self.rated_kw
        self.maintained_ms = start_ms - rng.randint(10, 120) * 86_400_000
        self._alarmed = False

    # --- dynamics ----------------------------------------------------------------------------
    @property
    def severity(self) -> float:
        """The bearing fault's severity now (0 when healthy)."""
        return self.fault.severity(self.elapsed_s) if self.fault else 0.0

    def _step(self, dt_s: float) -> None:
        self.elapsed_s += dt_s
        self._demand(dt_s)
        if self.state == _TRIPPED:
            self.trip_s += dt_s
            if self.trip_s >= self.repair_s:
                self._repaired()
        elif self.severity >= 1.0:
            self._trip()
        elif self.state != _STOPPED:
            self._control(dt_s)
        supply = self.rated_flow * (1.0 - 0.3 * self.severity) if self.state == _LOADED else 0.0
        demand = self.rated_flow * self.demand_share
        self.pressure += (supply - demand) / 60.0 * _ATM_MPA / _RECEIVER_M3 * dt_s
        self.pressure = clamp(self.pressure, 0.0, 1.0)
        self._account(dt_s)
        self._warn()

    def _demand(self, dt_s: float) -> None:
        goal = self.rng.uniform(0.55, 0.95) if self.staffed else 0.25
        self.demand_share += (goal - self.demand_share) * dt_s / 120.0
        self.demand_share = clamp(self.demand_share + self.rng.gauss(0.0, 0.01), 0.05, 1.0)

    def _control(self, dt_s: float) -> None:
        if self.state == _LOADED and self.pressure >= self.unload_pressure:
            self.state, self.unloaded_s = _UNLOADED, 0.0
        elif self.state in (_UNLOADED, _STANDBY) and self.pressure <= self.load_pressure:
            if self.state == _STANDBY:
                self.start_count += 1
            self.state = _LOADED
        elif self.state == _UNLOADED:
            self.unloaded_s += dt_s
            if self.unloaded_s >= _STANDBY_AFTER_S:
                self.state = _STANDBY

    def _trip(self) -> None:
        self.state, self.trip_s = _TRIPPED, 0.0
        self.emit(
            "bearingFault",
            vibration=round(self.vibration, 2),
            bearingTemperature=round(self.bearing_temperature, 1),
            faultCode=1,  # 振动超限
        )

    def _repaired(self) -> None:
        self.fault = None
        self.state = _UNLOADED
        self.maintained_ms = self.now_ms
        self._alarmed = False
        self.emit("maintenanceDue", item="主机轴承更换完成", dueTime=self.now_ms + 180 * 86_400_000)

    def _account(self, dt_s: float) -> None:
        goal = {_LOADED: 88.0, _UNLOADED: 74.0}.get(self.state, 35.0) + 6.0 * self.severity
        self.exhaust_temp += (goal - self.exhaust_temp) * dt_s / 240.0
        if self.state in (_LOADED, _UNLOADED):
            self.run_hours += dt_s / 3600.0
        if self.state == _LOADED:
            self.load_hours += dt_s / 3600.0
        self.energy_kwh += self.active_power * dt_s / 3600.0

    def _warn(self) -> None:
        if not self._alarmed and self.vibration >= VIBRATION_ALARM:
            self._alarmed = True
            self.emit(
                "bearingFault",
                vibration=round(self.vibration, 2),
                bearingTemperature=round(self.bearing_temperature, 1),
                faultCode=1,
            )
        if self.exhaust_temp > 105.0:
            self.emit(
                "overTemperature", exhaustTemperature=round(self.exhaust_temp, 1), threshold=105.0
            )

    # --- derived values ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Motor turning (loaded or unloaded)."""
        return self.state in (_LOADED, _UNLOADED)

    @property
    def active_power(self) -> float:
        """Electrical input in kW."""
        if self.state == _LOADED:
            return self.rated_kw * (0.82 + 0.2 * self.pressure / 0.8) * (1 + 0.06 * self.severity)
        return self.rated_kw * 0.32 if self.state == _UNLOADED else 0.0

    @property
    def air_flow(self) -> float:
        """Free air delivered, m³/min."""
        return self.rated_flow * (1.0 - 0.3 * self.severity) if self.state == _LOADED else 0.0

    @property
    def vibration(self) -> float:
        """Bearing vibration velocity RMS, mm/s (noise-free part)."""
        if not self.running and self.state != _TRIPPED:
            return 0.1
        return self.base_vibration + 10.0 * self.severity

    @property
    def bearing_temperature(self) -> float:
        """Main bearing temperature, °C."""
        return 0.55 * self.exhaust_temp + 12.0 + 45.0 * self.severity

    # --- what it posts -----------------------------------------------------------------------
    def properties(self) -> dict[str, Any]:
        """Pressure, temperatures, electrical values, flow, specific power and vibration."""
        rng = self.rng
        power = self.active_power * rng.uniform(0.985, 1.015)
        flow = self.air_flow
        vibration = self.vibration * rng.uniform(0.93, 1.07)
        return {
            "runState": self.state,
            "exhaustPressure": round(self.pressure, 2),
            "exhaustTemperature": round(self.exhaust_temp + rng.gauss(0.0, 0.2), 1),
            "motorCurrent": round(power * 1000 / (math.sqrt(3) * 380 * 0.88), 1),
            "activePower": round(power, 1),
            "motorSpeed": 2980 if self.running else 0,
            "airFlow": round(flow, 2),
            "specificPower": round(power / flow, 2) if flow > 0 else 0.0,
            "vibration": round(clamp(vibration, 0.0, 50.0), 2),
            "bearingTemperature": round(self.bearing_temperature + rng.gauss(0.0, 0.2), 1),
            "remoteEnabled": self.remote_enabled,
            "loadPressure": self.load_pressure,
            "unloadPressure": self.unload_pressure,
            "runtimeInfo": {
                "totalRunHours": int(self.run_hours),
                "loadRunHours": int(self.load_hours),
                "startCount": self.start_count,
                "energyConsumption": round(self.energy_kwh, 2),
            },
            "vibrationSamples": [
                round(vibration * (1 + 0.3 * math.sin(i * 0.8 + self.elapsed_s)), 2)
                for i in range(8)
            ],
            "lastMaintenance": self.maintained_ms,
            "controllerVersion": "MAM-890 v2.13",
        }

    def call_service(self, identifier: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """`remoteStartStop` (command 0 stop, 1 start; needs remote enabled) and
        `faultReset` (refused while the fault is still there)."""
        if identifier == "remoteStartStop":
            if not self.remote_enabled or self.state == _TRIPPED:
                return {"result": False, "message": "远程控制未使能或设备故障"}
            if params.get("command") == 0:
                self.state = _STOPPED
            elif self.state == _STOPPED:
                self.state, self.start_count = _LOADED, self.start_count + 1
            return {"result": True, "message": "已执行"}
        if identifier == "faultReset":
            if self.state == _TRIPPED and self.severity < 1.0:
                self.state = _UNLOADED
            return {"result": self.state != _TRIPPED}
        return None
