"""Authentication: bearer tokens (API keys and login sessions) to principals."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.domain.access import ENTERPRISE_ROLES, PLATFORM_ROLES, Principal, Role
from qiantang.domain.errors import AuthenticationFailed
from qiantang.registry.tables import ApiKey, Platform, RoleBinding, User
from qiantang.services.common import utcnow
from qiantang.services.security import issue_key, parse_key, verify_key_secret, verify_password

__all__ = ["authenticate", "login", "principal_of"]


def principal_of(db: Session, user: User, key_id: int | None = None) -> Principal:
    """The principal for `user` with its role bindings and the paths of its platforms."""
    platform_roles: dict[int, Role] = {}
    enterprise_roles: dict[int, Role] = {}
    for binding in db.scalars(select(RoleBinding).where(RoleBinding.user_id == user.id)):
        role = Role(binding.role)
        if role in PLATFORM_ROLES and binding.platform_id is not None:
            # an operator binding outranks an analyst binding at the same node
            if platform_roles.get(binding.platform_id) is not Role.OPERATOR:
                platform_roles[binding.platform_id] = role
        elif role in ENTERPRISE_ROLES and binding.enterprise_id is not None:
            enterprise_roles[binding.enterprise_id] = _stronger(
                enterprise_roles.get(binding.enterprise_id), role
            )
    rows = db.execute(
        select(Platform.id, Platform.path).where(Platform.id.in_(list(platform_roles)))
    )
    paths = {pid: path for pid, path in rows}
    return Principal(user.id, user.username, platform_roles, enterprise_roles, paths, key_id)


_RANK = {Role.VIEWER: 0, Role.ENGINEER: 1, Role.ADMIN: 2}


def _stronger(current: Role | None, new: Role) -> Role:
    return new if current is None or _RANK[new] > _RANK[current] else current


def authenticate(db: Session, token: str) -> Principal:
    """The principal behind a bearer token; revoked or expired keys fail at once."""
    parsed = parse_key(token)
    if parsed is None:
        raise AuthenticationFailed("malformed token")
    key_id, secret = parsed
    key = db.scalar(select(ApiKey).where(ApiKey.key_id == key_id))
    if key is None or not verify_key_secret(key.secret_hash, secret):
        raise AuthenticationFailed("unknown token")
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= utcnow()):
        raise AuthenticationFailed("token revoked or expired")
    user = db.get(User, key.user_id)
    if user is None:
        raise AuthenticationFailed("unknown token")
    return principal_of(db, user, key.id)


def login(db: Session, username: str, password: str, hours: int) -> tuple[str, ApiKey]:
    """Check a password and issue a session token valid for `hours`."""
    user = db.scalar(select(User).where(User.username == username))
    if user is None or not verify_password(user.password_hash, password):
        raise AuthenticationFailed("wrong username or password")
    issued = issue_key()
    now = utcnow()
    session = ApiKey(
        user_id=user.id,
        name="login",
        kind="session",
        key_id=issued.key_id,
        secret_hash=issued.secret_hash,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    db.add(session)
    db.commit()
    return issued.token, session
