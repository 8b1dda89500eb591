"""An air-jet loom (喷气织机): it inserts picks at its set speed, stops on warp breaks and weft
faults at a rate per 100,000 picks until a weaver mends them (slower during changeovers and
breaks, when fewer weavers are on the floor), and doffs the roll when it is full. Shift
figures (picks, stops per 100k picks, efficiency) restart at each shift change.

`runState`: 0 停机, 1 运行, 2 经停, 3 纬停, 4 落布.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from qiantang.sim.machine import ShiftCalendar, SimMachine

__all__ = ["Loom"]

_STOPPED, _RUNNING, _WARP, _WEFT, _DOFFING = 0, 1, 2, 3, 4


class Loom(SimMachine):
    """One loom. `warp_rate` and `weft_rate` are stops per 100,000 picks."""

    KIND: ClassVar[str] = "loom"
    WRITABLE: ClassVar[Mapping[str, tuple[float, float] | None]] = {
        "targetSpeed": (300, 1200),
        "pickDensity": (1, 200),
        "styleNo": None,
    }
    SLOW: ClassVar[frozenset[str]] = frozenset({"styleNo", "pickDensity"})

    def __init__(
        self,
        seed: int,
        start_ms: int,
        calendar: ShiftCalendar | None = None,
        *,
        warp_rate: float | None = None,
        weft_rate: float | None = None,
    ) -> None:
        super().__init__(seed, start_ms, calendar)
        rng = self.rng
        self.warp_rate = warp_rate if warp_rate is not None else rng.uniform(1.5, 5.0)
        self.weft_rate = weft_rate if weft_rate is not None else rng.uniform(2.0, 8.0)
        self.target_speed = rng.choice((600, 700, 750, 800, 850))
        self.pick_density = rng.choice((28.0, 36.0, 42.0, 52.0))
        self.style_no = f"T{rng.randint(1000, 9999)}"
        self.roll_m = rng.choice((300.0, 500.0, 800.0))
        self.fabric_m = rng.uniform(0.0, self.roll_m)
        self.picks = rng.randint(10_000_000, 900_000_000)
        self.state = _RUNNING
        self.stop_left_s = 0.0
        self._pick_frac = 0.0
        self.shift, _ = self.calendar.shift_of(start_ms)
        self._reset_shift()

    def _reset_shift(self) -> None:
        self.shift_picks = 0
        self.shift_warp = 0
        self.shift_weft = 0
        self.shift_run_s = 0.0
        self.shift_s = 0.0

    # --- dynamics ----------------------------------------------------------------------------
    def _step(self, dt_s: float) -> None:
        shift, _ = self.calendar.shift_of(self.now_ms)
        if shift != self.shift:
            self.shift = shift
            self._reset_shift()
        self.shift_s += dt_s
        if self.state == _STOPPED:
            return
        if self.state != _RUNNING:
            slow = 1.0 if self.staffed else 2.5
            self.stop_left_s -= dt_s / slow
            if self.stop_left_s <= 0:
                self.state = _RUNNING
            return
        self._weave(dt_s)

    def _weave(self, dt_s: float) -> None:
        self.shift_run_s += dt_s
        exact = self.target_speed / 60.0 * dt_s + self._pick_frac
        picks = int(exact)
        self._pick_frac = exact - picks
        self.picks += picks
        self.shift_picks += picks
        self.fabric_m += picks / (self.pick_density * 100.0)
        rng = self.rng
        if self.fabric_m >= self.roll_m:
            self.emit("doffed", length=round(self.fabric_m, 2))
            self.fabric_m = 0.0
            self._stop(_DOFFING, rng.uniform(300.0, 600.0))
        elif rng.random() < picks * self.warp_rate / 100_000:
            self.shift_warp += 1
            self.emit("warpStop", count=self.shift_warp)
            self._stop(_WARP, rng.uniform(60.0, 300.0))
        elif rng.random() < picks * self.weft_rate / 100_000:
            self.shift_weft += 1
            self.emit("weftStop", count=self.shift_weft)
            self._stop(_WEFT, rng.uniform(15.0, 90.0))

    def _stop(self, state: int, seconds: float) -> None:
        self.state, self.stop_left_s = state, seconds

    # --- what it posts -----------------------------------------------------------------------
    def _per_100k(self, stops: int) -> float:
        return round(stops * 100_000 / self.shift_picks, 2) if self.shift_picks >= 1000 else 0.0

    def properties(self) -> dict[str, Any]:
        """Speed, pick counters, stop rates per 100k picks, efficiency and the roll."""
        running = self.state == _RUNNING
        speed = int(self.target_speed + self.rng.uniform(-3.0, 3.0)) if running else 0
        efficiency = 100.0 * self.shift_run_s / self.shift_s if self.shift_s > 0 else 100.0
        return {
            "runState": self.state,
            "speed": speed,
            "targetSpeed": self.target_speed,
            "picks": self.picks % 2_147_483_647,
            "shiftPicks": self.shift_picks,
            "warpStopsPer100k": self._per_100k(self.shift_warp),
            "weftStopsPer100k": self._per_100k(self.shift_weft),
            "efficiency": round(efficiency, 1),
            "fabricLength": round(self.fabric_m, 2),
            "pickDensity": self.pick_density,
            "styleNo": self.style_no,
        }

    def call_service(self, identifier: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """`resetShift` restarts the shift figures."""
        if identifier == "resetShift":
            self._reset_shift()
            return {"result": True}
        return None
