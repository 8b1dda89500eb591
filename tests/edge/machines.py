"""Simulated machines for the gateway tests: a real asyncua server and a real pymodbus server
on loopback, with values that change on their own while the tests run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from asyncua import Server, ua
from asyncua.common.methods import uamethod
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.conftest import free_port

T = TypeVar("T")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
logging.getLogger("asyncua").setLevel(logging.ERROR)


class OpcUaMachine:
    """An injection-moulding machine on OPC UA: Temperature (Double, changing), Speed (Int32,
    changing), Setpoint (Float, writable), Running (Boolean), methods Start(speed) -> ok and
    Reset() -> code."""

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/qiantang/"
        self.users = users
        self.server = Server(user_manager=_Passwords(users) if users else None)
        self.ns = 0
        self.nodes: dict[str, Any] = {}
        self.started_with: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.server
        await s.init()
        s.set_endpoint(self.endpoint)
        s.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.users:
            s.set_security_IDs(["Username"])
        ns = self.ns = await s.register_namespace("urn:qiantang:test:imm")
        machine = await s.nodes.objects.add_object(f"ns={ns};s=Machine", f"{ns}:Machine")
        variables = {
            "Temperature": (20.0, ua.VariantType.Double),
            "Speed": (0, ua.VariantType.Int32),
            "Setpoint": (10.0, ua.VariantType.Float),
            "Running": (False, ua.VariantType.Boolean),
        }
        for name, (value, vtype) in variables.items():
            node = await machine.add_variable(
                f"ns={ns};s=Machine.{name}", f"{ns}:{name}", value, vtype
            )
            self.nodes[name] = node
        await self.nodes["Setpoint"].set_writable()

        @uamethod  # type: ignore[misc]
        def start(parent: Any, speed: int) -> bool:
            self.started_with.append(speed)
            return speed > 0

        @uamethod  # type: ignore[misc]
        def reset(parent: Any) -> int:
            return 7

        await machine.add_method(
            f"ns={ns};s=Machine.Start",
            f"{ns}:Start",
            start,
            [ua.VariantType.Int32],
            [ua.VariantType.Boolean],
        )
        await machine.add_method(
            f"ns={ns};s=Machine.Reset", f"{ns}:Reset", reset, [], [ua.VariantType.Int32]
        )
        await s.start()
        self._task = asyncio.create_task(self._wander())

    async def _wander(self) -> None:
        i = 0
        while True:
            i += 1
            await self.nodes["Temperature"].write_value(
                20.0 + 5 * math.sin(i / 5), ua.VariantType.Double
            )
            await self.nodes["Speed"].write_value(1000 + i, ua.VariantType.Int32)
            await asyncio.sleep(0.1)

    async def value(self, name: str) -> Any:
        return await self.nodes[name].read_value()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.server.stop()


class _Passwords(UserManager):
    """Users by name and password; anyone else is refused."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        return None


class ModbusMachine:
    """A compressor on Modbus TCP (or RTU framing over a socket), unit 1. Holding registers: 0-1 pressure (float32, word
    order little), 2 temperature (int16, tenths of a degree), 3 setpoint (uint16, tenths),
    10-13 a name (string). Input registers 0-1: count (uint32, rising). Coil 0: running.
    Discrete input 1: alarm."""

    UNIT = 1

    def __init__(self, rtu: bool = False) -> None:
        self.port = free_port()
        self.rtu = rtu
        device = SimDevice(
            id=self.UNIT,
            simdata=(
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=64, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=64, values=0, datatype=DataType.REGISTERS)],
            ),
        )
        self.device = device
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.count = 0

    async def start(self) -> None:
        if self.rtu:  # RTU framing over a socket (pyserial's socket:// port)
            url = f"socket://127.0.0.1:{self.port}"
            self.server = ModbusSerialServer(self.device, framer=FramerType.RTU, port=url)
        else:
            self.server = ModbusTcpServer(self.device, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)
        name = b"CMP-7\x00\x00\x00"
        await self.set(3, 10, [int.from_bytes(name[i : i + 2], "big") for i in range(0, 8, 2)])
        await self.set(3, 3, [250])
        await self.set(1, 0, [True])  # running
        await self.set(2, 1, [True])  # alarm
        self._task = asyncio.create_task(self._wander())

    async def set(self, fc: int, address: int, values: list[Any]) -> None:
        assert self.server is not None
        await self.server.async_setValues(self.UNIT, fc, address, values)

    async def get(self, fc: int, address: int, count: int = 1) -> list[Any]:
        assert self.server is not None
        return list(await self.server.async_getValues(self.UNIT, fc, address, count))

    async def _wander(self) -> None:
        while True:
            self.count += 1
            pressure = 6.0 + (self.count % 10) / 10
            hi, lo = struct.unpack(">HH", struct.pack(">f", pressure))
            await self.set(3, 0, [lo, hi])  # word order little
            await self.set(3, 2, [(235 + self.count % 20) & 0xFFFF])
            await self.set(4, 0, [self.count >> 16, self.count & 0xFFFF])
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.server is not None:
            await self.server.shutdown()


class LoopThread:
    """An event loop in a daemon thread, for machines that outlive one test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.loop)
        return future.result(timeout)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start `work` as a task on the loop."""

        async def make() -> asyncio.Task[Any]:
            return asyncio.create_task(work)

        return self.run(make())

    def cancel(self, task: asyncio.Task[Any], timeout: float = 30) -> None:
        """Cancel a task and wait until it has finished."""

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.run(stop(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
