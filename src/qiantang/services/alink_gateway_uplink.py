"""The gateway half of the Alink uplink: topology and session requests, and pack posts
(a gateway's own readings plus its sub-devices', each validated under its own device)."""

from __future__ import annotations

from qiantang.ports.ingress import Identity, InboundMessage
from qiantang.protocols import alink
from qiantang.protocols.alink_topics import AlinkError, TopicKind
from qiantang.services.device_auth import DeviceContext
from qiantang.services.gateway import TOPO_NOT_FOUND, GatewayService
from qiantang.services.ingest import Accepted, IngestCore, Reading

__all__ = ["gateway_request", "pack_post", "topic_matches", "topic_owner"]


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 matching of one filter against one topic."""
    want, have = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or (level != "+" and level != have[i]):
            return False
    return len(want) == len(have)


def topic_owner(topic: str) -> tuple[str, str] | None:
    """(product key, device name) a topic or filter is about, read from its fixed levels."""
    parts = topic.split("/")
    if len(parts) >= 5 and parts[1] in ("sys", "shadow", "ext"):
        if parts[1] == "sys":
            return parts[2], parts[3]
        if len(parts) >= 5 and parts[2] in ("get", "update", "session"):
            return parts[3], parts[4]
    return None


def gateway_request(
    gateways: GatewayService, kind: TopicKind, gateway: Identity, payload: bytes
) -> bytes:
    """Answer a topology or session request (blocking: call from a worker thread)."""
    handlers = {
        TopicKind.TOPO_ADD: lambda: gateways.topo_add(gateway, payload),
        TopicKind.TOPO_DELETE: lambda: gateways.topo_delete(gateway, payload),
        TopicKind.TOPO_GET: lambda: gateways.topo_get(gateway, payload),
        TopicKind.SESSION_LOGIN: lambda: gateways.login(gateway, payload, batch=False),
        TopicKind.SESSION_BATCH_LOGIN: lambda: gateways.login(gateway, payload, batch=True),
        TopicKind.SESSION_LOGOUT: lambda: gateways.logout(gateway, payload, batch=False),
        TopicKind.SESSION_BATCH_LOGOUT: lambda: gateways.logout(gateway, payload, batch=True),
    }
    return handlers[kind]()


async def pack_post(
    core: IngestCore, gateways: GatewayService, message: InboundMessage
) -> tuple[Accepted, str, bool]:
    """Validate a pack post; a sub-device outside the topology refuses the whole message."""
    gateway, now = message.identity, message.received_ms
    post = alink.decode_pack_post(message.payload, now)
    subs = []
    for block in post.sub_devices:
        sub = gateways.sub(gateway.device_id, block.product_key, block.device_name)
        if sub is None:
            where = f"{block.product_key}/{block.device_name}"
            raise AlinkError(
                TOPO_NOT_FOUND,
                "params.subDevices",
                "topology",
                f"{where} is not a sub-device",
                post.id,
            )
        subs.append((sub, block))
    context = gateway.extra
    assert isinstance(context, DeviceContext)
    await core.ensure_models([context.product_id, *(s.product_id for s, _ in subs)])
    result = Accepted()
    parts = [(gateway.device_id, context.product_id, post.properties, post.events)]
    parts += [(s.device_id, s.product_id, b.properties, b.events) for s, b in subs]
    for device_id, product_id, properties, events in parts:
        model = core.models.cached(product_id)
        rows: list[Reading] = [(r.identifier, r.value, r.ts) for r in properties]
        if rows:
            _merge(result, core.properties(model, device_id, rows, now))
        for ev in events:
            _merge(result, core.event(model, device_id, ev.identifier, ev.output, ev.ts))
    return result, post.id, post.ack


def _merge(into: Accepted, part: Accepted) -> None:
    into.points += part.points
    into.events += part.events
    into.errors += part.errors
