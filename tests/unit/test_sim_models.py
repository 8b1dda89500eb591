"""The simulated machines: seeded runs repeat, values stay inside their thing models, tools
wear out and get changed, a bearing fault grows until the alarm threshold is crossed and the
compressor trips, looms stop at their configured rates, shifts stop the machines."""

from __future__ import annotations

import math
from typing import Any

import pytest

from qiantang.domain.validation import compile_model
from qiantang.sim.catalog import KINDS, build_machine, thing_model
from qiantang.sim.cnc import CncMachine, CncState
from qiantang.sim.compressor import VIBRATION_ALARM, AirCompressor, BearingFault
from qiantang.sim.loom import Loom
from qiantang.sim.machine import ShiftCalendar, SimMachine
from qiantang.sim.power_meter import PowerMeter

# 2026-12-01 10:00 China Standard Time: mid-morning, on shift
START_MS = 1_796_090_400_000
ALWAYS_ON = ShiftCalendar(changeover_min=0, break_min=0)


def run(machine: SimMachine, seconds: int) -> list[dict[str, Any]]:
    """Step once a second, collecting what the machine would post."""
    out = []
    for _ in range(seconds):
        machine.advance(1.0)
        out.append(machine.properties())
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_same_seed_gives_the_same_run_and_another_seed_another(kind: str) -> None:
    a = run(build_machine(kind, 42, START_MS), 300)
    b = run(build_machine(kind, 42, START_MS), 300)
    c = run(build_machine(kind, 43, START_MS), 300)
    assert a == b
    assert a != c


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("faulty", [False, True])
def test_two_hours_of_posts_and_events_fit_the_shipped_thing_model(kind: str, faulty: bool) -> None:
    machine = build_machine(kind, 5, START_MS, faulty=faulty)
    compiled = compile_model(thing_model(kind))
    posted: set[str] = set()
    for _ in range(2 * 3600 // 5):
        machine.advance(5.0)
        props = machine.properties()
        accepted, errors = compiled.validate_properties(props)
        assert errors == [], (props, errors)
        posted |= accepted.keys()
        for event in machine.take_events():
            _, errors = compiled.validate_event(event.identifier, event.params)
            assert errors == [], (event, errors)
    modelled = {p.identifier for p in thing_model(kind).properties}
    assert posted == modelled  # every property of the model is simulated, nothing else


def test_a_tool_wears_out_is_changed_and_starts_again() -> None:
    cnc = CncMachine(
        1, START_MS, ALWAYS_ON, tool_life_s=600.0, initial_wear=50.0, servo_mtbf_s=1e12
    )
    first_tool = cnc.tool_number
    wear = [p["toolWear"] for p in run(cnc, 200)]
    assert wear == sorted(wear) and wear[0] < wear[-1]  # rises while cutting
    seconds = 0
    while seconds < 2000 and not any(e.identifier == "toolLifeExpired" for e in cnc.take_events()):
        cnc.advance(1.0)
        seconds += 1
    # half a tool life of 600 s at 100 % overrides, minus the 200 s already cut
    assert seconds <= 300 - 200 + 5
    assert cnc.properties()["machineState"] == CncState.TOOL_CHANGE
    for _ in range(300):  # a tool change takes 90-240 s
        cnc.advance(1.0)
    after = cnc.properties()
    assert after["toolNumber"] == first_tool % 24 + 1
    assert after["toolWear"] < 50.0 and after["machineState"] == CncState.RUN


def test_a_cnc_stands_idle_at_a_shift_change() -> None:
    changeover = START_MS - 2 * 3600_000 + 5 * 60_000  # 08:05 local, in the changeover
    cnc = CncMachine(1, changeover, ShiftCalendar(changeover_min=10, break_min=0))
    assert run(cnc, 1)[0]["machineState"] == CncState.IDLE
    assert run(cnc, 600)[-1]["machineState"] == CncState.RUN  # 08:15: the new shift runs
    assert cnc.properties()["spindleSpeed"] > 0


def test_the_bearing_fault_grows_past_the_alarm_and_trips_the_compressor() -> None:
    fault = BearingFault(onset_s=60.0, growth_s=300.0)
    cmp = AirCompressor(3, START_MS, ALWAYS_ON, fault=fault)
    alarm_at = fault.time_to(0.52)  # vibration = base (<= 2.4) + 10 x severity > 7.1
    posts = run(cmp, 400)
    vibration = [p["vibration"] for p in posts if p["runState"] in (1, 2)]
    assert max(vibration[:50]) < 3.0  # healthy before the onset
    crossed = next(i for i, p in enumerate(posts, 1) if p["vibration"] > VIBRATION_ALARM)
    assert crossed <= math.ceil(alarm_at) + 5
    assert posts[crossed + 30]["bearingTemperature"] > posts[30]["bearingTemperature"] + 15
    events = [e for e in cmp.take_events() if e.identifier == "bearingFault"]
    assert events and events[0].params["vibration"] >= VIBRATION_ALARM
    assert posts[-1]["runState"] == 3  # tripped at severity 1 (onset + 300 s)
    assert posts[-1]["activePower"] == 0.0


def test_a_healthy_compressor_cycles_between_its_pressure_set_points() -> None:
    cmp = AirCompressor(11, START_MS, ALWAYS_ON)
    posts = run(cmp, 3 * 3600)
    pressures = [p["exhaustPressure"] for p in posts]
    assert min(pressures) >= 0.6 and max(pressures) <= 0.9
    assert min(pressures) <= cmp.load_pressure + 0.01
    assert max(pressures) >= cmp.unload_pressure - 0.01
    states = {p["runState"] for p in posts}
    assert {1, 2} <= states  # loads and unloads
    loaded = [p for p in posts if p["runState"] == 1]
    assert all(5.5 < p["specificPower"] < 7.5 for p in loaded)  # kW per m³/min
    assert max(p["vibration"] for p in posts) < 3.0


def test_loom_stops_come_at_their_rate_per_100k_picks() -> None:
    loom = Loom(9, START_MS, ALWAYS_ON, warp_rate=4.0, weft_rate=8.0)
    posts = run(loom, 21_000)  # 10:00-15:50, in the shift that started at 08:00
    last = posts[-1]
    assert last["shiftPicks"] > 150_000
    assert 1.5 < last["warpStopsPer100k"] < 7.0
    assert 4.0 < last["weftStopsPer100k"] < 13.0
    assert 60.0 < last["efficiency"] < 100.0
    assert {1, 2, 3} <= {p["runState"] for p in posts}


def test_a_power_meter_follows_the_shift_and_counts_energy() -> None:
    meter = PowerMeter(
        4, START_MS, ShiftCalendar(changeover_min=0, break_min=60, break_offset_min=180)
    )
    posts = run(meter, 4 * 3600)  # 10:00-14:00; the break is 11:00-12:00 (shift from 08:00)
    energy = [p["energy"] for p in posts]
    assert energy == sorted(energy) and energy[-1] > energy[0]
    on_shift = posts[3000]["activePower"]  # 10:50
    in_break = posts[6600]["activePower"]  # 11:50
    assert in_break < 0.6 * on_shift
    for p in posts[::600]:
        assert (
            abs(
                p["activePower"]
                - (p["ua"] * p["ia"] + p["ub"] * p["ib"] + p["uc"] * p["ic"])
                * p["powerFactor"]
                / 1000
            )
            < 0.05 * p["activePower"]
        )


def test_writes_in_range_are_taken_and_others_left_out() -> None:
    cnc = build_machine("cnc_machine", 1, START_MS)
    taken = cnc.set_properties({"feedOverride": 80, "spindleOverride": 200, "toolWear": 0})
    assert taken == {"feedOverride": 80}
    assert cnc.properties()["feedOverride"] == 80
    cmp = build_machine("air_compressor", 1, START_MS)
    assert cmp.call_service("remoteStartStop", {"command": 0}) == {
        "result": True,
        "message": "已执行",
    }
    assert run(cmp, 5)[-1]["runState"] == 0
    assert cmp.call_service("nope", {}) is None
