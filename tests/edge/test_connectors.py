"""The connectors against real servers on loopback: a pymodbus server and an asyncua server
whose values change on their own. Readings, block reads, writes, method calls, and a link
that goes down and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

pytest.importorskip("asyncua")
pytest.importorskip("pymodbus")

from qiantang.edge.config import GatewayConfig
from qiantang.edge.config_file import parse_config
from qiantang.edge.convert import DeviceConverter
from qiantang.edge.errors import WriteRefused
from qiantang.edge.modbus import ModbusConnector
from qiantang.edge.model import ConnectorStatus, Quality, RawReading
from qiantang.edge.opcua import OpcUaConnector
from qiantang.edge.registry import registry
from tests.edge.machines import ModbusMachine, OpcUaMachine

UPLINK = """
uplink: {product_key: gwpk, device_name: GW-1, device_secret: s3cret}
"""


def modbus_yaml(port: int) -> str:
    return (
        UPLINK
        + f"""
devices:
  - product_key: cmp
    device_name: CMP-7
    device_secret: x
    connector: {{type: modbus, host: 127.0.0.1, port: {port}, unit_id: 1, poll_ms: 50,
                 timeout_s: 0.5, reconnect_min_s: 0.05, reconnect_max_s: 0.2}}
    points:
      - {{property: pressure, table: holding_register, address: 0, data_type: float32, word_order: little}}
      - {{property: temperature, table: holding_register, address: 2, data_type: int16, scale: 0.1, type: float}}
      - {{property: setpoint, table: holding_register, address: 3, data_type: uint16, scale: 0.1, type: float}}
      - {{property: name, table: holding_register, address: 10, data_type: string, length: 4}}
      - {{property: count, table: input_register, address: 0, data_type: uint32}}
      - {{property: running, table: coil, address: 0, data_type: bool}}
      - {{property: alarm, table: discrete_input, address: 1, data_type: bool, poll_ms: 100}}
"""
    )


def opcua_yaml(endpoint: str, ns: int) -> str:
    return (
        UPLINK
        + f"""
devices:
  - product_key: imm
    device_name: IMM-1
    device_secret: x
    connector: {{type: opcua, endpoint: "{endpoint}", publishing_interval_ms: 50,
                 watchdog_s: 0.2, timeout_s: 1, reconnect_min_s: 0.05, reconnect_max_s: 0.2}}
    points:
      - {{property: temperature, node: "ns={ns};s=Machine.Temperature", sampling_interval_ms: 20}}
      - {{property: speed, browse_path: ["{ns}:Machine", "{ns}:Speed"], mode: poll, poll_ms: 50}}
      - {{property: setpoint, node: "ns={ns};s=Machine.Setpoint", deadband: 0.5}}
      - {{property: running, node: "ns={ns};s=Machine.Running"}}
    services:
      - service: start
        object: {{node: "ns={ns};s=Machine"}}
        method: {{browse_path: ["{ns}:Machine", "{ns}:Start"]}}
        inputs: [speed]
        outputs: [ok]
      - service: reset
        object: {{node: "ns={ns};s=Machine"}}
        method: {{node: "ns={ns};s=Machine.Reset"}}
        outputs: [code]
"""
    )


class Recorder:
    """Collects readings and status changes from a running connector."""

    def __init__(self) -> None:
        self.readings: list[RawReading] = []
        self.statuses: list[tuple[ConnectorStatus, str]] = []

    def emit(self, reading: RawReading) -> None:
        self.readings.append(reading)

    def report(self, status: ConnectorStatus, reason: str) -> None:
        self.statuses.append((status, reason))

    def latest(self, point: str) -> RawReading | None:
        return next((r for r in reversed(self.readings) if r.point == point), None)

    async def until(self, check: Callable[[], object], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.02)


def _config(text: str) -> GatewayConfig:
    return parse_config(text, "test.yaml", Path("."))


@pytest.fixture
async def modbus() -> AsyncIterator[ModbusMachine]:
    machine = ModbusMachine()
    await machine.start()
    yield machine
    await machine.stop()


@pytest.fixture
async def opcua() -> AsyncIterator[OpcUaMachine]:
    machine = OpcUaMachine()
    await machine.start()
    yield machine
    await machine.stop()


async def test_modbus_reads_merged_blocks_and_writes(modbus: ModbusMachine) -> None:
    device = _config(modbus_yaml(modbus.port)).devices[0]
    connector = registry.get("modbus").create(device)
    assert isinstance(connector, ModbusConnector)
    # HR 0-3 and 10-13 merge (gap 6 <= max_gap 8); IR, coils and the 100 ms group apart
    assert {p: [(b.table, b.address, b.count) for b in g] for p, g in connector.groups.items()} == {
        50: [("coil", 0, 1), ("holding_register", 0, 14), ("input_register", 0, 2)],
        100: [("discrete_input", 1, 1)],
    }
    rec = Recorder()
    task = asyncio.create_task(connector.run(rec.emit, rec.report))
    try:
        names = {"pressure", "temperature", "setpoint", "name", "count", "running", "alarm"}
        await rec.until(lambda: {r.point for r in rec.readings} == names)
        first = rec.latest("count")
        assert first is not None
        await rec.until(lambda: (c := rec.latest("count")) is not None and c.value != first.value)
        values = {p: rec.latest(p).value for p in names}  # type: ignore[union-attr]
        assert 6.0 <= values["pressure"] < 7.0  # float32, word order little
        assert 235 <= values["temperature"] < 255 and isinstance(values["temperature"], int)
        assert values["name"] == "CMP-7" and values["running"] is True and values["alarm"] is True
        assert all(r.quality is Quality.GOOD for r in rec.readings)
        # the converter maps raw to thing-model values, and back for writes
        conv = DeviceConverter(device)
        temp = conv.sample(rec.latest("temperature"))  # type: ignore[arg-type]
        assert temp is not None and isinstance(temp.value, float) and 23.5 <= temp.value < 25.5
        await connector.write(conv.downlink({"setpoint": 42.5, "running": False}))
        assert await modbus.get(3, 3) == [425]
        assert await modbus.get(1, 0) == [False]
        with pytest.raises(WriteRefused, match="read-only"):
            await connector.write({"count": 1})
        with pytest.raises(WriteRefused, match="not mapped"):
            await connector.write({"nothing": 1})
        assert rec.statuses == [(ConnectorStatus.UP, "")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_modbus_link_goes_down_and_recovers(modbus: ModbusMachine) -> None:
    connector = registry.get("modbus").create(_config(modbus_yaml(modbus.port)).devices[0])
    rec = Recorder()
    task = asyncio.create_task(connector.run(rec.emit, rec.report))
    try:
        await rec.until(lambda: rec.statuses == [(ConnectorStatus.UP, "")])
        await modbus.stop()
        await rec.until(lambda: rec.statuses[-1][0] is ConnectorStatus.DOWN)
        again = ModbusMachine()
        again.port = modbus.port
        again.device = modbus.device
        await again.start()
        try:
            await rec.until(lambda: rec.statuses[-1][0] is ConnectorStatus.UP)
            n = len(rec.readings)
            await rec.until(lambda: len(rec.readings) > n + 7)
        finally:
            await again.stop()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_opcua_subscribes_polls_writes_and_calls(opcua: OpcUaMachine) -> None:
    device = _config(opcua_yaml(opcua.endpoint, opcua.ns)).devices[0]
    connector = registry.get("opcua").create(device)
    assert isinstance(connector, OpcUaConnector)
    rec = Recorder()
    task = asyncio.create_task(connector.run(rec.emit, rec.report))
    try:
        await rec.until(
            lambda: (
                {r.point for r in rec.readings} >= {"temperature", "speed", "setpoint", "running"}
            )
        )
        speeds = lambda: {r.value for r in rec.readings if r.point == "speed"}  # noqa: E731
        await rec.until(lambda: len(speeds()) >= 3)  # polled, and changing
        temps = lambda: {r.value for r in rec.readings if r.point == "temperature"}  # noqa: E731
        await rec.until(lambda: len(temps()) >= 3)  # subscribed, and changing
        assert isinstance(rec.latest("speed").value, int)  # type: ignore[union-attr]
        assert rec.latest("running").value is False  # type: ignore[union-attr]
        await connector.write({"setpoint": 42.5})
        assert await opcua.value("Setpoint") == pytest.approx(42.5)
        await rec.until(lambda: rec.latest("setpoint").value == pytest.approx(42.5))  # type: ignore[union-attr]
        assert await connector.call("start", {"speed": 1500}) == {"ok": True}
        assert opcua.started_with == [1500]
        assert await connector.call("reset", {}) == {"code": 7}
        with pytest.raises(WriteRefused):
            await connector.call("launch", {})
        with pytest.raises(WriteRefused, match="required"):
            await connector.call("start", {})
        summary = await registry.get("opcua").create(device).probe()
        assert "4 points, 2 methods" in summary
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_opcua_link_goes_down_and_recovers(opcua: OpcUaMachine) -> None:
    connector = registry.get("opcua").create(
        _config(opcua_yaml(opcua.endpoint, opcua.ns)).devices[0]
    )
    rec = Recorder()
    task = asyncio.create_task(connector.run(rec.emit, rec.report))
    try:
        await rec.until(lambda: rec.statuses == [(ConnectorStatus.UP, "")])
        await opcua.stop()
        await rec.until(lambda: rec.statuses[-1][0] is ConnectorStatus.DOWN)
        again = OpcUaMachine()
        again.port, again.endpoint = opcua.port, opcua.endpoint
        await again.start()
        try:
            await rec.until(lambda: rec.statuses[-1][0] is ConnectorStatus.UP, timeout=15)
            n = len(rec.readings)
            await rec.until(lambda: len(rec.readings) > n + 3)
        finally:
            await again.stop()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_opcua_username_identity() -> None:
    machine = OpcUaMachine(users={"edge": "edge-pw"})
    await machine.start()
    try:
        for identity, expected in (
            ("{kind: username, username: edge, password: edge-pw}", ConnectorStatus.UP),
            ("{kind: username, username: edge, password: wrong}", ConnectorStatus.DOWN),
        ):
            text = opcua_yaml(machine.endpoint, machine.ns).replace(
                "publishing_interval_ms: 50,", f"publishing_interval_ms: 50, identity: {identity},"
            )
            connector = registry.get("opcua").create(_config(text).devices[0])
            rec = Recorder()
            task = asyncio.create_task(connector.run(rec.emit, rec.report))
            try:
                await rec.until(lambda rec=rec: rec.statuses)
                assert rec.statuses[0][0] is expected, rec.statuses
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await machine.stop()


async def test_opcua_polls_what_the_server_will_not_monitor(
    opcua: OpcUaMachine, caplog: pytest.LogCaptureFixture
) -> None:
    text = opcua_yaml(opcua.endpoint, opcua.ns).replace(
        f'node: "ns={opcua.ns};s=Machine.Running"}}',
        f'node: "ns={opcua.ns};s=Machine.Running"}}\n      - {{property: machine, node: "ns={opcua.ns};s=Machine", poll_ms: 50}}',
    )
    connector = registry.get("opcua").create(_config(text).devices[0])
    rec = Recorder()
    task = asyncio.create_task(connector.run(rec.emit, rec.report))
    try:
        # an object has no value to monitor: the server refuses the item, the point is polled
        await rec.until(lambda: len([r for r in rec.readings if r.point == "machine"]) >= 2)
        assert {r.quality for r in rec.readings if r.point == "machine"} == {Quality.BAD}
        assert "cannot monitor machine (BadAttributeIdInvalid); polling it instead" in caplog.text
        assert rec.statuses == [(ConnectorStatus.UP, "")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_modbus_rtu() -> None:
    pytest.importorskip("serial")
    machine = ModbusMachine(rtu=True)
    await machine.start()
    text = modbus_yaml(machine.port).replace(
        "host: 127.0.0.1,",
        f'transport: rtu, serial_port: "socket://127.0.0.1:{machine.port}", baudrate: 9600,',
    )
    connector = registry.get("modbus").create(_config(text).devices[0])
    rec = Recorder()
    task = asyncio.create_task(connector.run(rec.emit, rec.report))
    try:
        await rec.until(lambda: (r := rec.latest("name")) is not None and r.value == "CMP-7")
        await connector.write({"setpoint": 300})
        assert await machine.get(3, 3) == [300]
        assert rec.statuses == [(ConnectorStatus.UP, "")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await machine.stop()
