"""Downlink: property sets and service calls to devices, tracked by id until they end.

Each call is validated against the device's thing model before anything is sent (property
set: only ``rw`` properties; services: their input params), stored with a status, sent over
the ingress, and ends as ``replied``, ``failed`` (the device answered with an error code),
``timed_out`` or ``offline`` (code 9201, the device was not connected). Async services and
property sets reply on ``..._reply``; sync services go over ``rrpc/request/{id}`` and answer
on ``rrpc/response/{id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.access import Principal
from qiantang.domain.errors import InvalidInput, NotFound, PermissionDenied
from qiantang.domain.telemetry import Value
from qiantang.domain.validation import CompiledModel
from qiantang.ports.ingress import MqttIngress
from qiantang.protocols import alink
from qiantang.protocols.alink_topics import AlinkCode, AlinkError
from qiantang.registry.tables import Command, Device, Product
from qiantang.services.common import Page, paginate, utcnow
from qiantang.services.models_cache import ModelCache
from qiantang.services.telemetry_state import DeviceStates

__all__ = ["CallRequest", "CommandService", "DownlinkRoute", "command_history", "get_command"]

log = logging.getLogger(__name__)
PROPERTY_SET = "property_set"
SERVICE = "service"


class DownlinkRoute(Protocol):
    """How to reach a device that does not speak Alink."""

    async def send(self, request: CallRequest, rid: str, params: dict[str, Any]) -> str | None:
        """Send the call; a message string means it is complete without a reply."""
        ...


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A downlink call to make."""

    device_id: int
    kind: str  # PROPERTY_SET or SERVICE
    identifier: str  # the service id ("set" for a property set)
    params: dict[str, Any]
    timeout_s: float


@dataclass(slots=True)
class _Target:
    device: Device
    product: Product


def _writable_target(db: Session, who: Principal, device_id: int) -> _Target:
    device = db.get(Device, device_id)
    if device is None or not who.is_member_of(device.enterprise_id):
        raise NotFound("device", device_id)
    if not who.writes_in(device.enterprise_id):
        raise PermissionDenied("viewers may not send commands")
    product = db.get(Product, device.product_id)
    if product is None:
        raise NotFound("device", device_id)
    return _Target(device, product)


def get_command(db: Session, who: Principal, command_id: int) -> Command:
    """One command of the caller's enterprises."""
    command = db.get(Command, command_id)
    if command is None or not who.is_member_of(command.enterprise_id):
        raise NotFound("command", command_id)
    return command


def command_history(
    db: Session, who: Principal, device_id: int, *, limit: int = 50, offset: int = 0
) -> Page[Command]:
    """A device's commands, newest first."""
    device = db.get(Device, device_id)
    if device is None or not who.is_member_of(device.enterprise_id):
        raise NotFound("device", device_id)
    stmt = select(Command).where(Command.device_id == device_id).order_by(Command.id.desc())
    return paginate(db, stmt, limit, offset)


class CommandService:
    """Sends calls and matches replies to them."""

    def __init__(
        self, sessions: sessionmaker[Session], models: ModelCache, states: DeviceStates
    ) -> None:
        self._sessions = sessions
        self._models = models
        self._states = states
        self.ingress: MqttIngress | None = None
        self.other_protocols: Callable[[int], DownlinkRoute | None] | None = None
        self._pending: dict[tuple[int, str], asyncio.Future[alink.AlinkReply]] = {}
        self._trackers: set[asyncio.Task[None]] = set()

    # --- sending ------------------------------------------------------------------------------
    def _prepare(self, who: Principal, request: CallRequest) -> tuple[Command, _Target, str]:
        """Check access, validate against the model, and store the command (blocking)."""
        with self._sessions() as db:
            target = _writable_target(db, who, request.device_id)
            model = self._models.cached(target.product.id) or self._models.load(target.product.id)
            assert model is not None
            params, call_type = _validated(model, request)
            command = Command(
                device_id=target.device.id,
                enterprise_id=target.device.enterprise_id,
                kind=request.kind,
                identifier=request.identifier,
                call_type=call_type,
                params=params,
                status="pending",
                message="",
                created_by=who.user_id,
                created_at=utcnow(),
                timeout_ms=int(request.timeout_s * 1000),
            )
            db.add(command)
            db.commit()
            return command, target, call_type

    def _finish(
        self, command_id: int, status: str, code: int | None, message: str, output: Any
    ) -> Command:
        with self._sessions() as db:
            command = db.get(Command, command_id)
            assert command is not None
            command.status, command.code, command.message = status, code, message
            command.output = output if isinstance(output, dict) else None
            command.finished_at = utcnow()
            db.commit()
            return command

    async def invoke(self, who: Principal, request: CallRequest, wait: bool) -> Command:
        """Validate, store and send a call; with `wait` (or for sync services) return once
        it has ended, else at once with status ``sent`` (poll `get_command`)."""
        command, target, call_type = await asyncio.to_thread(self._prepare, who, request)
        if self.ingress is None or not self._states.get(target.device.id).online:
            return await asyncio.to_thread(
                self._finish,
                command.id,
                "offline",
                int(AlinkCode.DEVICE_OFFLINE),
                "device offline",
                None,
            )
        rid = str(command.id)
        future: asyncio.Future[alink.AlinkReply] = asyncio.get_running_loop().create_future()
        self._pending[(target.device.id, rid)] = future
        route = self.other_protocols(target.device.id) if self.other_protocols else None
        if route is not None:  # e.g. a ThingsBoard device: RPC / shared attributes
            answered = await route.send(request, rid, command.params)
            if answered:  # a protocol without replies to this call: delivered is done
                self._pending.pop((target.device.id, rid), None)
                return await asyncio.to_thread(
                    self._finish, command.id, "replied", 200, answered, None
                )
        else:
            topic, payload = _wire(target, request, call_type, rid, command.params)
            await self.ingress.publish(topic, payload, qos=1)
        command = await asyncio.to_thread(self._mark_sent, command.id)
        tracker = asyncio.create_task(
            self._track(command.id, target.device.id, rid, future, request)
        )
        self._trackers.add(tracker)
        tracker.add_done_callback(self._trackers.discard)
        if wait or call_type == "sync":
            await tracker
            with self._sessions() as db:
                done = db.get(Command, command.id)
                assert done is not None
                return done
        return command

    def _mark_sent(self, command_id: int) -> Command:
        with self._sessions() as db:
            command = db.get(Command, command_id)
            assert command is not None
            if command.status == "pending":
                command.status = "sent"
                db.commit()
            return command

    async def _track(
        self,
        command_id: int,
        device_id: int,
        rid: str,
        future: asyncio.Future[alink.AlinkReply],
        request: CallRequest,
    ) -> None:
        try:
            reply = await asyncio.wait_for(future, request.timeout_s)
        except TimeoutError:
            await asyncio.to_thread(
                self._finish, command_id, "timed_out", None, "no reply in time", None
            )
            return
        finally:
            self._pending.pop((device_id, rid), None)
        status, message, output = self._judge(request, device_id, reply)
        await asyncio.to_thread(self._finish, command_id, status, reply.code, message, output)

    def _judge(
        self, request: CallRequest, device_id: int, reply: alink.AlinkReply
    ) -> tuple[str, str, Any]:
        if reply.code != AlinkCode.SUCCESS:
            return "failed", reply.message or "the device reported an error", reply.data
        if request.kind != SERVICE or not isinstance(reply.data, dict):
            return "replied", reply.message or "success", reply.data
        model = self._models.cached(self._product_of(device_id))
        if model is None:
            return "replied", reply.message or "success", reply.data
        output, errors = model.validate_service_output(request.identifier, reply.data)
        if errors:
            reason = "; ".join(f"{e.field}: {e.message} ({e.rule})" for e in errors)
            return "failed", f"invalid output: {reason}", reply.data
        return "replied", reply.message or "success", output

    def _product_of(self, device_id: int) -> int:
        with self._sessions() as db:
            device = db.get(Device, device_id)
            return device.product_id if device else -1

    # --- replies -----------------------------------------------------------------------------
    def on_reply(self, device_id: int, payload: bytes, rid_hint: str | None = None) -> str:
        """A device answered (``..._reply`` or ``rrpc/response``); returns an outcome for the
        message log. Never raises."""
        try:
            reply = alink.decode_reply(payload)
        except AlinkError as err:
            return f"unreadable reply: {err.reply_message()}"
        return self.resolve(device_id, rid_hint or reply.id, reply)

    def resolve(self, device_id: int, rid: str, reply: alink.AlinkReply) -> str:
        """Match an answer (of any protocol) to the call it answers."""
        future = self._pending.get((device_id, rid))
        if future is None or future.done():
            return f"reply to unknown or finished call {rid}"
        future.set_result(reply)
        return f"reply to call {rid}"

    async def close(self) -> None:
        """Stop tracking (pending calls end as timed out on their own timers)."""
        for task in list(self._trackers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _validated(model: CompiledModel, request: CallRequest) -> tuple[dict[str, Value], str]:
    if request.kind == PROPERTY_SET:
        for key in request.params:
            prop = next((p for p in model.model.properties if p.identifier == key), None)
            if prop is not None and prop.access_mode != "rw":
                raise InvalidInput.of(f"params.{key}", "read_only", "the property is read-only")
        values, errors = model.validate_properties(request.params)
        if errors:
            raise InvalidInput(errors).prefixed("params")
        if not values:
            raise InvalidInput.of("params", "min_items", "set at least one property")
        return values, "async"
    service = next((s for s in model.model.services if s.identifier == request.identifier), None)
    if service is None:
        raise InvalidInput.of("service", "exists", f"no service {request.identifier!r}")
    values, errors = model.validate_service_input(request.identifier, request.params)
    if errors:
        raise InvalidInput(errors).prefixed("params")
    return values, str(service.call_type)


def _wire(
    target: _Target, request: CallRequest, call_type: str, rid: str, params: dict[str, Any]
) -> tuple[str, bytes]:
    base = f"/sys/{target.product.product_key}/{target.device.device_name}"
    if request.kind == PROPERTY_SET:
        return f"{base}/thing/service/property/set", alink.encode_property_set(rid, params)
    payload = alink.encode_service_call(rid, request.identifier, params)
    if call_type == "sync":
        return f"{base}/rrpc/request/{rid}", payload
    return f"{base}/thing/service/{request.identifier}", payload
