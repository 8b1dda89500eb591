"""A plant on a platform, for the gateway tests: an enterprise, an engineer, a gateway product
and device, and one product and device per simulated machine (thing models included)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from qiantang.edge.health import GATEWAY_THING_MODEL
from tests.helpers.codes import credit_code


def _prop(identifier: str, dtype: dict[str, Any], mode: str = "r") -> dict[str, Any]:
    return {"identifier": identifier, "name": identifier, "access_mode": mode, "data_type": dtype}


FLOAT = {"type": "float", "specs": {"min": -1000, "max": 1000}}
INT = {"type": "int", "specs": {"min": 0, "max": 2**40}}
BOOL = {"type": "bool", "specs": {"false": "否", "true": "是"}}
SETPOINT = {"type": "float", "specs": {"min": 0, "max": 100}}

IMM_MODEL = {
    "properties": [
        _prop("temperature", FLOAT),
        _prop("speed", INT),
        _prop("setpoint", SETPOINT, "rw"),
        _prop("running", BOOL),
    ],
    "events": [],
    "services": [
        {
            "identifier": "start",
            "name": "启动",
            "call_type": "async",
            "input_data": [{"identifier": "speed", "name": "转速", "data_type": INT}],
            "output_data": [{"identifier": "ok", "name": "成功", "data_type": BOOL}],
        },
        {
            "identifier": "reset",
            "name": "复位",
            "call_type": "sync",
            "input_data": [],
            "output_data": [{"identifier": "code", "name": "结果码", "data_type": INT}],
        },
    ],
}
CMP_MODEL = {
    "properties": [
        _prop("pressure", FLOAT),
        _prop("temperature", FLOAT),
        _prop("setpoint", SETPOINT, "rw"),
        _prop("count", INT),
        _prop("running", BOOL, "rw"),
        _prop("name", {"type": "text", "specs": {"length": 32}}),
    ],
    "events": [],
    "services": [],
}


def make_plant(
    client: Callable[[str | None], httpx.Client],
    operator_key: str,
    base_id: int,
    n: int,
    more_compressors: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Create the plant; `client(token)` makes an API client (unauthenticated for None).
    `more_compressors`: names of further devices of the compressor product, keyed in
    ``devices`` by the name in lower case."""
    op = client(operator_key)
    ent = op.post(
        "/enterprises",
        json={
            "name": f"边缘网关工厂{n}",
            "credit_code": credit_code(f"91330200MA2B0009{n}"),
            "industry_code": "C34",
            "region_code": "330200",
            "home_platform_id": base_id,
        },
    ).json()
    user = f"edge-eng{n}"
    made = op.post(
        "/users",
        json={
            "username": user,
            "password": "edge-eng-pw",
            "role": "engineer",
            "enterprise_id": ent["id"],
        },
    )
    assert made.status_code == 201, made.text
    login = client(None).post("/auth/login", json={"username": user, "password": "edge-eng-pw"})
    eng = client(login.json()["token"])
    products = {}
    for key, name, model, node_type in (
        ("gw", "边缘网关", GATEWAY_THING_MODEL, "gateway"),
        ("imm", "注塑机", IMM_MODEL, None),
        ("cmp", "空压机", CMP_MODEL, None),
    ):
        body: dict[str, Any] = {"enterprise_id": ent["id"], "name": name, "thing_model": model}
        if node_type:
            body["node_type"] = node_type
        made = eng.post("/products", json=body)
        assert made.status_code == 201, made.text
        products[key] = made.json()
    devices = {}
    wanted = [("gw", "gw", "GW-1"), ("imm", "imm", "IMM-1"), ("cmp", "cmp", "CMP-1")]
    wanted += [(dn.lower(), "cmp", dn) for dn in more_compressors]
    for key, product, dn in wanted:
        made = eng.post("/devices", json={"product_id": products[product]["id"], "device_name": dn})
        assert made.status_code == 201, made.text
        devices[key] = {**made.json(), "product_key": products[product]["product_key"]}
    return {"eng": eng, "products": products, "devices": devices}


def gateway_yaml(mqtt_port: int, plant: dict[str, Any], machines: str, **outbox: Any) -> str:
    """A gateway config for `plant` on the platform's MQTT port; `machines` is the YAML of
    the device blocks (indented as list items under ``devices:``)."""
    gw = plant["devices"]["gw"]
    extra = "".join(f"\n  {k}: {v}" for k, v in outbox.items())
    return f"""
uplink:
  host: 127.0.0.1
  port: {mqtt_port}
  product_key: {gw["product_key"]}
  device_name: {gw["device_name"]}
  device_secret: {gw["device_secret"]}
  reply_timeout_s: 5
  reconnect_min_s: 0.1
  reconnect_max_s: 0.5
outbox:
  path: outbox.db
  synchronous: normal{extra}
health:
  period_s: 0.5
devices:
{machines}
"""


def machine_blocks(plant: dict[str, Any], opcua_endpoint: str, ns: int, modbus_port: int) -> str:
    """Device blocks for the OPC UA injection-moulding machine and the Modbus compressor."""
    imm, cmp = plant["devices"]["imm"], plant["devices"]["cmp"]
    return f"""
  - product_key: {imm["product_key"]}
    device_name: {imm["device_name"]}
    device_secret: {imm["device_secret"]}
    connector:
      type: opcua
      endpoint: "{opcua_endpoint}"
      publishing_interval_ms: 100
      watchdog_s: 0.5
      reconnect_min_s: 0.1
      reconnect_max_s: 0.5
    points:
      - {{property: temperature, node: "ns={ns};s=Machine.Temperature", sampling_interval_ms: 50}}
      - {{property: speed, browse_path: ["{ns}:Machine", "{ns}:Speed"], mode: poll, poll_ms: 200}}
      - {{property: setpoint, node: "ns={ns};s=Machine.Setpoint"}}
      - {{property: running, node: "ns={ns};s=Machine.Running"}}
    services:
      - service: start
        object: {{node: "ns={ns};s=Machine"}}
        method: {{node: "ns={ns};s=Machine.Start"}}
        inputs: [speed]
        outputs: [ok]
      - service: reset
        object: {{node: "ns={ns};s=Machine"}}
        method: {{node: "ns={ns};s=Machine.Reset"}}
        outputs: [code]
  - product_key: {cmp["product_key"]}
    device_name: {cmp["device_name"]}
    device_secret: {cmp["device_secret"]}
    connector: {{type: modbus, host: 127.0.0.1, port: {modbus_port}, unit_id: 1, poll_ms: 200,
                 reconnect_min_s: 0.1, reconnect_max_s: 0.5}}
    points:
      - {{property: pressure, table: holding_register, address: 0, data_type: float32, word_order: little}}
      - {{property: temperature, table: holding_register, address: 2, data_type: int16, scale: 0.1, type: float}}
      - {{property: setpoint, table: holding_register, address: 3, data_type: uint16, scale: 0.1, type: float}}
      - {{property: name, table: holding_register, address: 10, data_type: string, length: 4}}
      - {{property: count, table: input_register, address: 0, data_type: uint32}}
      - {{property: running, table: coil, address: 0}}
"""
