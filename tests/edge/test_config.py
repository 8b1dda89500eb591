"""Config files: a valid one loads; every error names its key path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pymodbus")

from qiantang.edge.config_file import load_config, parse_config
from qiantang.edge.errors import ConfigError
from qiantang.edge.modbus import ModbusDevice
from qiantang.edge.opcua_config import OpcUaDevice

GOOD = """\
uplink:
  host: 127.0.0.1
  port: 1883
  product_key: gwpk
  device_name: GW-1
  device_secret: ${EDGE_TEST_SECRET}
outbox:
  max_samples: 1000
devices:
  - product_key: imm
    device_name: IMM-1
    device_secret: s1
    connector: {type: opcua, endpoint: "opc.tcp://127.0.0.1:4840/"}
    points:
      - {property: temperature, node: "ns=2;s=T"}
  - product_key: cmp
    device_name: CMP-1
    device_secret: s2
    connector: {type: modbus, port: 5020}
    points:
      - property: pressure
        table: holding_register
        address: 0
        data_type: float32
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "gw.yaml", Path("/etc/qiantang"))
    return [str(p) for p in caught.value.problems]


def test_a_valid_config_loads_with_typed_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_TEST_SECRET", "from-env")
    path = tmp_path / "gw.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.uplink.device_secret.get_secret_value() == "from-env"
    assert config.outbox.path == tmp_path / "outbox.db"  # relative to the file
    imm, cmp = config.devices
    assert isinstance(imm, OpcUaDevice) and isinstance(cmp, ModbusDevice)
    assert cmp.points[0].count == 2 and cmp.key == "cmp/CMP-1"
    assert "from-env" not in repr(config)  # secrets stay out of logs


def test_errors_name_the_key_path_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TEST_SECRET", "x")
    bad = GOOD.replace("port: 1883", "port: 70000").replace("address: 0", "address: -1")
    bad = bad.replace("data_type: float32", "data_type: float32\n        colour: red")
    assert problems(bad) == [
        "line 3: uplink.port: Input should be less than or equal to 65535",
    ]  # the top level is checked first
    bad = GOOD.replace("address: 0", "address: -1").replace(
        "data_type: float32", "data_type: float32\n        colour: red"
    )
    assert problems(bad) == [
        "line 23: devices[1].points[0].address: Input should be greater than or equal to 0",
        "line 25: devices[1].points[0].colour: Extra inputs are not permitted",
    ]


def test_missing_keys_point_at_their_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TEST_SECRET", "x")
    got = problems(GOOD.replace("    device_secret: s1\n", ""))
    assert got == ["line 10: devices[0].device_secret: Field required"]


def test_connector_kind_duplicates_env_and_yaml_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_TEST_SECRET", raising=False)
    assert problems(GOOD) == ["line 6: uplink.device_secret: ${EDGE_TEST_SECRET} is not set"]
    monkeypatch.setenv("EDGE_TEST_SECRET", "x")
    unknown = problems(GOOD.replace("type: modbus", "type: s7"))
    assert len(unknown) == 1 and unknown[0].startswith(
        "line 19: devices[1].connector.type: unknown connector type 's7'"
    )
    twice = problems(
        GOOD.replace("device_name: CMP-1", "device_name: IMM-1").replace(
            "product_key: cmp", "product_key: imm"
        )
    )
    assert twice == ["line 16: devices[1]: imm/IMM-1 appears twice"]
    assert problems(GOOD.replace("  port: 1883\n", "  port: 1883\n  port: 1884\n")) == [
        "line 4: uplink.port: is given twice"
    ]
    assert problems("uplink: [1, 2\n")[0].startswith("line 2: (top level): not valid YAML")
    mapped_twice = GOOD.replace(
        '      - {property: temperature, node: "ns=2;s=T"}',
        "      - {property: t, node: a}\n      - {property: t, node: b}",
    )
    assert problems(mapped_twice) == [
        "line 10: devices[0]: Value error, property 't' is mapped twice"
    ]


def test_connector_specific_rules() -> None:
    text = GOOD.replace("${EDGE_TEST_SECRET}", "x")
    assert problems(text.replace('endpoint: "opc.tcp://127.0.0.1:4840/"', 'endpoint: "http://x"'))[
        0
    ].startswith("line 13: devices[0].connector.endpoint: String should match pattern")
    coil = text.replace("table: holding_register", "table: coil")
    assert problems(coil) == [
        "line 21: devices[1].points[0]: Value error, a coil holds a bool, not float32"
    ]
    both = text.replace('node: "ns=2;s=T"}', 'node: "ns=2;s=T", browse_path: ["2:T"]}')
    assert problems(both) == [
        "line 15: devices[0].points[0]: Value error, give exactly one of node and browse_path"
    ]
