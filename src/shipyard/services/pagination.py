"""Keyset pagination: newest first, ``cursor`` is the last id seen. Stays fast at any
depth, unlike OFFSET."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from shipyard.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 200


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: int | None


def keyset(db: Session, query: Select[Any], id_column: InstrumentedAttribute[int], *,
           cursor: int | None, limit: int, ascending: bool = False) -> Page[Any]:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be from 1 to {MAX_LIMIT}", field="limit")
    if cursor is not None:
        query = query.where(id_column > cursor if ascending else id_column < cursor)
    query = query.order_by(id_column.asc() if ascending else id_column.desc())
    rows = list(db.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None)
