"""The OPC UA connector (asyncua client).

On connect it resolves every point and method (node id or browse path), then subscribes the
``subscribe`` points as monitored items (sampling interval, optional deadband filter) in one
subscription and polls the ``poll`` points on their period. Polling is also the fallback
for points the server refuses to monitor, and for every point when it refuses
subscriptions altogether. A watchdog reads the server's
clock every `watchdog_s`; any failure closes the session and reconnects with back-off.
Status codes map to quality by severity (good, uncertain, bad). Writes go to the node with
its own data type; services call methods with arguments typed from ``InputArguments``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from qiantang.edge.backoff import Backoff
from qiantang.edge.config import DeviceConfig
from qiantang.edge.errors import ConnectorError, WriteRefused
from qiantang.edge.model import (
    Connector,
    ConnectorStatus,
    Quality,
    Raw,
    RawReading,
    ReadingSink,
    StatusSink,
    now_ms,
)
from qiantang.edge.opcua_config import NodeRef, OpcUaDevice, OpcUaPoint
from qiantang.edge.registry import ConnectorPlugin

__all__ = ["PLUGIN", "OpcUaConnector", "quality_of", "raw_of"]

log = logging.getLogger(__name__)
_SERVER_TIME = "i=2258"  # Server_ServerStatus_CurrentTime
_FAILURES = (UaError, OSError, asyncio.TimeoutError, ConnectionError)


def quality_of(status: ua.StatusCode | None) -> Quality:
    """Quality from a status code's severity bits."""
    if status is None or status.is_good():
        return Quality.GOOD
    return Quality.UNCERTAIN if status.is_uncertain() else Quality.BAD


def _ms(stamp: datetime | None) -> int:
    if stamp is None:
        return now_ms()
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def raw_of(value: Any) -> Raw | None:
    """A value the converter can take (numbers, bools, text, datetimes as ms), else None."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return _ms(value)
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    return None


class _Handler:
    """asyncua's data-change callback, turned into readings."""

    def __init__(self, points: dict[int, str], emit: ReadingSink) -> None:
        self.points = points
        self.emit = emit

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        handle = data.subscription_data.client_handle
        name = self.points.get(handle) if handle is not None else None
        if name is None:
            return
        dv = data.monitored_item.Value
        stamp = dv.SourceTimestamp or dv.ServerTimestamp
        self.emit(RawReading(name, raw_of(val), quality_of(dv.StatusCode), _ms(stamp)))


class OpcUaConnector(Connector):
    """Reads, writes and calls methods on one OPC UA server."""

    def __init__(self, device: OpcUaDevice) -> None:
        self.config = device.connector
        self.points = {p.property: p for p in device.points}
        self.services = {s.service: s for s in device.services}
        self._client: Client | None = None
        self._nodes: dict[str, Node] = {}
        self._types: dict[str, ua.VariantType] = {}

    def describe(self) -> str:
        """Where the server is, for logs."""
        return f"opcua {self.config.endpoint}"

    async def _setup(self, client: Client) -> None:
        c = self.config
        if c.security.policy != "None":
            parts = [
                c.security.policy,
                c.security.mode,
                c.security.certificate,
                c.security.private_key,
            ]
            if c.security.server_certificate:
                parts.append(c.security.server_certificate)
            await client.set_security_string(",".join(str(p) for p in parts))
        ident = c.identity
        if ident.kind == "username":
            assert ident.username is not None
            client.set_user(ident.username)
            if ident.password is not None:
                client.set_password(ident.password.get_secret_value())
        elif ident.kind == "certificate":
            assert ident.certificate is not None
            assert ident.private_key is not None
            await client.load_client_certificate(str(ident.certificate))
            await client.load_private_key(ident.private_key)

    async def _connect(self) -> Client:
        client = Client(self.config.endpoint, timeout=self.config.timeout_s)
        try:
            await self._setup(client)
            await asyncio.wait_for(client.connect(), self.config.timeout_s * 2)
        except (*_FAILURES, ValueError) as err:
            await _quiet_disconnect(client)
            raise ConnectorError(f"{self.describe()}: cannot connect: {err!r}") from err
        try:
            self._nodes = {name: await self._resolve(client, p) for name, p in self.points.items()}
        except ConnectorError:
            await _quiet_disconnect(client)
            raise
        self._types = {}
        return client

    async def _resolve(self, client: Client, ref: NodeRef) -> Node:
        try:
            if ref.node is not None:
                node = client.get_node(ref.node)
                await node.read_browse_name()  # the node must exist
                return node
            assert ref.browse_path is not None
            found = await client.nodes.objects.get_child(list(ref.browse_path))
            assert isinstance(found, Node)
            return found
        except _FAILURES as err:
            where = ref.node or "/".join(ref.browse_path or ())
            raise ConnectorError(f"{self.describe()}: no node {where}: {err!r}") from err

    async def run(self, emit: ReadingSink, report: StatusSink) -> None:
        """Connect, subscribe and poll, watch the link, reconnect with back-off."""
        backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        while True:
            client: Client | None = None
            try:
                client = self._client = await self._connect()
                report(ConnectorStatus.UP, "")
                backoff.reset()
                await self._serve(client, emit)
            except* ConnectorError as group:
                report(ConnectorStatus.DOWN, str(group.exceptions[0]))
            finally:
                self._client = None
                if client is not None:
                    await _quiet_disconnect(client)
            await backoff.sleep()

    async def _serve(self, client: Client, emit: ReadingSink) -> None:
        subscribed = [p for p in self.points.values() if p.mode == "subscribe"]
        polled = [p for p in self.points.values() if p.mode == "poll"]
        if subscribed:
            polled += await self._subscribe(client, subscribed, emit)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watchdog(client))
            for point in polled:
                tasks.create_task(self._poll(point, emit))

    async def _subscribe(
        self, client: Client, points: list[OpcUaPoint], emit: ReadingSink
    ) -> list[OpcUaPoint]:
        """Monitor `points`; those the server will not monitor are returned, to be polled."""
        handles = {i + 1: p.property for i, p in enumerate(points)}
        try:
            sub: Subscription = await client.create_subscription(
                self.config.publishing_interval_ms, _Handler(handles, emit)
            )
            requests = [self._monitor(h, self.points[name]) for h, name in handles.items()]
            results = await sub.create_monitored_items(requests)
        except UaStatusCodeError as err:  # no subscriptions here: poll everything
            log.warning("%s: subscriptions refused (%s); polling instead", self.describe(), err)
            return points
        except _FAILURES as err:
            raise ConnectorError(f"{self.describe()}: subscription failed: {err!r}") from err
        fallback = []
        for point, result in zip(points, results, strict=True):
            if isinstance(result, ua.StatusCode):
                log.warning(
                    "%s: cannot monitor %s (%s); polling it instead",
                    self.describe(),
                    point.property,
                    result.name,
                )
                fallback.append(point)
        return fallback

    def _monitor(self, handle: int, point: OpcUaPoint) -> ua.MonitoredItemCreateRequest:
        params = ua.MonitoringParameters()
        params.ClientHandle = handle
        params.SamplingInterval = point.sampling_interval_ms
        params.QueueSize = 10
        params.DiscardOldest = True
        if point.deadband is not None:
            f = ua.DataChangeFilter()
            f.Trigger = ua.DataChangeTrigger.StatusValue
            f.DeadbandType = 1 if point.deadband_type == "absolute" else 2
            f.DeadbandValue = point.deadband
            params.Filter = f
        item = ua.ReadValueId()
        item.NodeId = self._nodes[point.property].nodeid
        item.AttributeId = AttributeIds.Value
        request = ua.MonitoredItemCreateRequest()
        request.ItemToMonitor = item
        request.MonitoringMode = ua.MonitoringMode.Reporting
        request.RequestedParameters = params
        return request

    async def _watchdog(self, client: Client) -> None:
        node = client.get_node(_SERVER_TIME)
        while True:
            await asyncio.sleep(self.config.watchdog_s)
            try:
                await asyncio.wait_for(node.read_value(), self.config.timeout_s)
            except _FAILURES as err:
                raise ConnectorError(f"{self.describe()}: server not answering: {err!r}") from err

    async def _poll(self, point: OpcUaPoint, emit: ReadingSink) -> None:
        node, period = self._nodes[point.property], point.poll_ms / 1000
        next_at = time.monotonic()
        while True:
            try:
                dv = await node.read_data_value(raise_on_bad_status=False)
            except _FAILURES as err:
                raise ConnectorError(f"{self.describe()}: read {point.property}: {err!r}") from err
            stamp = dv.SourceTimestamp or dv.ServerTimestamp
            value = raw_of(dv.Value.Value if dv.Value is not None else None)
            emit(RawReading(point.property, value, quality_of(dv.StatusCode), _ms(stamp)))
            next_at = max(next_at + period, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    def _connected(self) -> Client:
        if self._client is None:
            raise ConnectorError(f"{self.describe()}: not connected")
        return self._client

    async def write(self, values: Mapping[str, Raw]) -> None:
        """Write each value as its node's own data type."""
        self._connected()
        for name in values:
            if name not in self.points:
                raise WriteRefused(f"params.{name}", "is not mapped to a point of this device")
        for name, value in values.items():
            node = self._nodes[name]
            try:
                if name not in self._types:
                    self._types[name] = await node.read_data_type_as_variant_type()
                variant = ua.Variant(_typed(value, self._types[name]), self._types[name])
                await node.write_value(ua.DataValue(variant))
            except UaStatusCodeError as err:
                raise ConnectorError(f"{self.describe()}: write {name}: {err}") from err
            except _FAILURES as err:
                raise ConnectorError(f"{self.describe()}: write {name}: {err!r}") from err

    async def call(self, service: str, params: Mapping[str, Raw]) -> dict[str, Raw]:
        """Call the method behind `service`; outputs named as configured."""
        spec = self.services.get(service)
        if spec is None:
            raise WriteRefused(f"service.{service}", "is not mapped to a method of this device")
        missing = [name for name in spec.inputs if name not in params]
        if missing:
            raise WriteRefused(f"params.{missing[0]}", "is required")
        client = self._connected()
        try:
            obj = await self._resolve(client, spec.object)
            method = await self._resolve(client, spec.method)
            types = await _input_types(method)
            args = _arguments([params[n] for n in spec.inputs], types)
            out = await obj.call_method(method.nodeid, *args)
        except UaStatusCodeError as err:
            raise ConnectorError(f"{self.describe()}: call {service}: {err}") from err
        except _FAILURES as err:
            raise ConnectorError(f"{self.describe()}: call {service}: {err!r}") from err
        outputs = out if isinstance(out, list) else [out]
        result: dict[str, Raw] = {}
        for name, value in zip(spec.outputs, outputs, strict=False):
            raw = raw_of(value)
            if raw is not None:
                result[name] = raw
        return result

    async def probe(self) -> str:
        """Connect, read every point once, resolve every method, disconnect."""
        client = await self._connect()
        try:
            bad = []
            for name, node in self._nodes.items():
                dv = await node.read_data_value(raise_on_bad_status=False)
                if quality_of(dv.StatusCode) is Quality.BAD:
                    bad.append(name)
            for spec in self.services.values():
                await self._resolve(client, spec.method)
        except _FAILURES as err:
            raise ConnectorError(f"{self.describe()}: probe failed: {err!r}") from err
        finally:
            await _quiet_disconnect(client)
        summary = f"{self.describe()}: {len(self._nodes)} points, {len(self.services)} methods"
        return summary + (f"; bad quality: {', '.join(bad)}" if bad else "")


def _typed(value: Raw, vtype: ua.VariantType) -> Any:
    """`value` coerced to a variant type (ints for integer types, and so on)."""
    if vtype == ua.VariantType.Boolean:
        return bool(value)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    if vtype == ua.VariantType.String:
        return str(value)
    if ua.VariantType.SByte.value <= vtype.value <= ua.VariantType.UInt64.value:
        return round(float(value))
    return value


async def _input_types(method: Node) -> list[ua.VariantType | None]:
    try:
        arguments = await method.get_child("0:InputArguments")
        assert isinstance(arguments, Node)
        declared = await arguments.read_value()
    except UaStatusCodeError:
        return []  # a method without inputs has no InputArguments property
    types = [ua.datatype_to_varianttype(a.DataType) for a in declared]
    return [t if isinstance(t, ua.VariantType) else None for t in types]


def _arguments(values: list[Raw], types: list[ua.VariantType | None]) -> list[ua.Variant]:
    """Method arguments typed as the method declares them (untyped when it does not)."""
    out = []
    for i, value in enumerate(values):
        vtype = types[i] if i < len(types) else None
        out.append(ua.Variant(value) if vtype is None else ua.Variant(_typed(value, vtype), vtype))
    return out


async def _quiet_disconnect(client: Client) -> None:
    with contextlib.suppress(Exception):  # the link is already gone; nothing to report
        await asyncio.wait_for(client.disconnect(), 2)


def _create(device: DeviceConfig) -> Connector:
    assert isinstance(device, OpcUaDevice)
    return OpcUaConnector(device)


PLUGIN = ConnectorPlugin(OpcUaDevice, _create)
