"""Simulated equipment for the experience center (`qiantang demo`): seeded machine models
with shifts, stops and faults (`cnc`, `injection`, `compressor`, `loom`, `power_meter`), their
thing models (`tsl/*.json`), and front-ends that put them on the wire: Alink MQTT directly
(`alink_device`), or an OPC UA (`opcua_front`) or Modbus (`modbus_front`) server read by the
edge gateway. `python -m qiantang.sim PLAN.json` runs a fleet plan (`plan`)."""

from qiantang.sim.catalog import KINDS, MachineKind, build_machine, load_tsl, thing_model
from qiantang.sim.machine import ShiftCalendar, SimEvent, SimMachine

__all__ = [
    "KINDS",
    "MachineKind",
    "ShiftCalendar",
    "SimEvent",
    "SimMachine",
    "build_machine",
    "load_tsl",
    "thing_model",
]
