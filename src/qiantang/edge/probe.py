"""`qiantang gateway check`: probe every endpoint a config names, once.

Each connector connects, reads every point once and disconnects; the uplink connects with
the gateway's credentials (a refused CONNACK means a wrong key, name or secret) and
disconnects. Probes run concurrently, each bounded by `timeout_s`. Sub-device secrets are
checked by the platform at the topology step of `run`, which changes platform state, so
`check` does not do it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiomqtt

from qiantang.edge.config import GatewayConfig
from qiantang.edge.errors import EdgeError
from qiantang.edge.registry import ConnectorRegistry, registry
from qiantang.edge.uplink import mqtt_client

__all__ = ["ProbeResult", "probe_all"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found."""

    name: str
    ok: bool
    detail: str


async def _uplink(config: GatewayConfig) -> str:
    up = config.uplink
    try:
        async with mqtt_client(up, client_id=f"{up.product_key}.{up.device_name}.check"):
            pass
    except aiomqtt.MqttError as err:
        raise EdgeError(f"mqtt {up.host}:{up.port} as {up.key}: {err}") from err
    return f"mqtt {up.host}:{up.port}: signed in as {up.key}"


async def _bounded(
    name: str, work: asyncio.Future[str] | asyncio.Task[str], timeout_s: float
) -> ProbeResult:
    try:
        return ProbeResult(name, True, await asyncio.wait_for(work, timeout_s))
    except TimeoutError:
        return ProbeResult(name, False, f"no answer in {timeout_s:g} s")
    except EdgeError as err:
        return ProbeResult(name, False, str(err))


async def probe_all(
    config: GatewayConfig, connectors: ConnectorRegistry = registry, timeout_s: float = 10.0
) -> list[ProbeResult]:
    """One result per sub-device, then one for the platform."""
    jobs = []
    for device in config.devices:
        connector = connectors.get(device.connector.type).create(device)
        jobs.append(_bounded(device.key, asyncio.ensure_future(connector.probe()), timeout_s))
    jobs.append(_bounded("platform", asyncio.ensure_future(_uplink(config)), timeout_s))
    return list(await asyncio.gather(*jobs))
