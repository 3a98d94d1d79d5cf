"""Reading what a task did: the host x stage matrix and its output lines."""

from __future__ import annotations

from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.errors import InvalidInput
from shipyard.models import HostStep, LogLine, Space
from shipyard.services import lookup
from shipyard.services.context import Context

MAX_LINES = 5000


def steps(ctx: Context, space: Space, task_id: int) -> list[HostStep]:
    task = lookup.task(ctx, space.id, task_id)
    rbac.require(ctx.principal, "task.read", space.id, task.project_id)
    return list(ctx.db.scalars(select(HostStep).where(HostStep.task_id == task.id)
                               .order_by(HostStep.id)))


def lines(ctx: Context, space: Space, task_id: int, *, after: int = 0, limit: int = 1000,
          host: str | None = None) -> list[LogLine]:
    """Lines with ``seq > after``, in order (optionally one host's only)."""
    task = lookup.task(ctx, space.id, task_id)
    rbac.require(ctx.principal, "task.read", space.id, task.project_id)
    if not 1 <= limit <= MAX_LINES:
        raise InvalidInput(f"limit must be from 1 to {MAX_LINES}", field="limit")
    query = select(LogLine).where(LogLine.task_id == task.id, LogLine.seq > after)
    if host is not None:
        query = query.where(LogLine.host == host)
    return list(ctx.db.scalars(query.order_by(LogLine.seq).limit(limit)))


def failed_or_unfinished_hosts(ctx: Context, task_id: int) -> set[int]:
    """Servers of a task that did not complete every stage (for "retry failed hosts")."""
    rows = ctx.db.execute(select(HostStep.server_id, HostStep.status)
                          .where(HostStep.task_id == task_id, HostStep.server_id.is_not(None)))
    bad: set[int] = set()
    for server_id, status in rows:
        if server_id is not None and status != "succeeded":
            bad.add(server_id)
    return bad


def switched_hosts(ctx: Context, task_id: int) -> set[int]:
    """Servers a task switched to its release."""
    return set(ctx.db.scalars(select(HostStep.server_id)
                              .where(HostStep.task_id == task_id, HostStep.stage == "switch",
                                     HostStep.status == "succeeded")))
