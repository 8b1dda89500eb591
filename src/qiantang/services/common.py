"""Small pieces every registry service uses: paging, lookups, time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, false, func, or_, select
from sqlalchemy.orm import Session

from qiantang.domain.errors import InvalidInput, NotFound
from qiantang.registry.tables import Base, Platform

__all__ = ["Page", "get_or_404", "naive_utc", "paginate", "referenced", "subtree_filter", "utcnow"]

T = TypeVar("T")
M = TypeVar("M", bound=Base)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int


def utcnow() -> datetime:
    """Naive UTC now (the registry stores naive UTC datetimes)."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(moment: datetime) -> datetime:
    """`moment` as a naive UTC datetime (naive input is taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def paginate(db: Session, stmt: Select[M], limit: int, offset: int) -> Page[M]:
    """Run `stmt` for one page, with the total count of the unpaged query."""
    total = db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(db.scalars(stmt.limit(limit).offset(offset)))
    return Page(items, total, limit, offset)


def get_or_404(db: Session, model: type[M], object_id: int, kind: str) -> M:
    """The row with primary key `object_id`, or NotFound."""
    row = db.get(model, object_id)
    if row is None:
        raise NotFound(kind, object_id)
    return row


def referenced(db: Session, model: type[M], object_id: int | None, field: str, kind: str) -> M:
    """A row a request body refers to; a missing one is a 422 on that field."""
    row = db.get(model, object_id) if object_id is not None else None
    if row is None:
        raise InvalidInput.of(field, "exists", f"no {kind} with id {object_id}")
    return row


def subtree_filter(paths: Sequence[str], column: Any = Platform.path) -> ColumnElement[bool]:
    """SQL condition: `column` (a materialised path) lies in one of the subtrees `paths`."""
    if not paths:
        return false()
    return or_(*(column.like(f"{p}%") for p in paths))
