"""Device shadows: the device reports, applications set desired state, versions order them.

A device's update applies only with a version newer than the shadow's (``-1`` resets the
shadow to version 0). Desired state set through the API is validated against the thing
model (``rw`` properties only) and pushed as a ``control`` message if the device is online,
or when it next subscribes to ``/shadow/get/{pk}/{dn}``; the device clears it with
``{"state": {"desired": "null"}}`` once applied.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.access import Principal
from qiantang.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from qiantang.ports.ingress import Identity
from qiantang.protocols.alink_shadow import (
    CLEAR,
    ShadowError,
    ShadowRequest,
    decode_shadow_request,
    encode_shadow_document,
    encode_shadow_error,
    encode_shadow_ok,
)
from qiantang.registry.tables import Device, Product, Shadow
from qiantang.services.common import utcnow
from qiantang.services.models_cache import ModelCache

__all__ = ["ShadowService", "shadow_topic"]


def shadow_topic(product_key: str, device_name: str) -> str:
    """Where the platform publishes a device's shadow messages."""
    return f"/shadow/get/{product_key}/{device_name}"


def _merge(current: dict[str, Any], change: dict[str, Any] | str | None) -> dict[str, Any]:
    if change is None:
        return current
    if change == CLEAR:
        return {}
    assert isinstance(change, dict)
    merged = dict(current)
    for key, value in change.items():
        if value == CLEAR or value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _stamped(
    old: dict[str, Any], state: dict[str, Any], change: dict[str, Any] | str | None, now_s: int
) -> dict[str, Any]:
    """Per-key metadata: keys just changed get `now_s`, others keep their time."""
    changed = change if isinstance(change, dict) else {}
    return {
        k: {"timestamp": now_s} if k in changed else old.get(k, {"timestamp": now_s}) for k in state
    }


class ShadowService:
    """Reads and writes shadows in the registry (blocking: call from worker threads)."""

    def __init__(self, sessions: sessionmaker[Session], models: ModelCache) -> None:
        self._sessions = sessions
        self._models = models

    @staticmethod
    def _load(db: Session, device_id: int) -> Shadow:
        """The device's shadow, created empty on first use (a concurrent creation wins)."""
        shadow = db.get(Shadow, device_id)
        if shadow is not None:
            return shadow
        try:
            with db.begin_nested():
                shadow = Shadow(
                    device_id=device_id,
                    reported={},
                    desired={},
                    metadata_={},
                    version=0,
                    updated_at=utcnow(),
                )
                db.add(shadow)
        except IntegrityError:
            shadow = db.get(Shadow, device_id, populate_existing=True)
            assert shadow is not None
        return shadow

    @staticmethod
    def document(shadow: Shadow, method: str) -> bytes:
        """The shadow as a ``reply`` (to get) or ``control`` (desired push) message."""
        return encode_shadow_document(
            method,
            dict(shadow.reported),
            dict(shadow.desired),
            dict(shadow.metadata_),
            shadow.version,
            int(time.time()),
        )

    def device_request(self, identity: Identity, payload: bytes) -> tuple[str, bytes]:
        """Apply a device's shadow request; the answer to publish on its shadow topic."""
        topic = shadow_topic(identity.product_key, identity.device_name)
        now_s = int(time.time())
        try:
            request = decode_shadow_request(payload)
            with self._sessions() as db:
                shadow = self._load(db, identity.device_id)
                if request.method == "get":
                    db.commit()
                    return topic, self.document(shadow, "reply")
                self._apply(shadow, request, now_s)
                db.commit()
                return topic, encode_shadow_ok(shadow.version, now_s)
        except ShadowError as err:
            return topic, encode_shadow_error(err, now_s)

    @staticmethod
    def _apply(shadow: Shadow, request: ShadowRequest, now_s: int) -> None:
        if request.version == -1:
            shadow.reported, shadow.desired, shadow.metadata_ = {}, {}, {}
            shadow.version, shadow.updated_at = 0, utcnow()
            return
        if request.version is None or request.version <= shadow.version:
            raise ShadowError(409, f"version conflict: the shadow is at {shadow.version}")
        old = dict(shadow.metadata_)
        reported = _merge(dict(shadow.reported), request.reported)
        desired = _merge(dict(shadow.desired), request.desired)
        shadow.metadata_ = {
            "reported": _stamped(old.get("reported", {}), reported, request.reported, now_s),
            "desired": _stamped(old.get("desired", {}), desired, request.desired, now_s),
        }
        shadow.reported, shadow.desired = reported, desired
        shadow.version, shadow.updated_at = request.version, utcnow()

    # --- the API side ------------------------------------------------------------------------
    @staticmethod
    def _device(db: Session, who: Principal, device_id: int) -> Device:
        device = db.get(Device, device_id)
        if device is None or not who.is_member_of(device.enterprise_id):
            raise NotFound("device", device_id)
        return device

    def read(self, who: Principal, device_id: int) -> Shadow:
        """The device's shadow (its enterprise's users)."""
        with self._sessions() as db:
            self._device(db, who, device_id)
            shadow = self._load(db, device_id)
            db.commit()
            return shadow

    def set_desired(
        self, who: Principal, device_id: int, desired: dict[str, Any], version: int | None
    ) -> tuple[Shadow, str, bytes]:
        """Merge desired values (None removes a key); returns the shadow, the device's shadow
        topic and the control message to push there."""
        with self._sessions() as db:
            device = self._device(db, who, device_id)
            if not who.writes_in(device.enterprise_id):
                raise PermissionDenied("viewers may not set desired state")
            self._check(device.product_id, desired)
            shadow = self._load(db, device_id)
            if version is not None and version <= shadow.version:
                raise Conflict.of("version", "newer", f"the shadow is at version {shadow.version}")
            now_s = int(time.time())
            merged = _merge(dict(shadow.desired), desired)
            meta = dict(shadow.metadata_)
            meta["desired"] = _stamped(meta.get("desired", {}), merged, desired, now_s)
            shadow.desired, shadow.metadata_ = merged, meta
            shadow.version = version if version is not None else shadow.version + 1
            shadow.updated_at = utcnow()
            db.commit()
            product = db.get(Product, device.product_id)
            assert product is not None
            topic = shadow_topic(product.product_key, device.device_name)
            return shadow, topic, self.document(shadow, "control")

    def _check(self, product_id: int, desired: dict[str, Any]) -> None:
        model = self._models.cached(product_id) or self._models.load(product_id)
        assert model is not None
        values = {k: v for k, v in desired.items() if v is not None}
        for key in values:
            prop = next((p for p in model.model.properties if p.identifier == key), None)
            if prop is not None and prop.access_mode != "rw":
                raise InvalidInput.of(f"desired.{key}", "read_only", "the property is read-only")
        _, errors = model.validate_properties(values)
        if errors:
            raise InvalidInput(errors).prefixed("desired")

    def report_attributes(self, device_id: int, values: dict[str, Any]) -> int:
        """Client attributes (ThingsBoard) merged into the reported state; no version check
        (the protocol has none). Returns the new version."""
        with self._sessions() as db:
            shadow = self._load(db, device_id)
            now_s = int(time.time())
            reported = _merge(dict(shadow.reported), values)
            meta = dict(shadow.metadata_)
            meta["reported"] = _stamped(meta.get("reported", {}), reported, values, now_s)
            shadow.reported, shadow.metadata_ = reported, meta
            shadow.version, shadow.updated_at = shadow.version + 1, utcnow()
            db.commit()
            return shadow.version

    def attributes(self, device_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(client = reported, shared = desired) attributes of a device."""
        with self._sessions() as db:
            shadow = db.get(Shadow, device_id)
            if shadow is None:
                return {}, {}
            return dict(shadow.reported), dict(shadow.desired)

    def pending_control(self, device_id: int) -> bytes | None:
        """The control message for desired state not yet applied, if any."""
        with self._sessions() as db:
            shadow = db.get(Shadow, device_id)
            if shadow is None or not shadow.desired:
                return None
            return self.document(shadow, "control")
