"""Watching and steering deploys: the host x stage matrix, log lines, a live event stream
(Server-Sent Events with resume), follow-up tasks, releases, rollback and checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from shipyard.api.deps import guard, runtime_of
from shipyard.api.schemas import TaskOut
from shipyard.api.tasks import task_out
from shipyard.models import FINAL_STATES, DeployTask, HostStep, LogLine, TaskState
from shipyard.services import checks, releases, runs, tasks
from shipyard.services.context import Runtime
from shipyard.services.types import Name

router = APIRouter(prefix="/spaces/{space}")
POLL = 0.25
KEEPALIVE = 15.0


class StepOut(BaseModel):
    host: str
    stage: str
    status: str
    exit_code: int | None
    duration: float | None
    output_tail: str
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, s: HostStep) -> StepOut:
        return cls(host=s.host, stage=s.stage, status=s.status, exit_code=s.exit_code,
                   duration=s.duration, output_tail=s.output_tail, started_at=s.started_at,
                   finished_at=s.finished_at)


class LineOut(BaseModel):
    seq: int
    host: str
    stage: str
    stream: str
    line: str
    at: datetime

    @classmethod
    def of(cls, line: LogLine) -> LineOut:
        return cls(seq=line.seq, host=line.host, stage=line.stage, stream=line.stream,
                   line=line.line, at=line.at)


class RollbackSpec(BaseModel):
    release: str = Field(description="a release id kept on the servers")
    servers: list[Name] | None = None
    title: str | None = Field(default=None, max_length=200)


class KeptReleaseOut(BaseModel):
    id: str
    hosts: list[str]
    live_on: list[str]
    commit: str | None
    task_id: int | None
    deployed_by: str | None
    created_at: datetime | None


class ReleasesOut(BaseModel):
    releases: list[KeptReleaseOut]
    live: dict[str, str | None]
    errors: dict[str, str]
    hosts_disagree: bool


class CheckOut(BaseModel):
    name: str
    ok: bool
    detail: str


class HostCheckOut(BaseModel):
    host: str
    ok: bool
    checks: list[CheckOut]


class CheckReportOut(BaseModel):
    ok: bool
    git: CheckOut
    hosts: list[HostCheckOut]


@router.get("/tasks/{task_id}/steps", response_model=list[StepOut], tags=["runs"])
def get_steps(space: str, task_id: int, call: guard("task.read")) -> list[StepOut]:
    """Per host and per stage: status, exit code, duration and the output's last lines."""
    return [StepOut.of(s) for s in runs.steps(call.ctx, call.in_space, task_id)]


@router.get("/tasks/{task_id}/logs", response_model=list[LineOut], tags=["runs"])
def get_logs(space: str, task_id: int, call: guard("task.read"), after: int = 0,
             limit: int = Query(1000, ge=1, le=5000), host: str | None = None) -> list[LineOut]:
    """Output lines with ``seq > after``, in order."""
    return [LineOut.of(x) for x in runs.lines(call.ctx, call.in_space, task_id, after=after,
                                              limit=limit, host=host)]


@router.get("/tasks/{task_id}/events", tags=["runs"],
            responses={200: {"content": {"text/event-stream": {}}}})
def stream_events(space: str, task_id: int, request: Request, call: guard("task.read"),
                  after: int = 0,
                  last_event_id: str | None = Header(default=None)) -> StreamingResponse:
    """Server-Sent Events: ``line`` events (id = sequence number), ``task`` events when the
    state or a step changes, and ``end`` once the task is final and every line was sent.
    Reconnect with ``Last-Event-ID`` (browsers do it by themselves) to resume."""
    tasks.get_task(call.ctx, call.in_space, task_id)  # permission and existence, now
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
    space_id = call.in_space.id
    runtime = runtime_of(request)
    return StreamingResponse(_events(runtime, request, space_id, task_id, start),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(runtime: Runtime, request: Request, space_id: int, task_id: int,
                  after: int) -> AsyncIterator[str]:
    last_snapshot = None
    idle = 0.0
    while True:
        lines, snapshot, final = await run_in_threadpool(_poll, runtime, space_id, task_id,
                                                         after)
        for line in lines:
            after = line["seq"]
            yield f"id: {line['seq']}\nevent: line\ndata: {json.dumps(line)}\n\n"
        if snapshot != last_snapshot:
            last_snapshot = snapshot
            yield f"event: task\ndata: {json.dumps(snapshot, default=str)}\n\n"
        if final and not lines:
            yield "event: end\ndata: {}\n\n"
            return
        if lines:
            idle = 0.0
            continue  # there may be more right away
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL)
        idle += POLL
        if idle >= KEEPALIVE:
            idle = 0.0
            yield ": keep-alive\n\n"


def _poll(runtime: Runtime, space_id: int, task_id: int,
          after: int) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    from sqlalchemy import select

    with runtime.sessions() as db:
        task = db.get(DeployTask, task_id)
        assert task is not None and task.space_id == space_id
        rows = db.scalars(select(LogLine).where(LogLine.task_id == task_id, LogLine.seq > after)
                          .order_by(LogLine.seq).limit(2000)).all()
        steps = db.scalars(select(HostStep).where(HostStep.task_id == task_id)
                           .order_by(HostStep.id)).all()
        lines = [LineOut.of(r).model_dump(mode="json") for r in rows]
        snapshot = {"id": task.id, "state": task.state.value, "error": task.error,
                    "release": task.release,
                    "steps": [[s.host, s.stage, s.status, s.exit_code,
                               round(s.duration, 3) if s.duration is not None else None]
                              for s in steps]}
        return lines, snapshot, task.state in FINAL_STATES or \
            task.state is TaskState.INTERRUPTED


@router.post("/tasks/{task_id}/retry", response_model=TaskOut, status_code=201,
             tags=["runs"])
def retry_failed(space: str, task_id: int, call: guard("task.submit")) -> TaskOut:
    """A new task redeploying the same commit to only the hosts that failed (or never
    finished: an interrupted task)."""
    return task_out(call, tasks.follow_up(call.ctx, call.in_space, task_id, "retry"))


@router.post("/tasks/{task_id}/continue", response_model=TaskOut, status_code=201,
             tags=["runs"])
def continue_rest(space: str, task_id: int, call: guard("task.submit")) -> TaskOut:
    """After a gray release to a subset: the same build to the target's other servers."""
    return task_out(call, tasks.follow_up(call.ctx, call.in_space, task_id, "continue"))


@router.get("/projects/{project}/targets/{environment}/releases", response_model=ReleasesOut,
            tags=["releases"])
def list_releases(space: str, project: str, environment: str,
                  call: guard("target.read")) -> ReleasesOut:
    """Releases kept on each server, which one is live where (and whether hosts disagree),
    with commit, task and who from Shipyard's records."""
    report = releases.list_releases(call.ctx, call.in_project, environment)
    return ReleasesOut(releases=[KeptReleaseOut(**asdict(r)) for r in report.releases],
                       live=report.live, errors=report.errors,
                       hosts_disagree=report.hosts_disagree)


@router.post("/projects/{project}/targets/{environment}/rollback", response_model=TaskOut,
             status_code=201, tags=["releases"])
def rollback(space: str, project: str, environment: str, body: RollbackSpec,
             call: guard("task.rollback")) -> TaskOut:
    """Submit a rollback task to a kept release (no rebuild); start it like a deploy."""
    task = tasks.submit_rollback(call.ctx, call.in_space, project, environment, body.release,
                                 body.servers, body.title)
    return task_out(call, task)


@router.post("/projects/{project}/targets/{environment}/check", response_model=CheckReportOut,
             tags=["releases"])
def check_target(space: str, project: str, environment: str,
                 call: guard("target.check")) -> CheckReportOut:
    """SSH reach and host key, releases dir writable, webroot not a real directory, free
    disk, and git access from the build host; per host."""
    report = checks.check_target(call.ctx, call.in_project, environment)
    return CheckReportOut.model_validate(asdict(report))
