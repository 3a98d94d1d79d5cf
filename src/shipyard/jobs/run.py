"""``run_task(task_id)``: the one code path a deploy job takes, wherever it runs.

    wait for the target's lock (the task stays ``queued``, with a log line saying why)
    -> claim: queued -> running (compare-and-set; a second delivery of the job loses)
    -> heartbeat: renew the lock lease and the task's heartbeat; notice cancel requests
    -> run the deploy -> succeeded | failed | cancelled -> release the lock
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from shipyard.db.engine import changed
from shipyard.deploy.logsink import LogSink
from shipyard.jobs.locks import TargetLocks
from shipyard.models import DeployTask, TaskKind, TaskState
from shipyard.models.types import utcnow
from shipyard.services.events import TaskEvent, TaskEventKind, publish

if TYPE_CHECKING:
    from shipyard.services.context import Runtime

log = logging.getLogger(__name__)
HEARTBEAT = 5.0
LOCK_POLL = 1.0
# A runner that has not beaten for this long is taken for dead (see recovery).
STALE_AFTER = timedelta(seconds=60)


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_task(runtime: Runtime, task_id: int) -> None:
    holder = runner_id()
    locks = TargetLocks(runtime.sessions, holder)
    with runtime.sessions() as db:
        task = db.get(DeployTask, task_id)
        if task is None or task.state is not TaskState.QUEUED:
            return
        target_id = task.target_id
    sink = LogSink(runtime.sessions, task_id)
    try:
        if not _wait_for_lock(runtime, locks, target_id, task_id, sink):
            return
        try:
            if not claim(runtime, task_id, holder):
                log.info("task %s was not queued any more (cancelled or taken)", task_id)
                return
            publish(runtime, TaskEvent(TaskEventKind.STARTED, task_id))
            _run_claimed(runtime, locks, target_id, task_id, sink)
        finally:
            locks.release(target_id, task_id)
    finally:
        sink.close()


def _wait_for_lock(runtime: Runtime, locks: TargetLocks, target_id: int, task_id: int,
                   sink: LogSink) -> bool:
    """Block until this task holds the target's lock; False if it stopped being queued."""
    told = 0
    while True:
        held = locks.acquire(target_id, task_id)
        if held is None:
            return True
        if held.task_id and held.task_id != told:
            sink.system(f"waiting: task #{held.task_id} is deploying to this target; this "
                        "task starts when it finishes")
            told = held.task_id
        with runtime.sessions() as db:
            state = db.scalar(select(DeployTask.state).where(DeployTask.id == task_id))
        if state is not TaskState.QUEUED:
            return False
        time.sleep(LOCK_POLL)


def claim(runtime: Runtime, task_id: int, holder: str) -> bool:
    """queued -> running, as a compare-and-set: of two deliveries of one job, one wins."""
    from shipyard.deploy.release import make_release_id

    now = utcnow()
    with runtime.sessions() as db, db.begin():
        result = db.execute(update(DeployTask)
                            .where(DeployTask.id == task_id,
                                   DeployTask.state == TaskState.QUEUED)
                            .values(state=TaskState.RUNNING, started_at=now,
                                    heartbeat_at=now, runner=holder,
                                    # A follow-up (retry, continue) ships the same
                                    # release as its parent, so hosts agree on its id.
                                    release=func.coalesce(DeployTask.release,
                                                          make_release_id(task_id, now)),
                                    version=DeployTask.version + 1, updated_at=now))
        return changed(result) == 1


def finish(runtime: Runtime, task_id: int, state: TaskState, error: str | None = None) -> bool:
    """running -> a final state (compare-and-set), then announce it."""
    with runtime.sessions() as db, db.begin():
        done = changed(db.execute(update(DeployTask)
                                  .where(DeployTask.id == task_id,
                                         DeployTask.state == TaskState.RUNNING)
                                  .values(state=state, error=error, finished_at=utcnow(),
                                          version=DeployTask.version + 1,
                                          updated_at=utcnow()))) == 1
        kind = db.scalar(select(DeployTask.kind).where(DeployTask.id == task_id))
    if done:
        publish(runtime, TaskEvent(_event_kind(state, kind), task_id, reason=error))
    return done


def _event_kind(state: TaskState, kind: TaskKind | None) -> TaskEventKind:
    if state is TaskState.SUCCEEDED and kind is TaskKind.ROLLBACK:
        return TaskEventKind.ROLLED_BACK
    return TaskEventKind(state.value)


def _run_claimed(runtime: Runtime, locks: TargetLocks, target_id: int, task_id: int,
                 sink: LogSink) -> None:
    from shipyard.deploy.runner import Runner, load_job
    from shipyard.errors import ShipyardError

    cancelled = threading.Event()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, name=f"heartbeat-{task_id}",
                            args=(runtime, locks, target_id, task_id, cancelled, stop),
                            daemon=True)
    beat.start()
    error: str | None = None
    try:
        try:
            job = load_job(runtime, task_id, utcnow())
            outcome = Runner(runtime, job, sink, cancelled).run()
        except ShipyardError as exc:
            sink.system(f"failed: {exc.message}")
            state, error = TaskState.FAILED, exc.message
        except Exception as exc:
            log.exception("task %s crashed", task_id)
            sink.system(f"failed: internal error: {exc}")
            state, error = TaskState.FAILED, f"internal error: {exc}"
        else:
            if outcome.cancelled:
                state, error = TaskState.CANCELLED, "cancelled while running"
            elif outcome.succeeded:
                state = TaskState.SUCCEEDED
            else:
                state, error = TaskState.FAILED, outcome.error
        # Every line is written before the task is final: live consoles end on the final
        # state (SSE ``end``), and would lose a backlog still in the sink.
        sink.close()
        finish(runtime, task_id, state, error)
    finally:
        stop.set()
        beat.join(timeout=10)


def _heartbeat(runtime: Runtime, locks: TargetLocks, target_id: int, task_id: int,
               cancelled: threading.Event, stop: threading.Event) -> None:
    last_beat = 0.0
    while not stop.wait(0.5):
        try:
            with runtime.sessions() as db:
                requested = db.scalar(select(DeployTask.cancel_requested_at)
                                      .where(DeployTask.id == task_id))
            if requested is not None:
                cancelled.set()
            if time.monotonic() - last_beat >= HEARTBEAT:
                last_beat = time.monotonic()
                locks.renew(target_id, task_id)
                with runtime.sessions() as db, db.begin():
                    db.execute(update(DeployTask).where(DeployTask.id == task_id)
                               .values(heartbeat_at=utcnow()))
        except Exception:  # a database hiccup must not kill the heartbeat
            log.exception("heartbeat of task %s failed", task_id)
