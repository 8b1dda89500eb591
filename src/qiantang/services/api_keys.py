"""Use cases on a user's own API keys: shown once, stored hashed, revocable at once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import NotFound
from qiantang.registry.tables import ApiKey
from qiantang.services.common import Page, paginate, utcnow
from qiantang.services.security import issue_key

__all__ = ["create_api_key", "issue_api_key", "list_api_keys", "revoke_api_key"]


def issue_api_key(db: Session, user_id: int, name: str) -> tuple[ApiKey, str]:
    """Store a new key for `user_id` and return it with its token (shown only now)."""
    issued = issue_key()
    key = ApiKey(
        user_id=user_id,
        name=name,
        kind="api",
        key_id=issued.key_id,
        secret_hash=issued.secret_hash,
        created_at=utcnow(),
    )
    db.add(key)
    db.commit()
    return key, issued.token


def create_api_key(db: Session, who: Principal, name: str) -> tuple[ApiKey, str]:
    """A new API key for the calling user."""
    return issue_api_key(db, who.user_id, name)


def list_api_keys(db: Session, who: Principal, *, limit: int = 50, offset: int = 0) -> Page[ApiKey]:
    """The caller's API keys (never their secrets)."""
    stmt = select(ApiKey).where(ApiKey.user_id == who.user_id, ApiKey.kind == "api")
    return paginate(db, stmt.order_by(ApiKey.id), limit, offset)


def revoke_api_key(db: Session, who: Principal, key_id: int) -> ApiKey:
    """Revoke one of the caller's keys; the next request with it is refused."""
    key = db.get(ApiKey, key_id)
    if key is None or key.user_id != who.user_id or key.kind != "api":
        raise NotFound("api key", key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.commit()
    return key
