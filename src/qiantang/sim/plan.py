"""A fleet plan: which simulated devices run, how each is reached (direct Alink MQTT, or an
OPC UA or Modbus server read by the edge gateway), and with which credentials. The demo
writes it as JSON for the simulator process (`python -m qiantang.sim PLAN.json`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["DevicePlan", "FleetPlan", "Front", "read_plan", "write_plan"]

Front = Literal["mqtt", "opcua", "modbus"]


class DevicePlan(msgspec.Struct, frozen=True):
    """One simulated device; `unit_id` is its Modbus unit (Modbus front only)."""

    kind: str
    product_key: str
    device_name: str
    device_secret: str
    seed: int
    front: Front = "mqtt"
    faulty: bool = False
    unit_id: int = 0


class FleetPlan(msgspec.Struct, frozen=True):
    """Everything the simulator process needs."""

    mqtt_host: str
    mqtt_port: int
    devices: list[DevicePlan]
    opcua_port: int = 0
    modbus_port: int = 0
    period_s: float = 1.0

    def on(self, front: Front) -> list[DevicePlan]:
        """The devices behind one front-end."""
        return [d for d in self.devices if d.front == front]


def write_plan(plan: FleetPlan, path: Path) -> None:
    """Write the plan (it holds device secrets: owner-only permissions)."""
    path.write_bytes(msgspec.json.encode(plan))
    path.chmod(0o600)


def read_plan(path: Path) -> FleetPlan:
    """Read a plan written by `write_plan`."""
    return msgspec.json.decode(path.read_bytes(), type=FleetPlan)
