"""Task events, published after the change that caused them is committed. Listeners
(notifications, metrics) subscribe on the runtime; publishing never fails the caller."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from shipyard.models.types import utcnow

if TYPE_CHECKING:
    from shipyard.services.context import Context, Runtime

log = logging.getLogger(__name__)


class TaskEventKind(enum.StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class TaskEvent:
    kind: TaskEventKind
    task_id: int
    actor: str = "system"
    reason: str | None = None
    at: datetime = field(default_factory=utcnow)


def publish(runtime: Runtime, event: TaskEvent) -> None:
    for listener in list(runtime.listeners):
        try:
            listener(event)
        except Exception:  # a listener's bug must never break a deploy or a request
            log.exception("event listener failed for %s", event)


def publish_after_commit(ctx: Context, kind: TaskEventKind, task_id: int,
                         reason: str | None = None) -> None:
    event = TaskEvent(kind, task_id, ctx.actor_name, reason)
    ctx.after_commit(lambda: publish(ctx.runtime, event))
