"""The edge-gateway config (`qiantang gateway run CONFIG.yaml`, see docs/edge.md) for the
gateway devices of a fleet plan: one sub-device per machine on the simulator's OPC UA or
Modbus server, every scalar property mapped to its variable or register."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qiantang.sim.catalog import KINDS
from qiantang.sim.opcua_front import node_id
from qiantang.sim.plan import DevicePlan, FleetPlan
from qiantang.sim.points import ScalarPoint, modbus_points, opcua_points

__all__ = ["OPCUA_NAMESPACE_INDEX", "GatewayIdentity", "gateway_config"]

#: The index asyncua gives the first namespace a server registers.
OPCUA_NAMESPACE_INDEX = 2
_VALUE_TYPE = {"int": "int", "enum": "int", "float": "float", "double": "float", "bool": "bool"}


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    """The gateway device on the platform."""

    product_key: str
    device_name: str
    device_secret: str


def _opcua_point(device: DevicePlan, point: ScalarPoint) -> dict[str, Any]:
    node = node_id(OPCUA_NAMESPACE_INDEX, device.device_name, point.identifier)
    return {"property": point.identifier, "node": node, "sampling_interval_ms": 1000}


def _modbus_point(point: ScalarPoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "property": point.identifier,
        "table": point.table,
        "address": point.address,
        "data_type": point.data_type,
    }
    if point.scale != 1.0:
        out["scale"] = point.scale
    if point.kind != "bool":
        out["type"] = _VALUE_TYPE[point.kind]
    return out


def _device_block(plan: FleetPlan, device: DevicePlan) -> dict[str, Any]:
    block: dict[str, Any] = {
        "product_key": device.product_key,
        "device_name": device.device_name,
        "device_secret": device.device_secret,
    }
    kind = KINDS[device.kind].kind
    if device.front == "opcua":
        block["connector"] = {
            "type": "opcua",
            "endpoint": f"opc.tcp://127.0.0.1:{plan.opcua_port}/qiantang/sim/",
            "publishing_interval_ms": 1000,
            "watchdog_s": 5,
        }
        block["points"] = [_opcua_point(device, p) for p in opcua_points(kind)]
    else:
        block["connector"] = {
            "type": "modbus",
            "host": "127.0.0.1",
            "port": plan.modbus_port,
            "unit_id": device.unit_id,
            "poll_ms": 1000,
        }
        block["points"] = [_modbus_point(p) for p in modbus_points(kind)]
    return block


def gateway_config(plan: FleetPlan, gateway: GatewayIdentity, outbox: str) -> dict[str, Any]:
    """The config (as the YAML document's data) for the plan's OPC UA and Modbus devices."""
    devices = [d for d in plan.devices if d.front in ("opcua", "modbus")]
    return {
        "uplink": {
            "host": plan.mqtt_host,
            "port": plan.mqtt_port,
            "product_key": gateway.product_key,
            "device_name": gateway.device_name,
            "device_secret": gateway.device_secret,
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 5,
        },
        "outbox": {"path": outbox, "synchronous": "normal"},
        "health": {"enabled": True, "period_s": 5},
        "devices": [_device_block(plan, d) for d in devices],
    }
