"""Use cases on the platform tree.

Platform records form a directory every signed-in principal may read (a platform advertises
itself to the enterprises that may join it; it holds no tenant data). Changes need an
operator at the platform or above; deleting needs an operator strictly above.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from qiantang.domain.access import Principal
from qiantang.domain.errors import Conflict, PermissionDenied
from qiantang.domain.identifiers import child_prefix, validate_code
from qiantang.domain.platform import PlatformKind, check_move, check_parent, path_of
from qiantang.registry.tables import (
    Enterprise,
    Grant,
    Membership,
    Platform,
    RoleBinding,
    Template,
)
from qiantang.services.common import Page, get_or_404, paginate, referenced, utcnow

__all__ = [
    "PlatformChange",
    "create_platform",
    "delete_platform",
    "get_platform",
    "list_platforms",
    "update_platform",
]


@dataclass(frozen=True, slots=True)
class PlatformChange:
    """Fields a PATCH may change; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    parent_id: int | None = None


def get_platform(db: Session, who: Principal, platform_id: int) -> Platform:
    """One platform (the directory is readable by every principal)."""
    return get_or_404(db, Platform, platform_id, "platform")


def list_platforms(
    db: Session,
    who: Principal,
    *,
    parent_id: int | None = None,
    kind: PlatformKind | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[Platform]:
    """Platforms, optionally the children of `parent_id` or of one kind, ordered by id."""
    stmt = select(Platform).order_by(Platform.id)
    if parent_id is not None:
        stmt = stmt.where(Platform.parent_id == parent_id)
    if kind is not None:
        stmt = stmt.where(Platform.kind == kind.value)
    return paginate(db, stmt, limit, offset)


def _next_code(db: Session, parent_id: int) -> str:
    codes = db.scalars(select(Platform.code).where(Platform.parent_id == parent_id))
    numbers = [int(c) for c in codes if c.isdigit()]
    return str(max(numbers, default=0) + 1)


def create_platform(
    db: Session,
    who: Principal,
    *,
    name: str,
    kind: PlatformKind,
    parent_id: int | None,
    code: str | None = None,
    description: str = "",
) -> Platform:
    """A new platform under `parent_id`, its prefix delegated from the parent's."""
    base_exists = db.scalar(select(func.count()).where(Platform.kind == "base")) != 0
    check_parent(kind, parent_id, base_exists)
    parent = referenced(db, Platform, parent_id, "parent_id", "platform")
    if not who.operates(parent.path):
        raise PermissionDenied("only an operator of the parent platform may add a platform")
    code = validate_code(code) if code else _next_code(db, parent.id)
    if db.scalar(select(Platform.id).where(Platform.parent_id == parent.id, Platform.code == code)):
        raise Conflict.of("code", "unique", f"the parent already has a platform with code {code}")
    platform = Platform(
        parent_id=parent.id,
        kind=kind.value,
        code=code,
        name=name,
        description=description,
        prefix=child_prefix(parent.prefix, code),
        created_at=utcnow(),
    )
    db.add(platform)
    db.flush()
    platform.path = path_of(parent.path, platform.id)
    db.commit()
    return platform


def update_platform(
    db: Session, who: Principal, platform_id: int, change: PlatformChange
) -> Platform:
    """Rename, describe or move a platform. A move keeps every identifier (identifiers are
    permanent once printed on a nameplate) and refuses cycles."""
    platform = get_platform(db, who, platform_id)
    if not who.operates(platform.path):
        raise PermissionDenied("only an operator of the platform or above may change it")
    if change.name is not None:
        platform.name = change.name
    if change.description is not None:
        platform.description = change.description
    if change.parent_id is not None and change.parent_id != platform.parent_id:
        _move(db, who, platform, change.parent_id)
    db.commit()
    return platform


def _move(db: Session, who: Principal, platform: Platform, new_parent_id: int) -> None:
    if platform.parent_id is None:
        raise Conflict.of("parent_id", "base_has_no_parent", "the base platform cannot move")
    parent = referenced(db, Platform, new_parent_id, "parent_id", "platform")
    parents = {pid: parent for pid, parent in db.execute(select(Platform.id, Platform.parent_id))}
    check_move(platform.id, parent.id, parents)
    if not who.operates(parent.path):
        raise PermissionDenied("moving needs an operator of the new parent platform")
    clash = select(Platform.id).where(
        Platform.parent_id == parent.id, Platform.code == platform.code
    )
    if db.scalar(clash):
        raise Conflict.of("code", "unique", "the new parent already has a platform with this code")
    old_path, new_path = platform.path, path_of(parent.path, platform.id)
    db.execute(
        update(Platform)
        .where(Platform.path.like(f"{old_path}%"))
        .values(path=func.replace(Platform.path, old_path, new_path))
        .execution_options(synchronize_session=False)
    )
    platform.parent_id = parent.id
    platform.path = new_path


def delete_platform(db: Session, who: Principal, platform_id: int) -> None:
    """Delete an empty platform (no sub-platforms, enterprises, members or templates)."""
    platform = get_platform(db, who, platform_id)
    parent = db.get(Platform, platform.parent_id) if platform.parent_id else None
    if parent is None or not who.operates(parent.path):
        raise PermissionDenied("only an operator above a platform may delete it")
    for model, column, what in (
        (Platform, Platform.parent_id, "sub-platforms"),
        (Enterprise, Enterprise.home_platform_id, "home enterprises"),
        (Membership, Membership.platform_id, "member enterprises"),
        (Template, Template.platform_id, "templates"),
    ):
        if db.scalar(select(func.count()).select_from(model).where(column == platform.id)):
            raise Conflict.of("id", "not_empty", f"the platform still has {what}")
    db.execute(delete(Grant).where(Grant.platform_id == platform.id))
    db.execute(delete(RoleBinding).where(RoleBinding.platform_id == platform.id))
    db.delete(platform)
    db.commit()
