"""The demo province as data (pure): the 1+N platforms, the enterprises with their GB 32100
credit codes, the demo users, and how `n` simulated devices are spread over the enterprises
and their front-ends. `qiantang.sim.seed` creates it through the services.

The enterprises are fictitious; their names follow the style of real firms in each
cluster (Keqiao textiles, Ningbo moulds, Wenling and Rui'an pumps and valves).
"""

from __future__ import annotations

from dataclasses import dataclass

from qiantang.domain.access import Role
from qiantang.domain.enterprise import credit_code_check_character
from qiantang.domain.platform import PlatformKind

__all__ = [
    "BASE_NAME",
    "BASE_PREFIX",
    "DEMO_PASSWORD",
    "GATEWAY_ENTERPRISE",
    "PLATFORMS",
    "USERS",
    "DeviceSlot",
    "EnterpriseSpec",
    "PlatformSpec",
    "UserSpec",
    "allocate_devices",
    "enterprises",
]

BASE_PREFIX = "86.330"
BASE_NAME = "浙江省工业互联网基础平台"
#: Every demo user's password (printed by `qiantang demo`; this is a demo, not a deployment).
DEMO_PASSWORD = "qiantang-demo"  # noqa: S105 (printed for the demo on purpose)


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    """A platform below the base; `parent` is another spec's `key` ("" for the base)."""

    key: str
    name: str
    kind: PlatformKind
    parent: str = ""
    description: str = ""


PLATFORMS: tuple[PlatformSpec, ...] = (
    PlatformSpec(
        "textile", "纺织行业工业互联网平台", PlatformKind.INDUSTRY, "", "纺织、印染、织造"
    ),
    PlatformSpec("mould", "模具行业工业互联网平台", PlatformKind.INDUSTRY, "", "模具与注塑"),
    PlatformSpec("pumpvalve", "泵阀行业工业互联网平台", PlatformKind.INDUSTRY, "", "泵、阀门"),
    PlatformSpec("keqiao", "绍兴柯桥区工业互联网平台", PlatformKind.REGION, "", "绍兴市柯桥区"),
    PlatformSpec("ningbo", "宁波市工业互联网平台", PlatformKind.REGION, "", "宁波市"),
    PlatformSpec(
        "yongjiang", "甬江智造集团企业级平台", PlatformKind.ENTERPRISE, "ningbo", "集团级"
    ),
)


@dataclass(frozen=True, slots=True)
class EnterpriseSpec:
    """An enterprise: home platform key, member platform keys, and its machine mix (the
    kinds its devices cycle through)."""

    key: str
    name: str
    credit_code: str
    industry_code: str
    region_code: str
    home: str
    members: tuple[str, ...]
    mix: tuple[str, ...]


_TEXTILE_MIX = ("loom", "loom", "loom", "air_compressor", "loom", "loom", "power_meter")
_MOULD_MIX = ("cnc_machine", "injection_molding", "air_compressor", "cnc_machine", "power_meter")
_PUMP_MIX = ("cnc_machine", "air_compressor", "cnc_machine", "power_meter")

_ENTERPRISES = (
    # key, name, region, industry, home, members, mix
    ("e01", "宁波海曙精工模具有限公司", "330203", "C3525", "ningbo", ("mould",), _MOULD_MIX),
    ("e02", "绍兴柯桥锦华纺织有限公司", "330603", "C1713", "keqiao", ("textile",), _TEXTILE_MIX),
    ("e03", "绍兴瑞丰织造有限公司", "330603", "C1713", "keqiao", ("textile",), _TEXTILE_MIX),
    ("e04", "浙江绿洲印染织造有限公司", "330603", "C1713", "keqiao", ("textile",), _TEXTILE_MIX),
    ("e05", "柯桥新民纺织科技有限公司", "330603", "C1752", "textile", ("keqiao",), _TEXTILE_MIX),
    ("e06", "余姚华宇模塑有限公司", "330281", "C2929", "mould", ("ningbo",), _MOULD_MIX),
    ("e07", "宁波北仑东方精密模具有限公司", "330206", "C3525", "ningbo", ("mould",), _MOULD_MIX),
    ("e08", "宁波甬强注塑科技有限公司", "330212", "C2929", "mould", (), _MOULD_MIX),
    ("e09", "温岭市东海泵业有限公司", "331081", "C3441", "pumpvalve", (), _PUMP_MIX),
    ("e10", "瑞安市恒通阀门有限公司", "330381", "C3443", "pumpvalve", (), _PUMP_MIX),
    ("e11", "温州龙湾精密阀业有限公司", "330303", "C3443", "pumpvalve", (), _PUMP_MIX),
    ("e12", "宁波甬江智能装备有限公司", "330212", "C3525", "yongjiang", ("mould",), _MOULD_MIX),
)

#: The enterprise whose machines sit behind the demo's edge gateway.
GATEWAY_ENTERPRISE = "e01"


def _credit_code(region: str, index: int) -> str:
    """A valid unified social credit code: 9 (market regulator) 1 (enterprise), the region,
    an organisation code and the GB 32100 check character."""
    body = f"91{region}MA2{index:05d}T"
    return body + credit_code_check_character(body)


def enterprises() -> tuple[EnterpriseSpec, ...]:
    """The demo enterprises with their credit codes."""
    return tuple(
        EnterpriseSpec(key, name, _credit_code(region, i + 1), industry, region, home, members, mix)
        for i, (key, name, region, industry, home, members, mix) in enumerate(_ENTERPRISES)
    )


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A demo user: a role at a platform key or an enterprise key."""

    username: str
    display_name: str
    role: Role
    platform: str = ""
    enterprise: str = ""


USERS: tuple[UserSpec, ...] = (
    UserSpec("province", "省平台运营", Role.OPERATOR, platform="base"),
    UserSpec("textile-op", "纺织平台运营", Role.OPERATOR, platform="textile"),
    UserSpec("ningbo-op", "宁波平台运营", Role.OPERATOR, platform="ningbo"),
    UserSpec("haishu-admin", "海曙精工管理员", Role.ADMIN, enterprise="e01"),
    UserSpec("haishu-engineer", "海曙精工工程师", Role.ENGINEER, enterprise="e01"),
    UserSpec("haishu-viewer", "海曙精工访客", Role.VIEWER, enterprise="e01"),
    UserSpec("jinhua-admin", "锦华纺织管理员", Role.ADMIN, enterprise="e02"),
)


@dataclass(frozen=True, slots=True)
class DeviceSlot:
    """One simulated device to create: its enterprise, kind, name, seed and front-end."""

    enterprise: str
    kind: str
    device_name: str
    seed: int
    front: str
    faulty: bool
    unit_id: int = 0


_PREFIX = {
    "cnc_machine": "CNC",
    "injection_molding": "IMM",
    "air_compressor": "CMP",
    "loom": "LOOM",
    "power_meter": "PM",
}
_FAULT_EVERY = {"air_compressor": 8, "cnc_machine": 5}
_GATEWAY_OPCUA = ("cnc_machine", "injection_molding")
_GATEWAY_MODBUS = ("air_compressor", "power_meter")


def _shares(n: int, count: int) -> list[int]:
    base, extra = divmod(n, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def allocate_devices(n: int, seed: int) -> list[DeviceSlot]:
    """Spread `n` devices: a tenth (at least 4, at most 40) behind the gateway, half of those
    on OPC UA (CNC, moulding) and half on Modbus (compressors, meters); the rest direct over
    MQTT, shared evenly by the enterprises, each cycling through its machine mix. Every
    eighth compressor and every fifth CNC (the first ones included) is a demo fault."""
    specs = enterprises()
    behind = min(n, max(4, min(40, n // 10)))
    kinds: list[tuple[str, str, str]] = []  # (enterprise, kind, front)
    for i in range(behind):
        on_opcua = i % 2 == 0
        pool = _GATEWAY_OPCUA if on_opcua else _GATEWAY_MODBUS
        kinds.append((GATEWAY_ENTERPRISE, pool[(i // 2) % 2], "opcua" if on_opcua else "modbus"))
    for spec, share in zip(specs, _shares(n - behind, len(specs)), strict=True):
        kinds.extend((spec.key, spec.mix[j % len(spec.mix)], "mqtt") for j in range(share))
    counters: dict[str, int] = {}
    slots: list[DeviceSlot] = []
    unit = 0
    for index, (enterprise, kind, front) in enumerate(kinds):
        number = counters[kind] = counters.get(kind, 0) + 1
        if front == "modbus":
            unit += 1
        slots.append(
            DeviceSlot(
                enterprise=enterprise,
                kind=kind,
                device_name=f"{_PREFIX[kind]}-{number:04d}",
                seed=seed * 100_003 + index,
                front=front,
                faulty=kind in _FAULT_EVERY and number % _FAULT_EVERY[kind] == 1,
                unit_id=unit if front == "modbus" else 0,
            )
        )
    return slots
