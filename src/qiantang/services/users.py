"""Use cases on users and their role bindings.

A binding at a platform needs an operator at or above it; a binding at an enterprise needs
its admin or an operator over its home platform. A user is visible to itself and to whoever
may manage at least one of its bindings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from qiantang.domain.access import PLATFORM_ROLES, Principal, Role
from qiantang.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from qiantang.registry.tables import ApiKey, Enterprise, Platform, RoleBinding, User
from qiantang.services.common import Page, utcnow
from qiantang.services.security import hash_password
from qiantang.services.tenancy import manageable_enterprise, visible_enterprise

__all__ = [
    "BindingSpec",
    "UserChange",
    "add_binding",
    "create_user",
    "delete_user",
    "get_user",
    "list_bindings",
    "list_users",
    "remove_binding",
    "update_user",
]

MIN_PASSWORD = 8


@dataclass(frozen=True, slots=True)
class BindingSpec:
    """A role at exactly one node."""

    role: Role
    platform_id: int | None = None
    enterprise_id: int | None = None


@dataclass(frozen=True, slots=True)
class UserChange:
    """Fields a PATCH may change; None leaves a field as it is."""

    display_name: str | None = None
    password: str | None = None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput.of("password", "min_length", f"at least {MIN_PASSWORD} characters")


def _check_binding(db: Session, who: Principal, spec: BindingSpec) -> None:
    """Refuse a binding that is malformed or that `who` may not give."""
    if spec.role in PLATFORM_ROLES:
        if spec.platform_id is None or spec.enterprise_id is not None:
            raise InvalidInput.of("platform_id", "required", f"{spec.role} binds at a platform")
        platform = db.get(Platform, spec.platform_id)
        if platform is None:
            raise InvalidInput.of("platform_id", "exists", "no such platform")
        if not who.operates(platform.path):
            raise PermissionDenied("only an operator at or above the platform may bind roles")
        return
    if spec.enterprise_id is None or spec.platform_id is not None:
        raise InvalidInput.of("enterprise_id", "required", f"{spec.role} binds at an enterprise")
    try:
        enterprise = visible_enterprise(db, who, spec.enterprise_id)
    except NotFound as err:
        raise InvalidInput.of("enterprise_id", "exists", "no such enterprise") from err
    if not manageable_enterprise(db, who, enterprise):
        raise PermissionDenied("only the enterprise's admin or home operator may bind roles")


def _may_manage_binding(db: Session, who: Principal, binding: RoleBinding) -> bool:
    if binding.platform_id is not None:
        platform = db.get(Platform, binding.platform_id)
        return platform is not None and who.operates(platform.path)
    enterprise = db.get(Enterprise, binding.enterprise_id) if binding.enterprise_id else None
    return enterprise is not None and manageable_enterprise(db, who, enterprise)


def _bindings(db: Session, user_id: int) -> list[RoleBinding]:
    return list(db.scalars(select(RoleBinding).where(RoleBinding.user_id == user_id)))


def get_user(db: Session, who: Principal, user_id: int) -> User:
    """A user the principal is, or may manage."""
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    if user.id == who.user_id or any(
        _may_manage_binding(db, who, b) for b in _bindings(db, user.id)
    ):
        return user
    raise NotFound("user", user_id)


def list_users(db: Session, who: Principal, *, limit: int = 50, offset: int = 0) -> Page[User]:
    """Users the principal is or may manage (filtered in Python: user counts are small)."""
    visible: list[User] = []
    for user in db.scalars(select(User).order_by(User.id)):
        if user.id == who.user_id or any(
            _may_manage_binding(db, who, b) for b in _bindings(db, user.id)
        ):
            visible.append(user)
    return Page(visible[offset : offset + limit], len(visible), limit, offset)


def create_user(
    db: Session,
    who: Principal | None,
    *,
    username: str,
    password: str,
    display_name: str = "",
    binding: BindingSpec | None,
) -> User:
    """A new user with its first role binding (`who` None only at bootstrap)."""
    _check_password(password)
    if who is not None:
        if binding is None:
            raise InvalidInput.of("role", "required", "a new user needs a role somewhere")
        _check_binding(db, who, binding)
    if db.scalar(select(User.id).where(User.username == username)):
        raise Conflict.of("username", "unique", "this username is taken")
    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        created_by=who.user_id if who else None,
        created_at=utcnow(),
    )
    db.add(user)
    db.flush()
    if binding is not None:
        db.add(_binding_row(user.id, binding))
    db.commit()
    return user


def _binding_row(user_id: int, spec: BindingSpec) -> RoleBinding:
    return RoleBinding(
        user_id=user_id,
        role=spec.role.value,
        platform_id=spec.platform_id,
        enterprise_id=spec.enterprise_id,
        created_at=utcnow(),
    )


def update_user(db: Session, who: Principal, user_id: int, change: UserChange) -> User:
    """Change a display name or password (oneself, or a manager of the user)."""
    user = get_user(db, who, user_id)
    if change.display_name is not None:
        user.display_name = change.display_name
    if change.password is not None:
        _check_password(change.password)
        user.password_hash = hash_password(change.password)
    db.commit()
    return user


def delete_user(db: Session, who: Principal, user_id: int) -> None:
    """Delete a user whose every binding the principal may manage; its keys die with it."""
    user = get_user(db, who, user_id)
    if user.id == who.user_id:
        raise PermissionDenied("you cannot delete yourself")
    if not all(_may_manage_binding(db, who, b) for b in _bindings(db, user.id)):
        raise PermissionDenied("the user holds roles you do not manage")
    db.execute(delete(ApiKey).where(ApiKey.user_id == user.id))
    db.execute(delete(RoleBinding).where(RoleBinding.user_id == user.id))
    db.delete(user)
    db.commit()


def list_bindings(db: Session, who: Principal, user_id: int) -> list[RoleBinding]:
    """A visible user's bindings."""
    return _bindings(db, get_user(db, who, user_id).id)


def add_binding(db: Session, who: Principal, user_id: int, spec: BindingSpec) -> RoleBinding:
    """Give a visible user another role."""
    user = get_user(db, who, user_id)
    _check_binding(db, who, spec)
    row = _binding_row(user.id, spec)
    db.add(row)
    db.commit()
    return row


def remove_binding(db: Session, who: Principal, user_id: int, binding_id: int) -> None:
    """Take a role away (a manager of that binding may)."""
    user = get_user(db, who, user_id)
    binding = db.get(RoleBinding, binding_id)
    if binding is None or binding.user_id != user.id:
        raise NotFound("binding", binding_id)
    if not _may_manage_binding(db, who, binding):
        raise PermissionDenied("you do not manage this role")
    db.delete(binding)
    db.commit()
