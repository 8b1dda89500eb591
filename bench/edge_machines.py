"""Wide simulated machines for `bench/edge_gateway.py`, run as a process of their own.

Run: ``python -m bench.edge_machines --modbus-port P --opcua-port Q`` (prints ``ready`` once
both listen, then serves until killed).

- a pymodbus TCP server, unit 1, whose holding registers 0..`registers`-1 all change every
  `tick_ms` (register i holds ``(tick + i) % 65536``);
- an asyncua server with `nodes` Double variables ``ns=2;s=N{i}`` under an object ``Bench``,
  all written every `tick_ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from asyncua import Server, ua
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = ["main", "node_id"]

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
logging.getLogger("asyncua").setLevel(logging.ERROR)


def node_id(ns: int, i: int) -> str:
    """The node id of variable `i`."""
    return f"ns={ns};s=N{i}"


async def modbus(port: int, registers: int, tick_ms: int) -> None:
    """Serve the register machine; change every register each tick."""
    device = SimDevice(
        id=1,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
        ),
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    tick = 0
    while True:
        tick += 1
        await server.async_setValues(1, 3, 0, [(tick + i) % 65536 for i in range(registers)])
        await asyncio.sleep(tick_ms / 1000)


async def opcua(port: int, nodes: int, tick_ms: int, ready: asyncio.Event) -> None:
    """Serve the node machine; write every variable each tick."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace("urn:qiantang:bench")
    assert ns == 2, ns
    obj = await server.nodes.objects.add_object(f"ns={ns};s=Bench", f"{ns}:Bench")
    variables = [
        await obj.add_variable(node_id(ns, i), f"{ns}:N{i}", 0.0, ua.VariantType.Double)
        for i in range(nodes)
    ]
    async with server:
        ready.set()
        tick = 0
        while True:
            tick += 1
            for i, var in enumerate(variables):
                await var.write_value(float(tick + i), ua.VariantType.Double)
            await asyncio.sleep(tick_ms / 1000)


async def run(args: argparse.Namespace) -> None:
    """Both machines, until cancelled."""
    ready = asyncio.Event()
    tasks = [
        asyncio.create_task(modbus(args.modbus_port, args.registers, args.tick_ms)),
        asyncio.create_task(opcua(args.opcua_port, args.nodes, args.tick_ms, ready)),
    ]
    await ready.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--modbus-port", type=int, required=True)
    parser.add_argument("--opcua-port", type=int, required=True)
    parser.add_argument("--registers", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--tick-ms", type=int, default=50)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
