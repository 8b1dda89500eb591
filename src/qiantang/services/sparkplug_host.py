"""The platform as a Sparkplug B host application: a pure state machine, no sockets.

`SparkplugHost.handle` takes one MQTT message (topic, payload bytes, the time it arrived)
and returns a `HostOutput` saying what follows from it; the broker glue publishes what it
asks for and passes readings on. Per edge node (``group/edge_node``) it keeps the session
(Sparkplug 3.0, "Operational Behavior"):

- NBIRTH opens a session: its ``bdSeq`` metric, ``seq`` (0), and the node's metric table
  (name, alias, data type). DBIRTH does the same for a device. Births yield a
  `BirthDefinition` (with the thing-model type of every metric), readings of the values
  they carry, and a `StateChange` when a node or device comes online.
- Every later message from the node (DBIRTH, NDATA, DDATA, DDEATH) must carry the next
  ``seq`` (255 is followed by 0). NDATA/DDATA resolve aliases (or names) through the
  birth's table and yield `Reading` objects named by the metric name.
- NDEATH whose ``bdSeq`` matches the NBIRTH's takes the node and all its devices offline; a
  stale one (another bdSeq, e.g. a will delivered after a reconnect) is ignored. DDEATH
  takes one device offline.
- A sequence gap, an unknown alias or name, a data type other than the birth's, or a
  message before its birth means the host's picture of the node is no longer right: the
  message is dropped, the session marked broken, and a `Rebirth` (NCMD
  ``Node Control/Rebirth`` = true) asked for. Until the new NBIRTH every message of that
  node is dropped; the request is repeated at most every `rebirth_interval_ms`.

Gaps are acted on at once (a Reorder Timeout of zero, which the spec allows where the MQTT
server delivers a client's messages in order, as a single embedded broker does).

A message that cannot be read (bad topic, payload, value) becomes a `Rejected` entry and
changes nothing; `handle` never raises on its input. Births missing ``bdSeq`` are accepted,
and an NDEATH is then matched whatever its bdSeq (Sparkplug requires it, not every device
sends it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from qiantang.protocols.sparkplug import (
    CommandMetric,
    DataType,
    MessageType,
    Metric,
    MetricValue,
    SparkplugError,
    SpbPayload,
    SpbTopic,
    StateTopic,
    check_id,
    decode_payload,
    decode_state,
    encode_command,
    encode_rebirth,
    encode_state,
    format_topic,
    parse_topic,
    state_topic,
    thing_type,
)
from qiantang.protocols.sparkplug_records import (
    BirthDefinition,
    HostSession,
    MetricDefinition,
    Publish,
    Reading,
    Rebirth,
    Rejected,
    StateChange,
)

__all__ = [
    "BDSEQ",
    "BirthDefinition",
    "HostOutput",
    "HostSession",
    "MetricDefinition",
    "Publish",
    "Reading",
    "Rebirth",
    "Rejected",
    "SparkplugHost",
    "StateChange",
]

logger = logging.getLogger(__name__)

BDSEQ: Final = "bdSeq"
_CONTROL_PREFIXES: Final = ("Node Control/", "Device Control/")
_M = MessageType


@dataclass(slots=True)
class HostOutput:
    """What one message led to."""

    readings: list[Reading] = field(default_factory=list)
    state_changes: list[StateChange] = field(default_factory=list)
    births: list[BirthDefinition] = field(default_factory=list)
    rebirths: list[Rebirth] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    publishes: list[Publish] = field(default_factory=list)

    def outgoing(self) -> list[Publish]:
        """Everything to publish: rebirth requests, then STATE messages."""
        return [r.publish() for r in self.rebirths] + self.publishes


class _SessionBroken(Exception):
    """The host's picture of an edge node is no longer right; a rebirth is needed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Table:
    """The metrics one birth defined, by alias and by name."""

    by_alias: dict[int, MetricDefinition] = field(default_factory=dict)
    by_name: dict[str, MetricDefinition] = field(default_factory=dict)


@dataclass(slots=True)
class _Device:
    online: bool
    table: _Table


@dataclass(slots=True)
class _Node:
    online: bool = False
    bd_seq: int | None = None
    seq: int = 0  # the last seq received in this session
    table: _Table = field(default_factory=_Table)
    devices: dict[str, _Device] = field(default_factory=dict)
    rebirth_at: int | None = None  # when a rebirth was last asked for; None: session sound


class SparkplugHost:
    """The host application's view of every edge node and device it has heard from.

    Not thread-safe: feed it from one task (per-node order matters anyway)."""

    def __init__(self, host_id: str, *, rebirth_interval_ms: int = 5_000) -> None:
        self.host_id = check_id(host_id, "host_id")
        self.rebirth_interval_ms = rebirth_interval_ms
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._session_ms: int | None = None

    # ------------------------------------------------------------------ host STATE

    def session(self, now_ms: int) -> HostSession:
        """Start a host MQTT session at `now_ms`: the will to register and the birth to
        publish after subscribing (both carry `now_ms`, as Sparkplug 3.0 requires)."""
        self._session_ms = now_ms
        topic = state_topic(self.host_id)
        return HostSession(
            will=Publish(topic, encode_state(False, now_ms), qos=1, retain=True),
            birth=Publish(topic, encode_state(True, now_ms), qos=1, retain=True),
        )

    # ------------------------------------------------------------------ messages in

    def handle(self, topic: str, payload: bytes, received_ms: int) -> HostOutput:
        """Process one message; never raises on its input."""
        out = HostOutput()
        parsed: SpbTopic | StateTopic | None = None
        try:
            parsed = parse_topic(topic)
            if isinstance(parsed, StateTopic):
                self._on_state(parsed, payload, out)
            elif parsed.message_type not in (_M.NCMD, _M.DCMD):  # commands: ours or a peer's
                handler = _HANDLERS[parsed.message_type]
                handler(self, parsed, decode_payload(payload), received_ms, out)
        except _SessionBroken as broken:
            assert isinstance(parsed, SpbTopic)
            self._ask_rebirth(parsed.group, parsed.edge_node, broken.reason, received_ms, out)
        except SparkplugError as err:
            out.rejected.append(Rejected(topic, err.field, err.rule, err.message))
        return out

    def _on_state(self, topic: StateTopic, payload: bytes, out: HostOutput) -> None:
        state = decode_state(payload)
        if topic.host_id == self.host_id and not state.online and self._session_ms is not None:
            # our death certificate while we are connected (a stale will): say we are online
            out.publishes.append(self.session(self._session_ms).birth)

    def _on_nbirth(self, t: SpbTopic, p: SpbPayload, now: int, out: HostOutput) -> None:
        if p.seq is None or not 0 <= p.seq <= 255:
            raise SparkplugError("seq", "seq", "an NBIRTH needs a seq of 0..255")
        table, birth, readings = self._birth(t, p, now)
        old = self._nodes.get((t.group, t.edge_node))
        self._nodes[t.group, t.edge_node] = _Node(True, _bd_seq(p), p.seq, table)
        if old is not None:
            out.state_changes += [_change(t, d, False, now, "node_rebirth") for d in _online(old)]
        if old is None or not old.online:
            out.state_changes.append(_change(t, None, True, now, "birth"))
        out.births.append(birth)
        out.readings.extend(readings)

    def _on_dbirth(self, t: SpbTopic, p: SpbPayload, now: int, out: HostOutput) -> None:
        node = self._live_node(t, p)
        table, birth, readings = self._birth(t, p, now)
        device = _device_id(t)
        known = node.devices.get(device)
        node.devices[device] = _Device(True, table)
        if known is None or not known.online:
            out.state_changes.append(_change(t, device, True, now, "birth"))
        out.births.append(birth)
        out.readings.extend(readings)

    def _on_ndata(self, t: SpbTopic, p: SpbPayload, now: int, out: HostOutput) -> None:
        node = self._live_node(t, p)
        out.readings.extend(_readings(t, p, node.table, now))

    def _on_ddata(self, t: SpbTopic, p: SpbPayload, now: int, out: HostOutput) -> None:
        node = self._live_node(t, p)
        device = node.devices.get(_device_id(t))
        if device is None or not device.online:
            raise _SessionBroken(f"DDATA from device {t.device!r} before its DBIRTH")
        out.readings.extend(_readings(t, p, device.table, now))

    def _on_ddeath(self, t: SpbTopic, p: SpbPayload, now: int, out: HostOutput) -> None:
        node = self._live_node(t, p)
        device = node.devices.get(_device_id(t))
        if device is not None and device.online:
            device.online, device.table = False, _Table()
            out.state_changes.append(_change(t, t.device, False, now, "death"))

    def _on_ndeath(self, t: SpbTopic, p: SpbPayload, now: int, out: HostOutput) -> None:
        node = self._nodes.get((t.group, t.edge_node))
        if node is None or not node.online:
            return
        bd_seq = _bd_seq(p)
        if node.bd_seq is not None and bd_seq is not None and bd_seq != node.bd_seq:
            logger.debug("stale NDEATH for %s/%s (bdSeq %s)", t.group, t.edge_node, bd_seq)
            return
        out.state_changes += [_change(t, d, False, now, "node_death") for d in _online(node)]
        out.state_changes.append(_change(t, None, False, now, "death"))
        self._nodes[t.group, t.edge_node] = _Node()

    def _live_node(self, t: SpbTopic, p: SpbPayload) -> _Node:
        """The node `t` belongs to, once `p`'s seq is checked and recorded."""
        node = self._nodes.get((t.group, t.edge_node))
        if node is None or not node.online:
            raise _SessionBroken(f"{t.message_type} before NBIRTH")
        if node.rebirth_at is not None:
            raise _SessionBroken("waiting for the rebirth asked for")
        expected = (node.seq + 1) & 0xFF
        if p.seq != expected:
            raise _SessionBroken(f"{t.message_type} seq {p.seq} where {expected} was due")
        node.seq = expected
        return node

    def _birth(
        self, t: SpbTopic, p: SpbPayload, now: int
    ) -> tuple[_Table, BirthDefinition, list[Reading]]:
        """The table, definition and readings of a birth; raises `SparkplugError` before
        anything changes if the birth is malformed."""
        table = _Table()
        definitions: list[MetricDefinition] = []
        readings: list[Reading] = []
        default_ts = p.timestamp if p.timestamp is not None else now
        for i, m in enumerate(p.metrics):
            d = _definition(m, table, f"metrics[{i}]")
            definitions.append(d)
            if d.name != BDSEQ:
                readings.append(_reading(t, d.name, d.datatype, m, m.value, default_ts))
        birth = BirthDefinition(t.group, t.edge_node, t.device, tuple(definitions), now)
        return table, birth, readings

    def _ask_rebirth(
        self, group: str, edge_node: str, reason: str, now: int, out: HostOutput
    ) -> None:
        node = self._nodes.setdefault((group, edge_node), _Node())
        if node.rebirth_at is not None and 0 <= now - node.rebirth_at < self.rebirth_interval_ms:
            return
        if node.rebirth_at is None:
            logger.info("asking %s/%s for a rebirth: %s", group, edge_node, reason)
        node.rebirth_at = now
        out.rebirths.append(self.rebirth(group, edge_node, now, reason))

    # ------------------------------------------------------------------ messages out

    def rebirth(self, group: str, edge_node: str, now_ms: int, reason: str = "asked") -> Rebirth:
        """An NCMD ``Node Control/Rebirth`` for ``group/edge_node`` (not rate-limited)."""
        topic = format_topic(group, _M.NCMD, edge_node)
        return Rebirth(group, edge_node, reason, topic, encode_rebirth(now_ms))

    def write(
        self,
        group: str,
        edge_node: str,
        device: str | None,
        values: Mapping[str, object],
        now_ms: int,
    ) -> Publish:
        """An NCMD (`device` None) or DCMD writing `values` by metric name. The birth's
        alias and data type are used; raises `SparkplugError` if the node or device is not
        online, a name is not in its birth, or a value does not fit."""
        node = self._nodes.get((group, edge_node))
        if node is None or not node.online:
            raise SparkplugError("edge_node_id", "offline", f"{group}/{edge_node} is not online")
        table = node.table
        if device is not None:
            known = node.devices.get(device)
            if known is None or not known.online:
                raise SparkplugError("device_id", "offline", f"device {device!r} is not online")
            table = known.table
        metrics: list[CommandMetric] = []
        for name, value in values.items():
            definition = table.by_name.get(name)
            if definition is None:
                raise SparkplugError(f"metrics[{name!r}]", "unknown_metric", "not in the birth")
            if definition.alias is None:
                metrics.append(CommandMetric(definition.datatype, value, name=name))
            else:
                metrics.append(CommandMetric(definition.datatype, value, alias=definition.alias))
        kind = _M.NCMD if device is None else _M.DCMD
        return Publish(
            format_topic(group, kind, edge_node, device), encode_command(metrics, now_ms)
        )

    # ------------------------------------------------------------------ queries

    def is_online(self, group: str, edge_node: str, device: str | None = None) -> bool:
        """Whether the node (or its device) is online in this host's view."""
        node = self._nodes.get((group, edge_node))
        if node is None or not node.online:
            return False
        if device is None:
            return True
        known = node.devices.get(device)
        return known is not None and known.online

    def definitions(
        self, group: str, edge_node: str, device: str | None = None
    ) -> tuple[MetricDefinition, ...]:
        """The metrics the current birth of the node (or device) defined; empty if none."""
        node = self._nodes.get((group, edge_node))
        if node is None:
            return ()
        if device is None:
            return tuple(node.table.by_name.values())
        known = node.devices.get(device)
        return () if known is None else tuple(known.table.by_name.values())


def _device_id(t: SpbTopic) -> str:
    assert t.device is not None  # parse_topic guarantees one for D* message types
    return t.device


def _online(node: _Node) -> list[str]:
    return [name for name, device in node.devices.items() if device.online]


def _change(t: SpbTopic, device: str | None, online: bool, now: int, reason: str) -> StateChange:
    return StateChange(t.group, t.edge_node, device, online, now, reason)


def _bd_seq(p: SpbPayload) -> int | None:
    for m in p.metrics:
        if m.name == BDSEQ:
            value = m.value
            return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


def _definition(m: Metric, table: _Table, where: str) -> MetricDefinition:
    """A birth metric's definition, added to `table`; raises `SparkplugError`."""
    if m.name is None:
        raise SparkplugError(f"{where}.name", "name_missing", "a birth names every metric")
    if m.datatype is None:
        raise SparkplugError(f"{where}.datatype", "datatype_missing", "a birth types every metric")
    if m.name in table.by_name:
        raise SparkplugError(f"{where}.name", "duplicate_name", f"{m.name!r} is defined twice")
    control = m.name == BDSEQ or m.name.startswith(_CONTROL_PREFIXES)
    definition = MetricDefinition(
        m.name, m.alias, m.datatype, thing_type(m.datatype), control, m.properties
    )
    if m.alias is not None:
        if m.alias in table.by_alias:
            raise SparkplugError(f"{where}.alias", "duplicate_alias", f"alias {m.alias} twice")
        table.by_alias[m.alias] = definition
    table.by_name[m.name] = definition
    return definition


def _reading(
    t: SpbTopic, name: str, datatype: DataType, m: Metric, value: MetricValue, default_ts: int
) -> Reading:
    ts = m.timestamp if m.timestamp is not None else default_ts
    return Reading(
        t.group, t.edge_node, t.device, name, value, ts, datatype, m.is_historical, m.is_transient
    )


def _readings(t: SpbTopic, p: SpbPayload, table: _Table, now: int) -> list[Reading]:
    """The readings of a DATA message; raises `_SessionBroken` for a metric the birth did
    not define (or defined with another type), `SparkplugError` for a value that does not
    fit its type."""
    readings: list[Reading] = []
    default_ts = p.timestamp if p.timestamp is not None else now
    for i, m in enumerate(p.metrics):
        if m.alias is not None:
            definition = table.by_alias.get(m.alias)
        else:
            definition = None if m.name is None else table.by_name.get(m.name)
        if definition is None:
            what = f"alias {m.alias}" if m.alias is not None else f"metric {m.name!r}"
            raise _SessionBroken(f"{t.message_type} with unknown {what}")
        if m.datatype is not None and m.datatype is not definition.datatype:
            raise _SessionBroken(f"{definition.name!r} is {m.datatype.name}, not as born")
        try:
            value = m.value if m.datatype is not None else m.value_as(definition.datatype)
        except SparkplugError as err:
            raise err.prefixed(f"metrics[{i}]") from None
        readings.append(_reading(t, definition.name, definition.datatype, m, value, default_ts))
    return readings


_HANDLERS: Final = {
    _M.NBIRTH: SparkplugHost._on_nbirth,
    _M.DBIRTH: SparkplugHost._on_dbirth,
    _M.NDATA: SparkplugHost._on_ndata,
    _M.DDATA: SparkplugHost._on_ddata,
    _M.DDEATH: SparkplugHost._on_ddeath,
    _M.NDEATH: SparkplugHost._on_ndeath,
}
