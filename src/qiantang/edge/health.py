"""The gateway's own health: link states, logged once when they change, and the properties
the gateway posts about itself.

A link (a connector's machine, or the platform) that goes down is logged once with the
reason, and once when it recovers; repeated failed attempts in between are not logged again.
The gateway device's thing model must declare the properties in `GATEWAY_THING_MODEL`.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from qiantang.edge.model import ConnectorStatus, Sample
from qiantang.edge.outbox import OutboxStats

__all__ = ["GATEWAY_THING_MODEL", "Health"]

log = logging.getLogger(__name__)
_TEXT_LENGTH: Final = 512


def _int(identifier: str, name: str) -> dict[str, Any]:
    spec = {"min": 0, "max": 2**62}
    return {
        "identifier": identifier,
        "name": name,
        "access_mode": "r",
        "data_type": {"type": "int", "specs": spec},
    }


def _text(identifier: str, name: str) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "name": name,
        "access_mode": "r",
        "data_type": {"type": "text", "specs": {"length": _TEXT_LENGTH}},
    }


GATEWAY_THING_MODEL: Final[dict[str, Any]] = {
    "properties": [
        _text("edge_status", "网关状态"),
        _text("edge_connectors", "连接器状态"),
        _int("edge_connectors_down", "未就绪的子设备数"),
        _int("edge_outbox_depth", "待发送样本数"),
        _int("edge_dropped", "丢弃样本数"),
        _int("edge_rejected", "被拒样本数"),
        _int("edge_bad_readings", "坏质量读数"),
        _text("edge_last_error", "最近错误"),
    ],
    "events": [],
    "services": [],
}
"""The thing model (Qiantang JSON) of a gateway product: what the gateway reports."""


class Health:
    """Link states, the last error, and counters."""

    def __init__(self, gateway: str, devices: list[str]) -> None:
        self.gateway = gateway
        self.links: dict[str, ConnectorStatus] = dict.fromkeys(devices, ConnectorStatus.STARTING)
        self.uplink = ConnectorStatus.STARTING
        self.last_error = ""
        self.bad_readings = 0
        self._refused: set[str] = set()

    def connector(self, device: str, status: ConnectorStatus, reason: str) -> None:
        """A connector's link changed (or failed again)."""
        before = self.links.get(device)
        self.links[device] = status
        if status is ConnectorStatus.DOWN:
            self.last_error = f"{device}: {reason}"[:_TEXT_LENGTH]
            if before is not ConnectorStatus.DOWN:
                log.warning("device %s is down: %s", device, reason)
        elif status is ConnectorStatus.UP and before is ConnectorStatus.DOWN:
            log.info("device %s recovered", device)

    def platform(self, up: bool, reason: str) -> None:
        """The uplink connected (after its handshake) or failed."""
        before = self.uplink
        self.uplink = ConnectorStatus.UP if up else ConnectorStatus.DOWN
        if not up:
            self.last_error = f"platform: {reason}"[:_TEXT_LENGTH]
            if before is not ConnectorStatus.DOWN:
                log.warning("platform unreachable: %s", reason)
        elif before is ConnectorStatus.DOWN:
            log.info("platform reachable again")
        elif before is ConnectorStatus.STARTING:
            log.info("connected to the platform")

    def refused(self, devices: dict[str, str]) -> None:
        """Sub-devices the platform would not take into the topology (logged once each)."""
        for device, reason in devices.items():
            self.last_error = f"{device}: {reason}"[:_TEXT_LENGTH]
            if device not in self._refused:
                log.warning("platform refused sub-device %s: %s", device, reason)
            self._refused.add(device)
        for device in self._refused - devices.keys():
            log.info("platform admitted sub-device %s", device)
        self._refused &= devices.keys()

    def error(self, text: str) -> None:
        """Remember the last error that did not take a link down (a refusal, a bad write)."""
        self.last_error = text[:_TEXT_LENGTH]

    def samples(self, stats: OutboxStats, ts: int) -> list[Sample]:
        """The gateway's health as samples of its own properties."""
        states = {k: "refused" if k in self._refused else v.value for k, v in self.links.items()}
        down = sum(1 for state in states.values() if state != "up")
        status = "ok" if down == 0 else "degraded"
        links = ";".join(f"{k}={v}" for k, v in sorted(states.items()))
        values: dict[str, int | str] = {
            "edge_status": status,
            "edge_connectors": links[:_TEXT_LENGTH],
            "edge_connectors_down": down,
            "edge_outbox_depth": stats.depth,
            "edge_dropped": stats.dropped,
            "edge_rejected": stats.rejected,
            "edge_bad_readings": self.bad_readings,
            "edge_last_error": self.last_error,
        }
        return [Sample(self.gateway, name, ts, value) for name, value in values.items()]
