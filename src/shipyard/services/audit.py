"""Recording and reading the audit trail. Every change calls ``record``."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.models import AuditEvent, Space
from shipyard.services.context import Context
from shipyard.services.pagination import Page, keyset

MASK = "********"
SECRET_FIELDS = frozenset({"secret", "password", "password_hash", "private_key", "token",
                           "token_hash", "webhook_secret"})


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """A JSON-friendly view of ``obj`` for before/after, with secrets masked."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name, None)
        if name in SECRET_FIELDS:
            value = MASK if value else None
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, enum.Enum):
            value = getattr(value, "label", value.value)
        out[name] = value
    return out


def record(ctx: Context, action: str, object_type: str, object_id: object, *,
           space_id: int | None = None, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None) -> AuditEvent:
    if before is not None and after is not None:
        # Keep only what changed, plus enough to tell what it was.
        changed = {k for k in after if before.get(k) != after.get(k)}
        before = {k: before.get(k) for k in changed}
        after = {k: after[k] for k in changed}
    event = AuditEvent(
        space_id=space_id,
        actor_id=ctx.who.user_id if ctx.who and ctx.who.user_id > 0 else None,
        actor=ctx.actor_name,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        address=ctx.address,
        before=before,
        after=after,
    )
    ctx.db.add(event)
    return event


def list_events(ctx: Context, space: Space | None, *, action: str | None = None,
                actor: str | None = None, object_type: str | None = None,
                cursor: int | None = None, limit: int = 50) -> Page[AuditEvent]:
    """A space's events (OWNER+), or with no space the events that belong to none:
    logins, users, tokens, spaces created or deleted (SUPER)."""
    if space is None:
        rbac.require(ctx.principal, "audit.global")
        query = select(AuditEvent).where(AuditEvent.space_id.is_(None))
    else:
        rbac.require(ctx.principal, "audit.read", space.id)
        query = select(AuditEvent).where(AuditEvent.space_id == space.id)
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if object_type:
        query = query.where(AuditEvent.object_type == object_type)
    return keyset(ctx.db, query, AuditEvent.id, cursor=cursor, limit=limit)
