"""After a crash: no task stays ``running`` forever, its lock is freed, and queued work is
dispatched again.

A running task's runner is dead when its heartbeat is stale, or (seen from the same
machine) when the process named in ``runner`` no longer exists. Such a task becomes
``interrupted`` (a compare-and-set on the heartbeat we saw), keeping its per-host steps so
that "retry" can redeploy the unfinished hosts."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from shipyard.db.engine import changed
from shipyard.jobs.locks import TargetLocks
from shipyard.jobs.run import STALE_AFTER
from shipyard.models import (
    DeployTask,
    HostStep,
    LogLine,
    StepStatus,
    Target,
    TaskState,
)
from shipyard.models.types import utcnow
from shipyard.services.events import TaskEvent, TaskEventKind, publish

if TYPE_CHECKING:
    from shipyard.services.context import Runtime

log = logging.getLogger(__name__)
REAP_EVERY = 20.0


def runner_is_dead(runner: str | None, heartbeat: datetime | None, now: datetime) -> bool:
    if heartbeat is None or now - heartbeat > STALE_AFTER:
        return True
    host, _, rest = (runner or "").partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def recover_interrupted(runtime: Runtime, *, redispatch_queued: bool = True) -> list[int]:
    """Mark running tasks whose runner died as ``interrupted`` and free their locks;
    re-dispatch queued tasks. Returns the ids marked interrupted."""
    now = utcnow()
    interrupted = []
    with runtime.sessions() as db, db.begin():
        rows = db.execute(select(DeployTask.id, DeployTask.runner, DeployTask.heartbeat_at,
                                 DeployTask.version)
                          .where(DeployTask.state == TaskState.RUNNING)).all()
        for task_id, runner, heartbeat, version in rows:
            if not runner_is_dead(runner, heartbeat, now):
                continue
            done = changed(db.execute(update(DeployTask)
                              .where(DeployTask.id == task_id, DeployTask.version == version,
                                     DeployTask.state == TaskState.RUNNING)
                              .values(state=TaskState.INTERRUPTED, finished_at=now,
                                      error="the runner stopped while this task was running; "
                                            "retry it to finish the remaining hosts",
                                      version=version + 1, updated_at=now)))
            if done:
                interrupted.append(task_id)
        TargetLocks.release_all_for(db, interrupted)
        if interrupted:
            # Steps the dead runner never finished: neither pending nor running any more.
            db.execute(update(HostStep)
                       .where(HostStep.task_id.in_(interrupted),
                              HostStep.status.in_([StepStatus.PENDING.value,
                                                   StepStatus.RUNNING.value]))
                       .values(status=StepStatus.INTERRUPTED.value, finished_at=now))
        for task_id in interrupted:
            seq = db.scalar(select(LogLine.seq).where(LogLine.task_id == task_id)
                            .order_by(LogLine.seq.desc()).limit(1)) or 0
            db.add(LogLine(task_id=task_id, seq=seq + 1, host="", stage="task",
                           stream="system", line="interrupted: the runner stopped", at=now))
        queued = db.execute(select(DeployTask.id, Target.zone)
                            .join(Target, Target.id == DeployTask.target_id)
                            .where(DeployTask.state == TaskState.QUEUED)).all()
    for task_id in interrupted:
        log.warning("task %s was running when its runner stopped: now interrupted", task_id)
        publish(runtime, TaskEvent(TaskEventKind.INTERRUPTED, task_id,
                                   reason="the runner stopped"))
    if redispatch_queued and runtime.dispatcher is not None:
        for task_id, zone in queued:
            runtime.dispatcher.dispatch_task(task_id, zone or "")
    return interrupted


class Reaper:
    """Every ``REAP_EVERY`` seconds, interrupt tasks whose runner died elsewhere (another
    server or a Celery worker that vanished)."""

    def __init__(self, runtime: Runtime, every: float = REAP_EVERY) -> None:
        self.runtime = runtime
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shipyard-reaper", daemon=True)

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                recover_interrupted(self.runtime, redispatch_queued=False)
            except Exception:
                log.exception("recovery pass failed")
