"""Simulated machines behind one OPC UA server (asyncua), as a shop-floor controller would
expose them: an object per machine (``ns=N;s={device}``) with a variable per scalar property
(``ns=N;s={device}.{property}``). `update` writes the models' current values; a value the
edge gateway wrote to a writable variable is handed to the model as a property set."""

from __future__ import annotations

import logging
import time
from typing import Any

from asyncua import ua
from asyncua.server.server import Server

from qiantang.sim.machine import SimMachine
from qiantang.sim.plan import DevicePlan
from qiantang.sim.points import ScalarPoint, opcua_points

__all__ = ["NAMESPACE", "OpcUaFront", "node_id"]

NAMESPACE = "urn:qiantang:sim"
_VARIANT = {
    "int": ua.VariantType.Int32,
    "enum": ua.VariantType.Int32,
    "float": ua.VariantType.Double,
    "double": ua.VariantType.Double,
    "bool": ua.VariantType.Boolean,
    "text": ua.VariantType.String,
}
_INITIAL: dict[str, Any] = {
    "int": 0,
    "enum": 0,
    "float": 0.0,
    "double": 0.0,
    "bool": False,
    "text": "",
}


def node_id(ns: int, device_name: str, identifier: str | None = None) -> str:
    """The string node id of a machine object, or of one of its variables."""
    return f"ns={ns};s={device_name}" + (f".{identifier}" if identifier else "")


def _typed(point: ScalarPoint, value: Any) -> Any:
    if point.kind == "bool":
        return bool(value)
    if point.kind in ("int", "enum"):
        return int(value)
    if point.kind == "text":
        return str(value)
    return float(value)


class OpcUaFront:
    """One OPC UA server on 127.0.0.1:`port` holding `machines`."""

    def __init__(self, port: int, machines: list[tuple[DevicePlan, SimMachine]]) -> None:
        self.port = port
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/qiantang/sim/"
        self.machines = machines
        self.server = Server()
        self.ns = 0
        self._nodes: dict[tuple[str, str], Any] = {}
        self._written: dict[tuple[str, str], Any] = {}

    async def start(self) -> None:
        """Build the address space and start listening."""
        logging.getLogger("asyncua").setLevel(logging.ERROR)
        s = self.server
        await s.init()
        s.set_endpoint(self.endpoint)
        s.set_server_name("Qiantang simulated workshop")
        s.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await s.register_namespace(NAMESPACE)
        for plan, machine in self.machines:
            name = plan.device_name
            obj = await s.nodes.objects.add_object(node_id(self.ns, name), f"{self.ns}:{name}")
            for point in opcua_points(machine.KIND):
                node = await obj.add_variable(
                    node_id(self.ns, name, point.identifier),
                    f"{self.ns}:{point.identifier}",
                    _INITIAL[point.kind],
                    _VARIANT[point.kind],
                )
                if point.writable:
                    await node.set_writable()
                self._nodes[(name, point.identifier)] = node
        await s.start()
        await self.update()

    async def update(self) -> None:
        """Take what the gateway wrote, step the models to now, write their values."""
        for plan, machine in self.machines:
            await self._take_writes(plan.device_name, machine)
            machine.advance((_now_ms() - machine.now_ms) / 1000.0)
            values = machine.properties()
            for point in opcua_points(machine.KIND):
                key = (plan.device_name, point.identifier)
                if point.identifier not in values:
                    continue
                value = _typed(point, values[point.identifier])
                if self._written.get(key) != value:
                    await self._nodes[key].write_value(value, _VARIANT[point.kind])
                    self._written[key] = value
            machine.take_events()  # OPC UA events are not forwarded by the gateway

    async def _take_writes(self, name: str, machine: SimMachine) -> None:
        changed: dict[str, Any] = {}
        for point in opcua_points(machine.KIND):
            key = (name, point.identifier)
            if point.writable and key in self._written:
                value = await self._nodes[key].read_value()
                if value != self._written[key]:
                    changed[point.identifier] = value
        if changed:
            machine.set_properties(changed)

    async def stop(self) -> None:
        """Stop the server."""
        await self.server.stop()


def _now_ms() -> int:
    return int(time.time() * 1000)
