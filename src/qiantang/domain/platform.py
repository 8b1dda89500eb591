"""The 1+N platform tree: one base platform, any depth of industry, region and enterprise
platforms below it, no cycles."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from qiantang.domain.errors import Conflict, InvalidInput

__all__ = ["PlatformKind", "check_move", "check_parent", "path_ids", "path_of"]


class PlatformKind(StrEnum):
    """What a platform serves: the cross-industry base, an industry, a region, an enterprise."""

    BASE = "base"
    INDUSTRY = "industry"
    REGION = "region"
    ENTERPRISE = "enterprise"


def check_parent(kind: PlatformKind, parent_id: int | None, base_exists: bool) -> None:
    """The base has no parent and is unique; every other platform has a parent."""
    if kind is PlatformKind.BASE:
        if base_exists:
            raise Conflict.of("kind", "single_base", "a deployment has exactly one base platform")
        if parent_id is not None:
            raise InvalidInput.of("parent_id", "base_has_no_parent", "the base has no parent")
    elif parent_id is None:
        raise InvalidInput.of("parent_id", "required", f"a {kind} platform needs a parent")


def check_move(platform_id: int, new_parent_id: int, parents: Mapping[int, int | None]) -> None:
    """Refuse a move that would put `platform_id` below itself (`parents`: id -> parent id)."""
    node: int | None = new_parent_id
    seen: set[int] = set()
    while node is not None and node not in seen:
        if node == platform_id:
            raise InvalidInput.of(
                "parent_id", "no_cycle", "a platform cannot move below itself or its descendants"
            )
        seen.add(node)
        node = parents.get(node)


def path_of(parent_path: str | None, platform_id: int) -> str:
    """Materialised path ``/1/5/9/`` of ids from the base down to `platform_id`."""
    return f"{parent_path or '/'}{platform_id}/"


def path_ids(path: str) -> list[int]:
    """The ids along a materialised path, base first."""
    return [int(p) for p in path.strip("/").split("/") if p]
