"""Alink gateways: topology (which sub-devices a gateway may speak for) and sub-device
sessions (login makes a sub-device online through its gateway).

The topology of every connected gateway is cached in memory so the broker's per-packet ACL
and the uplink can decide without I/O; it is loaded when the gateway connects and updated by
``thing.topo.add|delete``. Registry work runs in worker threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.ports.ingress import Identity
from qiantang.protocols import alink_gateway as gw
from qiantang.protocols.alink_topics import AlinkCode, AlinkError, encode_reply
from qiantang.registry.tables import Device, Product, Topology
from qiantang.services.common import utcnow
from qiantang.services.device_auth import DeviceContext
from qiantang.services.security import DeviceSecrets
from qiantang.services.telemetry_state import DeviceStates

__all__ = ["TOPO_NOT_FOUND", "GatewayService", "SubDevice"]

#: Codes as we read Alibaba's gateway tables: the sub-device is not in the gateway's topology;
#: a device cannot be its own sub-device.
TOPO_NOT_FOUND = 6401
TOPO_SELF = 6402


@dataclass(frozen=True, slots=True)
class SubDevice:
    """A sub-device as the gateway path needs it."""

    device_id: int
    product_id: int
    enterprise_id: int
    product_key: str
    device_name: str

    def identity(self) -> Identity:
        """The identity the uplink uses for messages a gateway sends on this device's behalf."""
        context = DeviceContext(self.product_id, 0)
        return Identity(
            self.device_id, self.product_key, self.device_name, self.enterprise_id, context
        )


def is_gateway(identity: Identity) -> bool:
    """Whether the connection is a gateway's."""
    return isinstance(identity.extra, DeviceContext) and identity.extra.is_gateway


class GatewayService:
    """Topology and sub-device sessions of connected gateways."""

    def __init__(
        self, sessions: sessionmaker[Session], secrets: DeviceSecrets, states: DeviceStates
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._states = states
        self._topology: dict[int, dict[tuple[str, str], SubDevice]] = {}
        self._online: dict[int, set[int]] = {}

    # --- the in-memory view ------------------------------------------------------------------
    def sub(self, gateway_id: int, product_key: str, device_name: str) -> SubDevice | None:
        """A sub-device of a connected gateway (no I/O)."""
        return self._topology.get(gateway_id, {}).get((product_key, device_name))

    def load(self, gateway_id: int) -> None:
        """Cache a gateway's topology (blocking; on connect)."""
        with self._sessions() as db:
            rows = db.execute(
                select(Device, Product)
                .join(Topology, Topology.sub_device_id == Device.id)
                .join(Product, Product.id == Device.product_id)
                .where(Topology.gateway_id == gateway_id)
            )
            self._topology[gateway_id] = {
                (p.product_key, d.device_name): _sub(d, p) for d, p in rows
            }

    def disconnected(self, gateway_id: int) -> list[int]:
        """The gateway went away: its logged-in sub-devices go offline (returned)."""
        self._topology.pop(gateway_id, None)
        subs = sorted(self._online.pop(gateway_id, set()))
        now = int(time.time() * 1000)
        for sub_id in subs:
            self._states.connected(sub_id, now, False)
        return subs

    # --- messages (blocking: call from worker threads) ----------------------------------------
    def _resolve(
        self, db: Session, gateway: Identity, auth: gw.SubDeviceAuth, rid: str
    ) -> tuple[Device, Product]:
        row = db.execute(
            select(Device, Product)
            .join(Product, Product.id == Device.product_id)
            .where(Product.product_key == auth.product_key, Device.device_name == auth.device_name)
        ).first()
        where = f"{auth.product_key}/{auth.device_name}"
        if row is None or row[0].enterprise_id != gateway.enterprise_id:
            raise AlinkError(
                AlinkCode.DEVICE_NOT_FOUND, "params", "exists", f"no device {where}", rid
            )
        device, product = row[0], row[1]
        if device.id == gateway.device_id:
            raise AlinkError(
                TOPO_SELF, "params", "not_self", "a gateway is not its own sub-device", rid
            )
        if not device.enabled:
            raise AlinkError(
                AlinkCode.DEVICE_DISABLED, "params", "enabled", f"{where} is disabled", rid
            )
        if not gw.verify_sub_device(auth, self._secrets.secret(device.id, device.secret_salt)):
            raise AlinkError(
                AlinkCode.BAD_PARAMS, "params.sign", "sign", f"wrong sign for {where}", rid
            )
        return device, product

    def topo_add(self, gateway: Identity, payload: bytes) -> bytes:
        """``thing.topo.add``: every entry checked (signature included) before any is added."""
        rid, _, auths = gw.decode_sub_device_auths(payload)
        if not is_gateway(gateway):
            raise AlinkError(AlinkCode.REQUEST_ERROR, "topic", "gateway", "not a gateway", rid)
        with self._sessions() as db:
            found = [self._resolve(db, gateway, a, rid) for a in auths]
            for device, _ in found:
                db.merge(
                    Topology(
                        sub_device_id=device.id, gateway_id=gateway.device_id, created_at=utcnow()
                    )
                )
            db.commit()
            cache = self._topology.setdefault(gateway.device_id, {})
            for device, product in found:
                cache[(product.product_key, device.device_name)] = _sub(device, product)
        data = [{"productKey": a.product_key, "deviceName": a.device_name} for a in auths]
        return encode_reply(rid, AlinkCode.SUCCESS, data=data, method="thing.topo.add")

    def topo_delete(self, gateway: Identity, payload: bytes) -> bytes:
        """``thing.topo.delete``: remove the named sub-devices."""
        rid, _, names = gw.decode_device_list(payload)
        cache = self._topology.setdefault(gateway.device_id, {})
        subs = [cache.get(n) for n in names]
        missing = [n for n, s in zip(names, subs, strict=True) if s is None]
        if missing:
            raise AlinkError(
                TOPO_NOT_FOUND, "params", "topology", f"not in topology: {missing[0]}", rid
            )
        with self._sessions() as db:
            ids = [s.device_id for s in subs if s is not None]
            db.execute(
                delete(Topology).where(
                    Topology.sub_device_id.in_(ids), Topology.gateway_id == gateway.device_id
                )
            )
            db.commit()
        for name in names:
            cache.pop(name, None)
        data = [{"productKey": pk, "deviceName": dn} for pk, dn in names]
        return encode_reply(rid, AlinkCode.SUCCESS, data=data, method="thing.topo.delete")

    def topo_get(self, gateway: Identity, payload: bytes) -> bytes:
        """``thing.topo.get``: the gateway's sub-devices."""
        rid, _, _ = gw.decode_device_list(payload)
        subs = self._topology.get(gateway.device_id, {})
        data = [{"productKey": pk, "deviceName": dn} for pk, dn in sorted(subs)]
        return encode_reply(rid, AlinkCode.SUCCESS, data=data, method="thing.topo.get")

    def login(self, gateway: Identity, payload: bytes, batch: bool) -> bytes:
        """``combine.login`` / ``combine.batch.login``: sub-devices in the topology, signed."""
        if batch:
            rid, _, auths = gw.decode_sub_device_auths(payload)
        else:
            rid, _, one = gw.decode_login(payload)
            auths = [one]
        with self._sessions() as db:
            for auth in auths:
                if self.sub(gateway.device_id, auth.product_key, auth.device_name) is None:
                    where = f"{auth.product_key}/{auth.device_name}"
                    raise AlinkError(
                        TOPO_NOT_FOUND, "params", "topology", f"{where} is not in the topology", rid
                    )
                self._resolve(db, gateway, auth, rid)
        now = int(time.time() * 1000)
        online = self._online.setdefault(gateway.device_id, set())
        data = []
        for auth in auths:
            sub = self.sub(gateway.device_id, auth.product_key, auth.device_name)
            assert sub is not None
            self._states.connected(sub.device_id, now, True)
            online.add(sub.device_id)
            data.append({"productKey": auth.product_key, "deviceName": auth.device_name})
        method = "combine.batch.login" if batch else "combine.login"
        return encode_reply(rid, AlinkCode.SUCCESS, data=data if batch else data[0], method=method)

    def logout(self, gateway: Identity, payload: bytes, batch: bool) -> bytes:
        """``combine.logout`` / ``combine.batch.logout``: the sub-devices go offline."""
        if batch:
            rid, _, names = gw.decode_device_list(payload)
        else:
            rid, _, name = gw.decode_logout(payload)
            names = [name]
        now = int(time.time() * 1000)
        online = self._online.setdefault(gateway.device_id, set())
        for pk, dn in names:
            sub = self.sub(gateway.device_id, pk, dn)
            if sub is None:
                raise AlinkError(
                    TOPO_NOT_FOUND, "params", "topology", f"{pk}/{dn} is not in the topology", rid
                )
            self._states.connected(sub.device_id, now, False)
            online.discard(sub.device_id)
        data = [{"productKey": pk, "deviceName": dn} for pk, dn in names]
        method = "combine.batch.logout" if batch else "combine.logout"
        return encode_reply(rid, AlinkCode.SUCCESS, data=data if batch else data[0], method=method)


def _sub(device: Device, product: Product) -> SubDevice:
    return SubDevice(
        device.id, product.id, device.enterprise_id, product.product_key, device.device_name
    )
