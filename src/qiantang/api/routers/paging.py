"""Paging parameters shared by every list route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

__all__ = ["Limit", "Offset"]

Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, description="items to skip")]
