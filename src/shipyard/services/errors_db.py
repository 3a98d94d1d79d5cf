"""Map database integrity errors to domain errors at the adapter edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError

from shipyard.errors import AlreadyExists, Conflict


@contextmanager
def integrity(what: str, *, field: str = "name") -> Iterator[None]:
    """Turn a unique or foreign-key violation during the block into a clear error."""
    try:
        yield
    except IntegrityError as exc:
        text = str(exc.orig).lower()
        if "unique" in text or "duplicate" in text:
            raise AlreadyExists(f"{what} already exists", field=field) from exc
        raise Conflict(f"{what} is still in use by other objects") from exc
