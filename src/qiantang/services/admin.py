"""Bootstrap: the base platform, its first operator and an API key, once per deployment."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from qiantang.domain.access import Role
from qiantang.domain.errors import Conflict
from qiantang.domain.identifiers import validate_prefix
from qiantang.domain.platform import PlatformKind, path_of
from qiantang.registry.tables import Platform, Setting
from qiantang.services.api_keys import issue_api_key
from qiantang.services.common import utcnow
from qiantang.services.users import BindingSpec, create_user

__all__ = ["BootstrapResult", "bootstrap", "is_bootstrapped"]


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What bootstrap made; `api_key` is shown once."""

    platform_id: int
    user_id: int
    api_key: str


def is_bootstrapped(db: Session) -> bool:
    """Whether the base platform exists."""
    return (
        db.scalar(select(Platform.id).where(Platform.kind == PlatformKind.BASE.value)) is not None
    )


def bootstrap(
    db: Session,
    *,
    prefix: str,
    platform_name: str,
    username: str,
    password: str,
) -> BootstrapResult:
    """Create the base platform with identifier prefix `prefix` and its first operator."""
    validate_prefix(prefix)
    if is_bootstrapped(db):
        raise Conflict.of("kind", "single_base", "this deployment is bootstrapped already")
    base = Platform(
        parent_id=None,
        kind=PlatformKind.BASE.value,
        code=prefix,
        name=platform_name,
        description="",
        prefix=prefix,
        created_at=utcnow(),
    )
    db.add(base)
    db.flush()
    base.path = path_of(None, base.id)
    db.merge(Setting(key="base_prefix", value=prefix))
    db.flush()
    user = create_user(
        db,
        None,
        username=username,
        password=password,
        display_name=username,
        binding=BindingSpec(Role.OPERATOR, platform_id=base.id),
    )
    _, token = issue_api_key(db, user.id, "bootstrap")
    return BootstrapResult(base.id, user.id, token)
