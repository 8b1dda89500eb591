"""A CNC machining centre (数控加工中心): parts cut in cycles, a tool that wears with cutting
time until it must be changed, servo alarms now and then, idle at shift changes and breaks.

States (`machineState`): 0 待机 idle, 1 运行 cutting, 2 报警 alarm (waits for an operator's
reset), 3 换刀 tool change. Tool wear (`toolWear`, %) grows with cutting time, faster under a
higher spindle override; at 100 % the machine raises `toolLifeExpired` and changes the tool.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from qiantang.sim.machine import ShiftCalendar, SimMachine, clamp

__all__ = ["CncMachine", "CncState"]

_SERVO_ALARMS = (
    ("SV0401", "伺服准备完成信号断开"),
    ("SV0411", "运动时误差过大"),
    ("SV0436", "软件热过载"),
)


class CncState:
    """`machineState` values."""

    IDLE = 0
    RUN = 1
    ALARM = 2
    TOOL_CHANGE = 3


class CncMachine(SimMachine):
    """One machining centre. `tool_life_s` is the cutting time one tool lasts at 100 %
    spindle override; `servo_mtbf_s` the mean cutting time between servo alarms."""

    KIND: ClassVar[str] = "cnc_machine"
    WRITABLE: ClassVar[Mapping[str, tuple[float, float] | None]] = {
        "feedOverride": (0, 150),
        "spindleOverride": (50, 120),
        "coolantOn": None,
    }
    SLOW: ClassVar[frozenset[str]] = frozenset(
        {"programName", "workMode", "lastPowerOn", "toolLife"}
    )

    def __init__(
        self,
        seed: int,
        start_ms: int,
        calendar: ShiftCalendar | None = None,
        *,
        tool_life_s: float | None = None,
        initial_wear: float | None = None,
        servo_mtbf_s: float = 4 * 3600.0,
    ) -> None:
        super().__init__(seed, start_ms, calendar)
        rng = self.rng
        self.nominal_speed = rng.choice((6000, 8000, 10000, 12000))
        self.nominal_feed = rng.uniform(800.0, 3000.0)
        self.base_load = rng.uniform(35.0, 60.0)
        self.part_cycle_s = rng.uniform(45.0, 150.0)
        self.tool_life_s = tool_life_s if tool_life_s is not None else rng.uniform(480.0, 1200.0)
        self.servo_mtbf_s = servo_mtbf_s
        self.program_name = f"O{rng.randint(1000, 9999)}"
        self.state = CncState.IDLE
        self.tool_wear = initial_wear if initial_wear is not None else rng.uniform(10.0, 80.0)
        self.tool_number = rng.randint(1, 24)
        self.tool_used = int(self.tool_wear * 3)
        self.tool_limits = [rng.choice((200, 300, 500, 800)) for _ in range(24)]
        self.tool_uses = [rng.randint(0, limit) for limit in self.tool_limits]
        self.part_count = rng.randint(0, 20_000)
        self.part_progress_s = rng.uniform(0.0, self.part_cycle_s)
        self.last_cycle_s = round(self.part_cycle_s, 1)
        self.feed_override = 100
        self.spindle_override = 100
        self.coolant_on = True
        self.power_on_ms = start_ms
        self._hold_s = 0.0  # time left in an alarm or a tool change
        self._phase = rng.uniform(0.0, 2 * math.pi)

    # --- dynamics ----------------------------------------------------------------------------
    def _step(self, dt_s: float) -> None:
        if self.state in (CncState.ALARM, CncState.TOOL_CHANGE):
            self._hold_s -= dt_s
            if self._hold_s <= 0:
                self._finish_hold()
            return
        if not self.staffed:
            self.state = CncState.IDLE
            return
        self.state = CncState.RUN
        self._cut(dt_s)

    def _cut(self, dt_s: float) -> None:
        rate = (self.spindle_override / 100.0) ** 1.5 * (self.feed_override / 100.0)
        self.tool_wear = min(100.0, self.tool_wear + 100.0 * dt_s * rate / self.tool_life_s)
        self.part_progress_s += dt_s * max(self.feed_override, 1) / 100.0
        if self.part_progress_s >= self.part_cycle_s:
            self._finish_part()
        if self.tool_wear >= 100.0:
            self.emit("toolLifeExpired", toolNo=self.tool_number, usedCount=self.tool_used)
            self.state = CncState.TOOL_CHANGE
            self._hold_s = self.rng.uniform(90.0, 240.0)
        elif self.rng.random() < dt_s / self.servo_mtbf_s:
            code, message = self.rng.choice(_SERVO_ALARMS)
            self.emit(
                "servoAlarm", axis=self.rng.randint(0, 2), alarmCode=code, alarmMessage=message
            )
            self.state = CncState.ALARM
            self._hold_s = self.rng.uniform(60.0, 300.0)

    def _finish_part(self) -> None:
        self.last_cycle_s = round(self.part_progress_s * self.rng.uniform(0.98, 1.03), 1)
        self.part_progress_s = 0.0
        self.part_count += 1
        self.tool_used += 1
        self.tool_uses[self.tool_number - 1] = self.tool_used
        self.emit("programFinished", programName=self.program_name, cycleTime=self.last_cycle_s)

    def _finish_hold(self) -> None:
        if self.state == CncState.TOOL_CHANGE:
            self.tool_number = self.tool_number % 24 + 1
            self.tool_wear = 0.0
            self.tool_used = 0
            self.tool_uses[self.tool_number - 1] = 0
        self.state = CncState.IDLE
        self._hold_s = 0.0

    # --- what it posts -----------------------------------------------------------------------
    def properties(self) -> dict[str, Any]:
        """Spindle, feed, position, counters, state and tool wear as the CNC reports them."""
        cutting = self.state == CncState.RUN
        rng = self.rng
        t = self.now_ms / 1000.0
        speed = self.nominal_speed * self.spindle_override / 100.0 if cutting else 0.0
        load = self.base_load * (1 + 0.5 * self.tool_wear / 100.0) * rng.uniform(0.9, 1.1)
        feed = self.nominal_feed * self.feed_override / 100.0 * rng.uniform(0.97, 1.03)
        angle = self._phase + t / 7.0
        return {
            "machineState": self.state,
            "spindleSpeed": int(speed * rng.uniform(0.995, 1.005)) if cutting else 0,
            "spindleLoad": round(clamp(load if cutting else 0.0, 0.0, 150.0), 1),
            "feedRate": round(feed if cutting else 0.0, 1),
            "feedOverride": self.feed_override,
            "spindleOverride": self.spindle_override,
            "axisPosition": {
                "x": round(250.0 * math.cos(angle), 3) if cutting else 0.0,
                "y": round(150.0 * math.sin(angle), 3) if cutting else 0.0,
                "z": round(-20.0 - 5.0 * math.sin(angle * 3), 3) if cutting else 100.0,
            },
            "toolNumber": self.tool_number,
            "toolWear": round(self.tool_wear, 1),
            "workMode": 1,
            "programName": self.program_name,
            "partCount": self.part_count,
            "cycleTime": self.last_cycle_s,
            "alarmActive": self.state == CncState.ALARM,
            "coolantOn": bool(self.coolant_on and cutting),
            "lastPowerOn": self.power_on_ms,
            "toolLife": [
                {"toolNo": i + 1, "usedCount": min(used, 100_000), "lifeLimit": limit}
                for i, (used, limit) in enumerate(
                    zip(self.tool_uses, self.tool_limits, strict=True)
                )
            ],
            "axisLoads": [
                round(load * share * rng.uniform(0.9, 1.1), 1) if cutting else 0.0
                for share in (0.6, 0.5, 0.8, 0.2, 0.15)
            ],
        }

    def call_service(self, identifier: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """`loadProgram` takes a program name; `setWorkOffset` is accepted as is."""
        if identifier == "loadProgram":
            name = params.get("programName")
            if not isinstance(name, str) or not name or self.state == CncState.RUN:
                return {"accepted": False}
            self.program_name = name
            return {"accepted": True}
        if identifier == "setWorkOffset":
            return {"result": self.state != CncState.RUN}
        return None
