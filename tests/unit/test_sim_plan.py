"""The demo's data: the province (credit codes, codes, device allocation), the fleet plan, the
Modbus register maps and codec, the generated gateway config, the new TSL files."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
import yaml

from qiantang.domain.enterprise import (
    validate_credit_code,
    validate_industry_code,
    validate_region_code,
)
from qiantang.edge.config_file import parse_config
from qiantang.protocols.tsl import import_tsl
from qiantang.sim.catalog import KINDS, load_tsl
from qiantang.sim.gateway_config import GatewayIdentity, gateway_config
from qiantang.sim.modbus_front import decode_point, encode_point
from qiantang.sim.plan import DevicePlan, FleetPlan, read_plan, write_plan
from qiantang.sim.points import ScalarPoint, modbus_points, opcua_points
from qiantang.sim.province import PLATFORMS, allocate_devices, enterprises
from tests.unit.test_tsl import normalise


def test_the_province_has_valid_enterprises_on_existing_platforms() -> None:
    specs = enterprises()
    assert len(specs) >= 10
    keys = {p.key for p in PLATFORMS} | {"base"}
    for spec in specs:
        assert validate_credit_code(spec.credit_code) == spec.credit_code
        validate_industry_code(spec.industry_code)
        validate_region_code(spec.region_code)
        assert spec.home in keys and set(spec.members) <= keys
        assert set(spec.mix) <= set(KINDS)
    assert len({s.credit_code for s in specs}) == len(specs)
    kinds = Counter(p.kind.value for p in PLATFORMS)
    assert kinds == {"industry": 3, "region": 2, "enterprise": 1}


@pytest.mark.parametrize("n", [1, 20, 200, 1000])
def test_devices_are_spread_over_fronts_and_enterprises(n: int) -> None:
    slots = allocate_devices(n, seed=7)
    assert len(slots) == n
    assert len({(s.kind, s.device_name) for s in slots}) == n
    fronts = Counter(s.front for s in slots)
    behind = min(n, max(4, min(40, n // 10)))
    assert fronts["opcua"] + fronts["modbus"] == behind
    units = [s.unit_id for s in slots if s.front == "modbus"]
    assert units == list(range(1, len(units) + 1)) and all(u <= 247 for u in units)
    assert allocate_devices(n, seed=7) == slots
    assert [s.seed for s in allocate_devices(n, seed=8)] != [s.seed for s in slots]


def test_two_hundred_devices_include_demo_faults_on_every_front() -> None:
    slots = allocate_devices(200, seed=7)
    faulty = {(s.kind, s.front) for s in slots if s.faulty}
    assert ("air_compressor", "mqtt") in faulty and ("cnc_machine", "mqtt") in faulty
    assert ("air_compressor", "modbus") in faulty and ("cnc_machine", "opcua") in faulty
    assert len({s.enterprise for s in slots}) == len(enterprises())


@pytest.mark.parametrize(
    ("data_type", "value"),
    [("uint16", 3), ("int32", -123_456), ("int32", 2_147_483_647), ("float64", 0.72)],
)
def test_the_register_codec_round_trips(data_type: str, value: float) -> None:
    point = ScalarPoint("x", "float", False, "holding_register", 0, data_type)
    registers = encode_point(point, value)
    assert len(registers) == point.registers and all(0 <= r <= 0xFFFF for r in registers)
    assert decode_point(point, registers) == value


def test_out_of_range_ints_are_clamped_to_the_register() -> None:
    point = ScalarPoint("x", "enum", False, "holding_register", 0, "uint16")
    assert decode_point(point, encode_point(point, 70_000)) == 0xFFFF


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_register_maps_do_not_overlap_and_fit_one_block_read(kind: str) -> None:
    points = modbus_points(kind)
    registers = [p for p in points if p.table == "holding_register"]
    for a, b in itertools.pairwise(registers):
        assert a.address + a.registers == b.address
    assert registers[-1].address + registers[-1].registers <= 125
    scalars = {p.identifier for p in opcua_points(kind)}
    assert {p.identifier for p in points} <= scalars


def test_the_plan_round_trips_and_is_private(tmp_path: Path) -> None:
    plan = FleetPlan("127.0.0.1", 1883, [DevicePlan("loom", "a1", "LOOM-0001", "s3cret", 1)])
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    assert read_plan(path) == plan
    assert path.stat().st_mode & 0o077 == 0


def test_the_generated_gateway_config_is_valid_for_the_gateway(tmp_path: Path) -> None:
    slots = [s for s in allocate_devices(200, seed=7) if s.front != "mqtt"]
    devices = [
        DevicePlan(
            s.kind, f"pk{s.kind[:3]}", s.device_name, "x" * 32, s.seed, s.front, s.faulty, s.unit_id
        )  # type: ignore[arg-type]
        for s in slots
    ]
    plan = FleetPlan("127.0.0.1", 1883, devices, opcua_port=4840, modbus_port=5020)
    data = gateway_config(plan, GatewayIdentity("pkgw", "GW-0001", "y" * 32), "outbox.db")
    text = yaml.safe_dump(data, allow_unicode=True)
    config = parse_config(text, "gateway.yaml", tmp_path)
    assert len(config.devices) == len(devices) == 20
    by_name = {d.device_name: d for d in config.devices}
    cmp = by_name["CMP-0001"]
    assert cmp.connector.type == "modbus"
    assert {p.property for p in cmp.points} >= {"exhaustPressure", "vibration", "runState"}
    cnc = by_name["CNC-0001"]
    assert cnc.connector.type == "opcua"
    assert {p.property for p in cnc.points} >= {"toolWear", "machineState", "programName"}


@pytest.mark.parametrize("kind", ["loom", "power_meter"])
def test_the_new_tsl_files_round_trip(kind: str) -> None:
    original = load_tsl(kind)
    doc = import_tsl(original)
    assert normalise(doc.to_tsl()) == normalise(original)
    names = [p.name for p in doc.model.properties]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in name) for name in names), names
