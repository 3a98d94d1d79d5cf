"""Deploy tasks: submit, list, show, edit, approve, reject, start, cancel; and the audit
log."""

from __future__ import annotations

from fastapi import APIRouter, Query

from shipyard.api.deps import Call, guard
from shipyard.api.schemas import ApprovalOut, AuditOut, PageOut, TaskOut
from shipyard.models import DeployTask
from shipyard.services import audit, tasks
from shipyard.services.tasks import Comment, Reason, TaskSpec, TaskUpdate

router = APIRouter(prefix="/spaces/{space}")


def task_out(call: Call, task: DeployTask, *, with_approvals: bool = True) -> TaskOut:
    approvals = None
    if with_approvals:
        approvals = [ApprovalOut(user=name, decision=a.decision, comment=a.comment,
                                 at=a.created_at) for a, name in tasks.approvals(call.ctx, task)]
    return TaskOut.of(tasks.view(call.ctx, task), approvals)


@router.get("/tasks", response_model=PageOut[TaskOut], tags=["tasks"])
def list_tasks(space: str, call: guard("task.read"), project: str | None = None,
               environment: str | None = None, state: str | None = None,
               submitted_by: str | None = None, kind: str | None = None,
               cursor: int | None = None, limit: int = Query(50, ge=1, le=200)) -> PageOut:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = tasks.list_tasks(call.ctx, call.in_space, project=project, environment=environment,
                            state=state, submitted_by=submitted_by, kind=kind, cursor=cursor,
                            limit=limit)
    return PageOut(items=[TaskOut.of(v) for v in page.items], next_cursor=page.next_cursor)


@router.post("/tasks", response_model=TaskOut, status_code=201, tags=["tasks"])
def submit_task(space: str, body: TaskSpec, call: guard("task.submit")) -> TaskOut:
    """Submit a deploy; the ref is pinned to a commit now. With no approval required the
    task is ``approved`` at once; start it with ``POST .../start``."""
    return task_out(call, tasks.submit(call.ctx, call.in_space, body))


@router.get("/tasks/{task_id}", response_model=TaskOut, tags=["tasks"])
def get_task(space: str, task_id: int, call: guard("task.read")) -> TaskOut:
    return task_out(call, tasks.get_task(call.ctx, call.in_space, task_id))


@router.patch("/tasks/{task_id}", response_model=TaskOut, tags=["tasks"])
def edit_task(space: str, task_id: int, body: TaskUpdate, call: guard("task.edit")) -> TaskOut:
    """Edit your own task before it starts; approvals given so far are withdrawn."""
    return task_out(call, tasks.edit(call.ctx, call.in_space, task_id, body))


@router.post("/tasks/{task_id}/approve", response_model=TaskOut, tags=["tasks"])
def approve_task(space: str, task_id: int, body: Comment,
                 call: guard("task.approve")) -> TaskOut:
    return task_out(call, tasks.approve(call.ctx, call.in_space, task_id, body.comment))


@router.post("/tasks/{task_id}/reject", response_model=TaskOut, tags=["tasks"])
def reject_task(space: str, task_id: int, body: Reason,
                call: guard("task.approve")) -> TaskOut:
    return task_out(call, tasks.reject(call.ctx, call.in_space, task_id, body.reason))


@router.post("/tasks/{task_id}/start", response_model=TaskOut, tags=["tasks"])
def start_task(space: str, task_id: int, call: guard("task.start")) -> TaskOut:
    """Queue an approved task for deployment."""
    return task_out(call, tasks.start(call.ctx, call.in_space, task_id))


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut, tags=["tasks"])
def cancel_task(space: str, task_id: int, call: guard("task.cancel")) -> TaskOut:
    return task_out(call, tasks.cancel(call.ctx, call.in_space, task_id))


@router.get("/audit", response_model=PageOut[AuditOut], tags=["audit"])
def list_audit(space: str, call: guard("audit.read"), action: str | None = None,
               actor: str | None = None, object_type: str | None = None,
               cursor: int | None = None, limit: int = Query(50, ge=1, le=200)) -> PageOut:
    page = audit.list_events(call.ctx, call.in_space, action=action, actor=actor,
                             object_type=object_type, cursor=cursor, limit=limit)
    return PageOut(items=[AuditOut.of(e) for e in page.items], next_cursor=page.next_cursor)
