"""After a crash: no task stays ``running`` forever, and queued work is dispatched again."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from shipyard.models import DeployTask, TaskState
from shipyard.models.types import utcnow

if TYPE_CHECKING:
    from shipyard.services.context import Runtime

log = logging.getLogger(__name__)


def recover_interrupted(runtime: Runtime) -> list[int]:
    """Mark tasks left ``running`` by a dead embedded runner as ``interrupted`` and
    re-dispatch ``queued`` ones. Returns the ids marked interrupted."""
    with runtime.sessions() as db, db.begin():
        stuck = list(db.scalars(select(DeployTask.id)
                                .where(DeployTask.state == TaskState.RUNNING)))
        if stuck:
            db.execute(update(DeployTask)
                       .where(DeployTask.id.in_(stuck), DeployTask.state == TaskState.RUNNING)
                       .values(state=TaskState.INTERRUPTED, finished_at=utcnow(),
                               error="the server stopped while this task was running",
                               version=DeployTask.version + 1, updated_at=utcnow()))
        queued = list(db.scalars(select(DeployTask.id)
                                 .where(DeployTask.state == TaskState.QUEUED)))
    for task_id in stuck:
        log.warning("task %s was running when the server stopped: now interrupted", task_id)
    if runtime.dispatcher is not None:
        for task_id in queued:
            runtime.dispatcher.dispatch_task(task_id)
    return stuck
