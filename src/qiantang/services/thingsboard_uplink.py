"""ThingsBoard device and gateway MQTT APIs on the embedded broker.

A device or gateway authenticates with an access token as its MQTT username. Telemetry keys
map to thing-model properties and are validated like Alink posts (a key that does not fit is
refused with its reason in the message log; the rest is stored). Client attributes are the
shadow's reported state, shared attributes its desired state (pushed on change). Service
calls go out as server-side RPC; client-side RPC answers ``getSessionLimits`` and
``getCurrentTime``. A gateway's devices are its topology; devices it announces that Qiantang
does not know are created in the gateway's provisioning product (if one is set).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.ports.ingress import Identity, InboundMessage, MqttIngress
from qiantang.protocols import thingsboard as tb
from qiantang.protocols.alink import AlinkReply
from qiantang.registry.tables import Device, Product, Topology
from qiantang.services.commands import CallRequest, CommandService
from qiantang.services.device_auth import DeviceContext
from qiantang.services.gateway import SubDevice
from qiantang.services.ingest import Accepted, IngestCore, Reading
from qiantang.services.provisioning import provision_behind
from qiantang.services.security import DeviceSecrets
from qiantang.services.shadow import ShadowService
from qiantang.services.telemetry_state import DeviceStates, LogEntry, MessageLog

__all__ = [
    "RPC_FAILED",
    "ThingsBoardUplink",
    "is_thingsboard",
    "rpc_reply",
]

log = logging.getLogger(__name__)
ME = "v1/devices/me/"
GW = "v1/gateway/"
_DEVICE_PUBLISH = ("telemetry", "attributes")
_DEVICE_PREFIXES = ("attributes/request/", "rpc/request/", "rpc/response/")
_DEVICE_FILTERS = frozenset(
    {"attributes", "attributes/response/+", "rpc/request/+", "rpc/response/+", "attributes/+"}
)
_GATEWAY_TOPICS = frozenset(
    {"connect", "disconnect", "telemetry", "attributes", "attributes/request", "rpc"}
)
_GATEWAY_FILTERS = frozenset({"attributes", "attributes/response", "rpc"})
RPC_FAILED = 500  # the reply code of a call the device answered with an error


def is_thingsboard(identity: Identity) -> bool:
    """Whether the connection authenticated with an access token."""
    return isinstance(identity.extra, DeviceContext) and identity.extra.protocol == "thingsboard"


def _gateway(identity: Identity) -> bool:
    return isinstance(identity.extra, DeviceContext) and identity.extra.is_gateway


@dataclass(frozen=True, slots=True)
class _Route:
    uplink: ThingsBoardUplink
    client_id: str
    device_name: str | None  # set for a device behind a gateway

    def shared_attributes(self, values: dict[str, Any]) -> tuple[str, bytes]:
        """The topic and payload pushing shared attribute changes to this device."""
        if self.device_name is None:
            return ME + "attributes", tb.encode(values)
        return GW + "attributes", tb.encode({"device": self.device_name, "data": values})

    async def send(self, request: CallRequest, rid: str, params: dict[str, Any]) -> str | None:
        """Property sets become shared attributes (no reply in ThingsBoard); services RPC."""
        if request.kind == "property_set":
            await self.uplink.send(self.client_id, *self.shared_attributes(params))
            return "delivered as shared attributes"
        call = {"method": request.identifier, "params": tb.rpc_params(params)}
        if self.device_name is None:
            await self.uplink.send(self.client_id, f"{ME}rpc/request/{rid}", tb.encode(call))
        else:
            data = {"id": int(rid), **call}
            await self.uplink.send(
                self.client_id, GW + "rpc", tb.encode({"device": self.device_name, "data": data})
            )
        return None


class ThingsBoardUplink:
    """The platform side of ThingsBoard devices and gateways."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        secrets: DeviceSecrets,
        core: IngestCore,
        states: DeviceStates,
        shadows: ShadowService,
        commands: CommandService,
        message_log: MessageLog,
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self.core, self.states, self.shadows = core, states, shadows
        self.commands, self.log = commands, message_log
        self.ingress: MqttIngress | None = None
        self._clients: dict[int, str] = {}  # device id -> client id (direct connections)
        self._children: dict[int, tuple[str, str]] = {}  # device id -> (gateway client, name)
        self._by_name: dict[tuple[int, str], SubDevice] = {}  # (gateway id, name) -> device

    # --- ACL -----------------------------------------------------------------------------------
    def may_publish(self, identity: Identity, topic: str) -> bool:
        """Device topics under ``v1/devices/me``; gateway topics for gateways."""
        if topic.startswith(ME):
            rest = topic[len(ME) :]
            return rest in _DEVICE_PUBLISH or rest.startswith(_DEVICE_PREFIXES)
        return _gateway(identity) and topic.startswith(GW) and topic[len(GW) :] in _GATEWAY_TOPICS

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        """The filters ThingsBoard clients use."""
        if topic_filter.startswith(ME):
            return topic_filter[len(ME) :] in _DEVICE_FILTERS
        return (
            _gateway(identity)
            and topic_filter.startswith(GW)
            and topic_filter[len(GW) :] in _GATEWAY_FILTERS
        )

    # --- connections and routing -----------------------------------------------------------------
    def connected(self, identity: Identity, client_id: str, up: bool) -> None:
        """Track which connection serves a device (and, for a gateway, its devices)."""
        if up:
            self._clients[identity.device_id] = client_id
            return
        self._clients.pop(identity.device_id, None)
        now = int(time.time() * 1000)
        for device_id, (gateway_client, _) in list(self._children.items()):
            if gateway_client == client_id:
                del self._children[device_id]
                self.states.connected(device_id, now, False)

    def route(self, device_id: int) -> _Route | None:
        """How to reach a ThingsBoard device, if it is one that is connected."""
        if device_id in self._clients:
            return _Route(self, self._clients[device_id], None)
        if device_id in self._children:
            client, name = self._children[device_id]
            return _Route(self, client, name)
        return None

    async def send(self, client_id: str, topic: str, payload: bytes) -> None:
        """To one connection only (every client shares the ``v1/devices/me`` topics)."""
        if self.ingress is not None:
            await self.ingress.publish_to(client_id, topic, payload, qos=1)

    # --- messages ------------------------------------------------------------------------------
    async def handle(self, message: InboundMessage) -> Accepted:
        """One message from a ThingsBoard client; returns what to store."""
        topic = message.topic
        try:
            if topic.startswith(ME):
                return await self._device(message, message.identity, topic[len(ME) :])
            return await self._gateway(message, topic[len(GW) :])
        except tb.ThingsBoardError as err:
            self._log(message, message.identity.device_id, 460, "rejected", str(err))
            return Accepted()

    async def _device(self, message: InboundMessage, identity: Identity, rest: str) -> Accepted:
        device_id = identity.device_id
        if rest == "telemetry":
            rows = tb.decode_telemetry(message.payload, message.received_ms)
            return await self._telemetry(message, device_id, _product(identity), rows)
        if rest == "attributes":
            values = tb.decode_attributes(message.payload)
            await asyncio.to_thread(self.shadows.report_attributes, device_id, values)
            self._log(message, device_id, 200, "accepted", f"{len(values)} client attributes")
        elif rest.startswith("attributes/request/"):
            await self._attribute_request(message, device_id, rest.rsplit("/", 1)[1])
        elif rest.startswith("rpc/request/"):
            method, _ = tb.decode_rpc(message.payload)
            answer = tb.client_rpc(method, int(time.time() * 1000))
            await self.send(
                message.client_id, f"{ME}rpc/response/{rest.rsplit('/', 1)[1]}", tb.encode(answer)
            )
            self._log(message, device_id, 200, "accepted", f"client RPC {method}")
        elif rest.startswith("rpc/response/"):
            rid = rest.rsplit("/", 1)[1]
            outcome = self._resolve(device_id, rid, message.payload)
            self._log(message, device_id, 200, "reply", outcome)
        return Accepted()

    def _resolve(self, device_id: int, rid: str, payload: bytes) -> str:
        try:
            data: Any = tb.decode_attributes(payload) if payload.strip().startswith(b"{") else None
        except tb.ThingsBoardError:
            data = None
        return self.commands.resolve(device_id, rid, rpc_reply(rid, data))

    async def _attribute_request(self, message: InboundMessage, device_id: int, rid: str) -> None:
        request = tb.decode_attribute_request(message.payload)
        client, shared = await asyncio.to_thread(self.shadows.attributes, device_id)
        body = {
            "client": _pick(client, request.client_keys),
            "shared": _pick(shared, request.shared_keys),
        }
        await self.send(message.client_id, f"{ME}attributes/response/{rid}", tb.encode(body))
        self._log(message, device_id, 200, "accepted", "attribute request")

    async def _telemetry(
        self, message: InboundMessage, device_id: int, product_id: int, rows: tb.Rows
    ) -> Accepted:
        await self.core.ensure_models([product_id])
        model = self.core.models.cached(product_id)
        result = Accepted()
        for ts, values in rows:
            readings: list[Reading] = [(k, v, ts) for k, v in values.items()]
            part = self.core.properties(model, device_id, readings, message.received_ms)
            result.points += part.points
            result.errors += part.errors
        code = 460 if result.errors else 200
        outcome = "accepted" if not result.errors else ("partial" if result.points else "rejected")
        self._log(message, device_id, code, outcome, result.reason())
        self.states.seen(device_id, message.received_ms)
        return result

    # --- gateways -------------------------------------------------------------------------------
    async def _gateway(self, message: InboundMessage, rest: str) -> Accepted:
        gateway = message.identity
        if rest in ("connect", "disconnect"):
            await self._gateway_connect(message, rest == "connect")
        elif rest == "telemetry":
            return await self._gateway_telemetry(message)
        elif rest == "attributes":
            for name, values in tb.decode_gateway_attributes(message.payload).items():
                sub = await self._sub(gateway, name)
                if sub is not None:
                    await asyncio.to_thread(self.shadows.report_attributes, sub.device_id, values)
        elif rest == "attributes/request":
            request = tb.decode_gateway_attribute_request(message.payload)
            await self._gateway_attributes(message, request)
        elif rest == "rpc":
            await self._gateway_rpc_reply(message)
        return Accepted()

    async def _gateway_connect(self, message: InboundMessage, up: bool) -> None:
        name, _ = tb.decode_gateway_device(message.payload)
        sub = await self._sub(message.identity, name)
        if sub is None:
            self._log(message, message.identity.device_id, 6100, "rejected", f"unknown {name!r}")
            return
        self.states.connected(sub.device_id, message.received_ms, up)
        if up:
            self._children[sub.device_id] = (message.client_id, name)
        else:
            self._children.pop(sub.device_id, None)

    async def _gateway_telemetry(self, message: InboundMessage) -> Accepted:
        result = Accepted()
        by_device = tb.decode_gateway_telemetry(message.payload, message.received_ms)
        for name, rows in by_device.items():
            sub = await self._sub(message.identity, name)
            if sub is None:
                gid = message.identity.device_id
                self._log(message, gid, 6100, "rejected", f"unknown device {name!r}")
                continue
            self._children.setdefault(sub.device_id, (message.client_id, name))
            part = await self._telemetry(message, sub.device_id, sub.product_id, rows)
            result.points += part.points
        return result

    async def _gateway_rpc_reply(self, message: InboundMessage) -> None:
        reply = tb.decode_gateway_rpc_reply(message.payload)
        sub = await self._sub(message.identity, reply.device)
        if sub is None:
            return
        rid = str(reply.id)
        outcome = self.commands.resolve(sub.device_id, rid, rpc_reply(rid, reply.data))
        self._log(message, sub.device_id, 200, "reply", outcome)

    async def _gateway_attributes(
        self, message: InboundMessage, request: tb.GatewayAttributeRequest
    ) -> None:
        sub = await self._sub(message.identity, request.device)
        client, shared = (
            ({}, {})
            if sub is None
            else await asyncio.to_thread(self.shadows.attributes, sub.device_id)
        )
        wanted = {**_pick(client, request.client_keys), **_pick(shared, request.shared_keys)}
        body: dict[str, Any] = {"id": request.id, "device": request.device}
        keys = [*request.client_keys, *request.shared_keys]
        if len(keys) == 1:
            body["value"] = wanted.get(keys[0])
        else:
            body["values"] = wanted
        await self.send(message.client_id, GW + "attributes/response", tb.encode(body))

    async def _sub(self, gateway: Identity, name: str) -> SubDevice | None:
        key = (gateway.device_id, name)
        if key not in self._by_name:
            found = await asyncio.to_thread(self._find_or_provision, gateway, name)
            if found is None:
                return None
            self._by_name[key] = found
        return self._by_name[key]

    def _find_or_provision(self, gateway: Identity, name: str) -> SubDevice | None:
        """A device of the gateway's topology with this name, else a new one in the
        gateway's provisioning product (if auto-provisioning is on)."""
        with self._sessions() as db:
            row = db.execute(
                select(Device, Product)
                .join(Topology, Topology.sub_device_id == Device.id)
                .join(Product, Product.id == Device.product_id)
                .where(Topology.gateway_id == gateway.device_id, Device.device_name == name)
            ).first()
            if row is not None:
                return _sub(row[0], row[1])
            if len(name) > 64:
                return None
            found = provision_behind(db, gateway.device_id, name)
            if isinstance(found, str):
                log.info("gateway %s: %s", gateway.device_name, found)
                return None
            db.commit()
            return _sub(*found)

    def _log(
        self, message: InboundMessage, device_id: int, code: int, outcome: str, reason: str
    ) -> None:
        entry = LogEntry(
            message.received_ms, message.topic, code, outcome, reason, len(message.payload)
        )
        self.log.add(device_id, entry)


def _sub(device: Device, product: Product) -> SubDevice:
    return SubDevice(
        device.id, product.id, device.enterprise_id, product.product_key, device.device_name
    )


def _product(identity: Identity) -> int:
    assert isinstance(identity.extra, DeviceContext)
    return identity.extra.product_id


def _pick(values: dict[str, Any], keys: list[str] | None) -> dict[str, Any]:
    return dict(values) if keys is None else {k: values[k] for k in keys if k in values}


def rpc_reply(rid: str, data: Any) -> AlinkReply:
    """A server-side RPC answer as a call reply. ThingsBoard answers are free JSON, often
    wrapped as ``{"result": ...}`` (the gateway's connectors always wrap). ``{"error": ...}``
    or ``{"success": false}``, wrapped or not, is a failure carrying that message. A bare value
    or ``{"value": v}`` (how integrations answer a read or a write; ``value`` is reserved, so
    never an output identifier) becomes the output ``result``; an object is the outputs."""
    inner = data["result"] if isinstance(data, dict) and data.keys() == {"result"} else data
    if isinstance(inner, dict) and ("error" in inner or inner.get("success") is False):
        message = str(inner.get("error", "the device reported a failure"))[:256]
        return AlinkReply(rid, RPC_FAILED, data, message)
    if isinstance(inner, dict) and inner.keys() == {"value"}:
        inner = inner["value"]
    output = inner if isinstance(inner, dict) and inner is data else {"result": inner}
    return AlinkReply(rid, 200, output, "success")
