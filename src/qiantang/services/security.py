"""Secrets: password hashing (argon2id), API keys, and device secrets.

Device secrets are *derived*, never stored: ``secret = HMAC-SHA256(master key, device id +
salt)``. The Alink handshake needs the secret itself to check an HMAC signature, so a one-way
hash at rest cannot serve; deriving it from a master key kept outside the database (a file
with mode 0600 in the data directory, or ``QIANTANG_SECRET_KEY``) means a stolen registry
holds no usable device secret. Rotation draws a new salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "DeviceSecrets",
    "IssuedKey",
    "hash_password",
    "issue_key",
    "load_master_key",
    "parse_key",
    "verify_key_secret",
    "verify_password",
]

_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) defaults
_KEY_PREFIX = "qtk"


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly made API key: `token` is shown once, the rest is stored."""

    key_id: str
    token: str
    secret_hash: str


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def issue_key() -> IssuedKey:
    """A new random key ``qtk_{key_id}_{secret}`` and the hash to store."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return IssuedKey(key_id, f"{_KEY_PREFIX}_{key_id}_{secret}", _sha256(secret))


def parse_key(token: str) -> tuple[str, str] | None:
    """Split a token into (key_id, secret), or None if it is not one of ours."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != _KEY_PREFIX or len(parts[1]) != 16 or not parts[2]:
        return None
    return parts[1], parts[2]


def verify_key_secret(secret_hash: str, secret: str) -> bool:
    """Constant-time check of a key secret against its stored hash."""
    return hmac.compare_digest(secret_hash, _sha256(secret))


def load_master_key(data_dir: Path, configured: str | None) -> bytes:
    """The configured master key, else the one in ``data_dir/secret.key`` (created once)."""
    if configured:
        return configured.encode()
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class DeviceSecrets:
    """Derives device secrets from the master key."""

    def __init__(self, master_key: bytes) -> None:
        self._key = master_key

    @staticmethod
    def new_salt() -> str:
        """A fresh salt; a new salt is a new secret."""
        return secrets.token_hex(16)

    def mac(self, text: str) -> str:
        """A URL-safe MAC of `text` under the master key (signed download URLs)."""
        digest = hmac.new(self._key, f"mac:{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def secret(self, device_id: int, salt: str) -> str:
        """The device secret: 32 URL-safe characters."""
        mac = hmac.new(self._key, f"device:{device_id}:{salt}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode()[:32]
