"""Grants: an enterprise's consent that a platform may read named data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

__all__ = ["ALL", "grant_active", "grant_covers"]

#: The wildcard for "every product" or "every property".
ALL = "*"


def grant_active(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> bool:
    """A grant counts until it is revoked or it expires."""
    return revoked_at is None and (expires_at is None or expires_at > now)


def grant_covers(
    products: Sequence[str], properties: Sequence[str], product_key: str, prop: str | None
) -> bool:
    """Whether a grant naming `products` and `properties` covers one product's property
    (`prop` None asks about the product itself)."""
    if ALL not in products and product_key not in products:
        return False
    return prop is None or not properties or ALL in properties or prop in properties
