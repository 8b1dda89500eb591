"""Device authentication: Alink MQTT credentials (and HTTP device secrets) to an identity.

Runs once per connection; the identity then travels with every message of the session.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.errors import InvalidInput
from qiantang.ports.ingress import Identity
from qiantang.protocols.alink_auth import parse_connect, verify
from qiantang.registry.tables import Device, Product
from qiantang.services.security import DeviceSecrets

__all__ = ["DeviceAuthenticator", "DeviceContext"]


class DeviceContext:
    """What the pipeline needs about a device beyond its identity: its product and model."""

    __slots__ = ("is_gateway", "product_id", "protocol", "thing_model_version")

    def __init__(
        self,
        product_id: int,
        thing_model_version: int,
        is_gateway: bool = False,
        protocol: str = "alink",
    ) -> None:
        self.product_id = product_id
        self.thing_model_version = thing_model_version
        self.is_gateway = is_gateway
        self.protocol = protocol


class DeviceAuthenticator:
    """Checks device credentials against the registry and the derived device secrets."""

    def __init__(self, sessions: sessionmaker[Session], secrets: DeviceSecrets) -> None:
        self._sessions = sessions
        self._secrets = secrets

    def _lookup(self, db: Session, product_key: str, device_name: str) -> tuple[Device, Product]:
        row = db.execute(
            select(Device, Product)
            .join(Product, Product.id == Device.product_id)
            .where(Product.product_key == product_key, Device.device_name == device_name)
        ).first()
        if row is None:
            raise LookupError("unknown device")
        return row[0], row[1]

    def _identity(self, device: Device, product: Product, protocol: str = "alink") -> Identity:
        context = DeviceContext(
            product.id, product.thing_model_version, device.is_gateway, protocol
        )
        return Identity(
            device.id, product.product_key, device.device_name, device.enterprise_id, context
        )

    def authenticate_mqtt(
        self, client_id: str, username: str | None, password: bytes | None
    ) -> Identity | None:
        """The identity for Alink MQTT credentials, or None (unknown, disabled, bad signature)."""
        if username is None or password is None:
            return None
        try:
            connect = parse_connect(client_id, username)
            text = password.decode("ascii")
        except (InvalidInput, UnicodeDecodeError):
            return None
        with self._sessions() as db:
            try:
                device, product = self._lookup(db, connect.product_key, connect.device_name)
            except LookupError:
                return None
            if not device.enabled:
                return None
            secret = self._secrets.secret(device.id, device.secret_salt)
            if not verify(connect, secret, text):
                return None
            return self._identity(device, product)

    def authenticate_token(self, token: str) -> Identity | None:
        """The identity behind a ThingsBoard-style access token, or None."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._sessions() as db:
            row = db.execute(
                select(Device, Product)
                .join(Product, Product.id == Device.product_id)
                .where(Device.access_token_hash == digest)
            ).first()
            if row is None or not row[0].enabled:
                return None
            return self._identity(row[0], row[1], "thingsboard")

    def authenticate_secret(
        self, product_key: str, device_name: str, secret: str
    ) -> Identity | None:
        """The identity for a device secret presented directly (HTTP ingest), or None."""
        with self._sessions() as db:
            try:
                device, product = self._lookup(db, product_key, device_name)
            except LookupError:
                return None
            expected = self._secrets.secret(device.id, device.secret_salt)
            if not device.enabled or not hmac.compare_digest(expected, secret):
                return None
            return self._identity(device, product)
