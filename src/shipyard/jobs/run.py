"""``run_task(task_id)``: the one code path a deploy job takes, wherever it runs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import update

from shipyard.models import DeployTask, TaskState
from shipyard.models.types import utcnow

if TYPE_CHECKING:
    from shipyard.services.context import Runtime

log = logging.getLogger(__name__)


def claim(runtime: Runtime, task_id: int) -> bool:
    """queued -> running, as a compare-and-set: of two deliveries of one job, one wins."""
    with runtime.sessions() as db, db.begin():
        result = db.execute(update(DeployTask)
                            .where(DeployTask.id == task_id,
                                   DeployTask.state == TaskState.QUEUED)
                            .values(state=TaskState.RUNNING, started_at=utcnow(),
                                    version=DeployTask.version + 1, updated_at=utcnow()))
        return result.rowcount == 1  # type: ignore[attr-defined]


def finish(runtime: Runtime, task_id: int, state: TaskState, error: str | None = None) -> None:
    with runtime.sessions() as db, db.begin():
        db.execute(update(DeployTask)
                   .where(DeployTask.id == task_id, DeployTask.state == TaskState.RUNNING)
                   .values(state=state, error=error, finished_at=utcnow(),
                           version=DeployTask.version + 1, updated_at=utcnow()))


def run_task(runtime: Runtime, task_id: int) -> None:
    if not claim(runtime, task_id):
        log.info("task %s was not queued (already taken or cancelled)", task_id)
        return
    try:
        from shipyard.deploy.runner import execute
    except ImportError:
        finish(runtime, task_id, TaskState.FAILED, "the deploy engine is not installed")
        return
    execute(runtime, task_id)
