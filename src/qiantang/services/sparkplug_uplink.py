"""The platform as a Sparkplug B host application on the embedded broker.

`AlinkUplink` hands this service every ``spBv1.0/...`` topic: the ACL, the messages and the
connection changes; `qiantang.services.sparkplug_host.SparkplugHost` (pure) keeps the
sessions, this module does the I/O around it.

- **Who an edge node is.** An edge node connects as a Qiantang device - normally a gateway -
  with that device's credentials: a ThingsBoard-style access token as the MQTT username (no
  password), or an Alink-signed CONNECT. Its Sparkplug ids are that device's: ``group_id``
  is its product key, ``edge_node_id`` its device name, so the ACL needs no lookup: a node
  publishes only ``spBv1.0/{its product key}/{N|D}{BIRTH,DATA,DEATH}/{its name}[/...]`` and
  subscribes only to its own NCMD/DCMD topics and to ``spBv1.0/STATE/{host_id}``.
- **Devices.** The node's own metrics belong to the node's device; a DBIRTH's device is
  found or provisioned behind the node (`sparkplug_devices.SparkplugRegistry`).
- **Births** add the metrics the product's thing model lacks as read-write properties when
  `extend_models` is on (the ``sparkplug_extend_models`` setting); metric names map to
  identifiers by `qiantang.protocols.sparkplug_naming`. With it off, metrics the model does
  not define are refused per metric, as Alink properties are.
- **Data** (births' values, NDATA, DDATA by alias or name) goes through `IngestCore`: the
  same validation and store as Alink. Transient metrics, control metrics (``Node
  Control/...``) and values without a thing-model type (DataSet, Template, bytes) are not
  stored. Every message is judged in the message log of its device (the node's for node
  messages and for what cannot be placed).
- **Online/offline.** Births bring a node and its devices online; NDEATH, DDEATH and the
  MQTT will take them offline (`DeviceStates`). The embedded broker keeps no client wills
  (see `qiantang.ports.ingress`); the node's connection closing *is* the will - the host
  then does what the node's NDEATH will would have done.
- **Rebirth.** A sequence gap, an unknown alias or data before birth makes the host publish
  NCMD ``Node Control/Rebirth`` (rate-limited per node by the host).
- **STATE.** The host's ``spBv1.0/STATE/{host_id}`` birth (JSON, online true) is published
  retained (QoS 1) by `start`, so every node that subscribes later gets it from the broker;
  `stop` publishes the death (online false, retained) before the broker closes - the will
  of a host that shares the broker's process. A crash takes the broker down with the host, and
  every edge node learns of it from its own connection.
- **Writes.** `route` makes Sparkplug devices reachable for `CommandService`: a property set
  or service call becomes one NCMD (the node) or DCMD writing the params as the birth's
  metrics (by alias where the birth gave one); it ends as delivered (Sparkplug commands have
  no replies), or failed when a param is not a metric of the current birth.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from qiantang.domain.errors import FieldError
from qiantang.domain.telemetry import Value
from qiantang.domain.validation import CompiledModel
from qiantang.ports.ingress import Identity, InboundMessage, MqttIngress
from qiantang.protocols.alink import AlinkReply
from qiantang.protocols.sparkplug import MessageType, SparkplugError, format_topic
from qiantang.protocols.sparkplug_naming import metric_identifier, metric_names
from qiantang.protocols.sparkplug_records import BirthDefinition, Publish, Reading, StateChange
from qiantang.services.commands import SERVICE, CallRequest, CommandService
from qiantang.services.ingest import Accepted, IngestCore
from qiantang.services.ingest import Reading as Row
from qiantang.services.sparkplug_devices import SparkplugRegistry, Target, node_target
from qiantang.services.sparkplug_host import HostOutput, SparkplugHost
from qiantang.services.telemetry_state import DeviceStates, LogEntry, MessageLog

__all__ = ["SPARKPLUG_PREFIX", "SparkplugUplink", "is_sparkplug"]

log = logging.getLogger(__name__)
SPARKPLUG_PREFIX: Final = "spBv1.0/"
_M = MessageType
_NODE_PUBLISH: Final = frozenset({"NBIRTH", "NDEATH", "NDATA"})
_DEVICE_PUBLISH: Final = frozenset({"DBIRTH", "DDEATH", "DDATA"})
_COMMAND_FILTERS: Final = frozenset({"NCMD", "DCMD", "+"})
_CONTROL: Final = ("Node Control/", "Device Control/")
_STORABLE: Final = (int, float, str, list)  # bool is an int
_OK, _REFUSED, _UNREADABLE = 200, 460, 400  # message-log codes (460: Alink's bad params)


def is_sparkplug(topic: str) -> bool:
    """Whether `topic` (or a topic filter) is in the Sparkplug B namespace."""
    return topic.startswith(SPARKPLUG_PREFIX)


@dataclass(slots=True)
class _Node:
    identity: Identity
    targets: dict[str | None, Target] = field(default_factory=dict)  # None: the node itself


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a Qiantang device is in the Sparkplug namespace."""

    group: str
    edge_node: str
    device: str | None
    product_id: int


class SparkplugUplink:
    """The Sparkplug B host application: ACL, messages, states, rebirths, STATE, writes."""

    def __init__(
        self,
        registry: SparkplugRegistry,
        core: IngestCore,
        states: DeviceStates,
        message_log: MessageLog,
        commands: CommandService,
        *,
        host_id: str = "qiantang",
        extend_models: bool = True,
    ) -> None:
        self.registry, self.core, self.states = registry, core, states
        self.log, self.commands = message_log, commands
        self.host = SparkplugHost(host_id)
        self.extend_models = extend_models
        self.ingress: MqttIngress | None = None
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._where: dict[int, _Place] = {}  # device id -> where it is in spBv1.0
        self._names: dict[int, tuple[CompiledModel, dict[str, str]]] = {}
        self._state: tuple[Publish, Publish] | None = None  # (birth, will)

    # --- ACL -----------------------------------------------------------------------------
    def may_publish(self, identity: Identity, topic: str) -> bool:
        """Only the node's own births, data and deaths (and its devices')."""
        levels = topic.split("/")
        if len(levels) not in (4, 5) or levels[1] != identity.product_key:
            return False
        if levels[3] != identity.device_name:
            return False
        return levels[2] in (_NODE_PUBLISH if len(levels) == 4 else _DEVICE_PUBLISH)

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        """The node's own NCMD/DCMD topics and the host's STATE (retained)."""
        levels = topic_filter.split("/")
        if len(levels) == 3 and levels[1] == "STATE":
            return levels[2] in (self.host.host_id, "+")
        return (
            len(levels) in (4, 5)
            and levels[1] == identity.product_key
            and levels[3] == identity.device_name
            and levels[2] in _COMMAND_FILTERS
        )

    # --- host STATE ----------------------------------------------------------------------
    async def start(self) -> None:
        """Begin the host session: publish the STATE birth."""
        session = self.host.session(_now())
        self._state = (session.birth, session.will)
        await self.send(session.birth)

    async def stop(self) -> None:
        """End the host session: publish the STATE death (before the broker stops)."""
        if self._state is not None:
            await self.send(self._state[1])
            self._state = None

    async def send(self, message: Publish) -> None:
        """Publish a host message (STATE, NCMD, DCMD) through the broker."""
        if self.ingress is not None:
            await self.ingress.publish(
                message.topic, message.payload, qos=message.qos, retain=message.retain
            )

    # --- connections ---------------------------------------------------------------------
    async def connected(self, identity: Identity, client_id: str, up: bool) -> None:
        """The node's last connection closed: its will (an NDEATH) takes effect."""
        key = (identity.product_key, identity.device_name)
        node = self._nodes.get(key)
        if up or node is None or not self.host.is_online(*key):
            return
        now = _now()
        out = self.host.handle(format_topic(key[0], _M.NDEATH, key[1]), b"", now)
        self._apply_states(node, out.state_changes)
        entry = LogEntry(now, f"{SPARKPLUG_PREFIX}{key[0]}/NDEATH/{key[1]}", _OK, "will", "", 0)
        self.log.add(identity.device_id, entry)

    # --- messages ------------------------------------------------------------------------
    async def handle(self, batch: Sequence[InboundMessage]) -> Accepted:
        """Run a batch of Sparkplug messages through the host; returns what to store."""
        accepted = Accepted()
        for message in batch:
            node = self._node(message.identity)
            out = self.host.handle(message.topic, message.payload, message.received_ms)
            if out.births:
                await self._births(node, out.births)
            self._apply_states(node, out.state_changes)
            result = await self._readings(node, out.readings, message.received_ms)
            accepted.points += result.points
            self._judge(node, message, out, result)
            for publish in out.outgoing():
                await self.send(publish)
        return accepted

    def _node(self, identity: Identity) -> _Node:
        key = (identity.product_key, identity.device_name)
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = _Node(identity)
        if node.identity is not identity or None not in node.targets:  # a new connection
            target = node.targets[None] = node_target(identity)
            node.identity = identity
            self._where[identity.device_id] = _Place(*key, None, target.product_id)
        return node

    async def _births(self, node: _Node, births: list[BirthDefinition]) -> None:
        for birth in births:
            target = node.targets.get(birth.device)
            if target is None and birth.device is not None:
                found = await asyncio.to_thread(self.registry.device, node.identity, birth.device)
                if isinstance(found, str):
                    self._note(node.identity.device_id, birth, _REFUSED, "rejected", found)
                    continue
                target = node.targets[birth.device] = found
                self._where[found.device_id] = _Place(
                    birth.group, birth.edge_node, birth.device, found.product_id
                )
            assert target is not None
            if self.extend_models:
                added = await asyncio.to_thread(
                    self.registry.extend_model, target.product_id, birth.metrics
                )
                if added:
                    self.core.models.invalidate(target.product_id)
            await self.core.ensure_models([target.product_id])

    def _apply_states(self, node: _Node, changes: list[StateChange]) -> None:
        for change in changes:
            target = node.targets.get(change.device)
            if target is not None and self.states.connected(
                target.device_id, change.ts_ms, change.online
            ):
                log.info(
                    "Sparkplug %s/%s%s %s (%s)",
                    change.group,
                    change.edge_node,
                    "" if change.device is None else f"/{change.device}",
                    "online" if change.online else "offline",
                    change.reason,
                )

    def names(self, product_id: int) -> dict[str, str]:
        """Metric name -> property identifier for the product's current model (metrics the
        model lacks are added as the naming rule names them)."""
        model = self.core.models.cached(product_id)
        if model is None:
            return {}
        known = self._names.get(product_id)
        if known is None or known[0] is not model:
            known = self._names[product_id] = (model, metric_names(model.model))
        return known[1]

    async def _readings(self, node: _Node, readings: list[Reading], now: int) -> Accepted:
        """The points of one message's readings (all of one node or one device)."""
        out = Accepted()
        if not readings:
            return out
        target = node.targets.get(readings[0].device)
        if target is None:
            out.errors.append(FieldError(str(readings[0].device), "device", "not accepted"))
            return out
        model = self.core.models.cached(target.product_id)
        if model is None:
            await self.core.ensure_models([target.product_id])
            model = self.core.models.cached(target.product_id)
        names = self.names(target.product_id)
        rows: list[Row] = []
        for r in readings:
            metric, value = r.metric, r.value
            if r.transient or metric.startswith(_CONTROL):
                continue
            if not isinstance(value, _STORABLE):
                out.errors.append(FieldError(metric, "value_type", "no thing-model type"))
                continue
            ident = names.get(metric)
            if ident is None:  # not in the model: named by the rule (and refused by it)
                ident = names[metric] = metric_identifier(metric)
            rows.append((ident, cast(Value, value), r.ts_ms))
        part = self.core.properties(model, target.device_id, rows, now)
        out.points, out.errors = part.points, out.errors + part.errors
        self.states.seen(target.device_id, now)
        return out

    def _judge(self, node: _Node, message: InboundMessage, out: HostOutput, got: Accepted) -> None:
        """One message-log entry for the message, under the device it was about."""
        device = message.topic.split("/")[4] if message.topic.count("/") == 4 else None
        target = node.targets.get(device) or node.targets[None]
        if out.rejected:
            bad = out.rejected[0]
            code, outcome, reason = _UNREADABLE, "rejected", f"{bad.field}: {bad.message}"
        elif out.rebirths:
            code, outcome, reason = _REFUSED, "rebirth", out.rebirths[0].reason
        elif got.errors:
            code, outcome = _REFUSED, ("partial" if got.points else "rejected")
            reason = got.reason()
        else:
            code, outcome, reason = _OK, "accepted", ""
        entry = LogEntry(
            message.received_ms, message.topic, code, outcome, reason, len(message.payload)
        )
        self.log.add(target.device_id, entry)

    def _note(
        self, device_id: int, birth: BirthDefinition, code: int, outcome: str, reason: str
    ) -> None:
        kind = "NBIRTH" if birth.device is None else "DBIRTH"
        topic = f"{SPARKPLUG_PREFIX}{birth.group}/{kind}/{birth.edge_node}/{birth.device or ''}"
        self.log.add(device_id, LogEntry(birth.ts_ms, topic.rstrip("/"), code, outcome, reason, 0))

    # --- downlink ------------------------------------------------------------------------
    def route(self, device_id: int) -> SparkplugRoute | None:
        """How to reach a Sparkplug node or device that is online, if it is one."""
        where = self._where.get(device_id)
        if where is None or not self.host.is_online(where.group, where.edge_node, where.device):
            return None
        return SparkplugRoute(self, device_id, where)


@dataclass(frozen=True, slots=True)
class SparkplugRoute:
    """NCMD/DCMD to one node or device (a `DownlinkRoute`)."""

    uplink: SparkplugUplink
    device_id: int
    place: _Place

    async def send(self, request: CallRequest, rid: str, params: dict[str, Any]) -> str | None:
        """Write the params as metrics; delivered is done (Sparkplug has no replies)."""
        up, at = self.uplink, self.place
        names = up.names(at.product_id)
        metric_of = {
            names.get(d.name) or metric_identifier(d.name): d.name
            for d in up.host.definitions(at.group, at.edge_node, at.device)
        }
        try:
            if request.kind == SERVICE and not params:
                raise SparkplugError("params", "empty", "a Sparkplug command writes metrics")
            values = {metric_of.get(k, k): v for k, v in params.items()}
            publish = up.host.write(at.group, at.edge_node, at.device, values, _now())
        except SparkplugError as err:
            up.commands.resolve(self.device_id, rid, AlinkReply(rid, _REFUSED, None, str(err)))
            return None
        await up.send(publish)
        return "delivered as " + ("NCMD" if at.device is None else "DCMD")


def _now() -> int:
    return time.time_ns() // 1_000_000
