"""The simulator process: every device of a plan in one event loop.

Direct devices each hold an MQTT connection; one ticker steps every model once per
`period_s`, spread over the period in `SLOTS` slices so the platform sees a steady stream
rather than a burst each second. Gateway devices live in one OPC UA server and one Modbus
server, updated by the same ticker. A model runs on simulated time that advances with the
wall clock, so the values posted without a timestamp line up with the platform's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from qiantang.sim.alink_device import AlinkDevice
from qiantang.sim.catalog import build_machine
from qiantang.sim.machine import SimMachine
from qiantang.sim.plan import DevicePlan, FleetPlan

__all__ = ["SLOTS", "Fleet"]

log = logging.getLogger(__name__)

SLOTS = 10


class Fleet:
    """All simulated devices of a plan; `run` until cancelled."""

    def __init__(self, plan: FleetPlan) -> None:
        self.plan = plan
        start_ms = int(time.time() * 1000)
        self.machines: dict[str, SimMachine] = {
            d.device_name: build_machine(d.kind, d.seed, start_ms, faulty=d.faulty)
            for d in plan.devices
        }
        self.direct = [
            AlinkDevice(
                self.machines[d.device_name],
                d.product_key,
                d.device_name,
                d.device_secret,
                plan.mqtt_host,
                plan.mqtt_port,
            )
            for d in plan.on("mqtt")
        ]
        self._fronts: list[Callable[[], Awaitable[None]]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def _machines(self, devices: list[DevicePlan]) -> list[tuple[DevicePlan, SimMachine]]:
        return [(d, self.machines[d.device_name]) for d in devices]

    async def _start_fronts(self) -> None:
        """Start the OPC UA and Modbus servers (each only if the plan puts devices on it)."""
        if self.plan.on("opcua"):
            from qiantang.sim.opcua_front import OpcUaFront

            opcua = OpcUaFront(self.plan.opcua_port, self._machines(self.plan.on("opcua")))
            await opcua.start()
            self._fronts.append(opcua.update)
            self._closers.append(opcua.stop)
        if self.plan.on("modbus"):
            from qiantang.sim.modbus_front import ModbusFront

            modbus = ModbusFront(self.plan.modbus_port, self._machines(self.plan.on("modbus")))
            await modbus.start()
            self._fronts.append(modbus.update)
            self._closers.append(modbus.stop)

    async def run(self) -> None:
        """Start the front-ends, connect the direct devices, tick until cancelled."""
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._start_fronts()
            log.info(
                "simulating %d devices: %d over MQTT, %d on OPC UA, %d on Modbus",
                len(self.plan.devices),
                len(self.direct),
                len(self.plan.on("opcua")),
                len(self.plan.on("modbus")),
            )
            tasks = [asyncio.create_task(d.run()) for d in self.direct]
            await self._tick_forever()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for device in self.direct:
                device.close()
            for close in self._closers:
                with contextlib.suppress(Exception):
                    await close()

    async def _tick_forever(self) -> None:
        period = self.plan.period_s
        slots = [self.direct[i::SLOTS] for i in range(SLOTS)]
        loop = asyncio.get_running_loop()
        last = {id(d): loop.time() for d in self.direct}
        next_at = loop.time()
        tick = 0
        while True:
            slot = slots[tick % SLOTS]
            now = loop.time()
            for device in slot:
                device.machine.advance(now - last[id(device)])
                last[id(device)] = now
                device.post()
                device.keep_alive(30.0)
            if tick % SLOTS == 0:
                for update in self._fronts:
                    await update()
            tick += 1
            next_at += period / SLOTS
            delay = next_at - loop.time()
            if delay < -period:  # fell far behind (a stalled loop): do not burst to catch up
                next_at = loop.time()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
