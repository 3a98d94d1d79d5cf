"""Deploy tasks (上线单): submit, edit, approve, reject, start, cancel.

Every state change is a compare-and-set on (state, version): two clicks, two approvers or
two API calls racing can never both win. States::

    pending_approval -> approved | rejected
    approved -> queued -> running -> succeeded | failed | cancelled | interrupted
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select, update

from shipyard.auth import rbac
from shipyard.db.engine import changed
from shipyard.errors import InvalidInput, PermissionDenied, StateConflict
from shipyard.models import (
    Approval,
    DeployTask,
    Environment,
    Project,
    Server,
    Space,
    Target,
    TaskKind,
    TaskState,
    User,
)
from shipyard.models.types import utcnow
from shipyard.services import audit, lookup, repos
from shipyard.services.context import Context
from shipyard.services.events import TaskEventKind, publish_after_commit
from shipyard.services.pagination import Page
from shipyard.services.targets import resolve_servers
from shipyard.services.types import Name, Title

FIELDS = ("title", "ref", "commit_sha", "server_ids", "state", "reject_reason")
EDITABLE = (TaskState.PENDING_APPROVAL, TaskState.APPROVED)
CANCELLABLE = (TaskState.PENDING_APPROVAL, TaskState.APPROVED, TaskState.QUEUED)


class TaskSpec(BaseModel):
    project: Name
    environment: Name
    title: Title
    ref: str | None = Field(default=None, description="branch, tag or commit; default: "
                            "the project's default branch")
    servers: list[Name] | None = Field(default=None, description="a subset of the "
                                       "target's servers; default: all")


class TaskUpdate(BaseModel):
    title: Title | None = None
    ref: str | None = None
    servers: list[Name] | None = None


class Reason(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason must not be blank")
        return value.strip()


class Comment(BaseModel):
    comment: str = Field(default="", max_length=2000)


@dataclass
class TaskView:
    """A task with the names an interface shows next to it (one query, no N+1)."""

    task: DeployTask
    project: str
    environment: str
    submitted_by: str
    servers: list[str] | None = None  # names of the chosen subset; None: all


def _view_query() -> Any:
    return (select(DeployTask, Project.name, Environment.name, User.username)
            .join(Project, Project.id == DeployTask.project_id)
            .join(Environment, Environment.id == DeployTask.environment_id)
            .join(User, User.id == DeployTask.submitted_by_id))


def view(ctx: Context, task: DeployTask) -> TaskView:
    row = ctx.db.execute(_view_query().where(DeployTask.id == task.id)).one()
    return _with_server_names(ctx, [TaskView(*row)])[0]


def _with_server_names(ctx: Context, views: list[TaskView]) -> list[TaskView]:
    """Fill in server names for a page of tasks with one query."""
    ids = {i for v in views for i in (v.task.server_ids or [])}
    names = dict(ctx.db.execute(select(Server.id, Server.name).where(Server.id.in_(ids)))
                 .tuples().all()) if ids else {}
    for v in views:
        if v.task.server_ids is not None:
            v.servers = [names.get(i, f"#{i}") for i in v.task.server_ids]
    return views


def submit(ctx: Context, space: Space, spec: TaskSpec) -> DeployTask:
    project = lookup.named(ctx, Project, space.id, spec.project)
    rbac.require(ctx.principal, "task.submit", space.id, project.id)
    target = lookup.target(ctx, project, spec.environment)
    ref = spec.ref or project.default_branch
    sha = repos.resolve(ctx, project, ref)
    server_ids = _chosen_servers(ctx, target, spec.servers)
    task = DeployTask(
        space_id=space.id, project_id=project.id, target_id=target.id,
        environment_id=target.environment_id, kind=TaskKind.DEPLOY, title=spec.title,
        ref=ref, commit_sha=sha, server_ids=server_ids,
        state=_initial_state(target), submitted_by_id=ctx.principal.user_id)
    ctx.db.add(task)
    ctx.db.flush()
    audit.record(ctx, "task.submit", "task", task.id, space_id=space.id,
                 after=audit.snapshot(task, FIELDS))
    _announce_submitted(ctx, task)
    return task


def _announce_submitted(ctx: Context, task: DeployTask) -> None:
    publish_after_commit(ctx, TaskEventKind.SUBMITTED if task.state is
                         TaskState.PENDING_APPROVAL else TaskEventKind.APPROVED, task.id)


def _initial_state(target: Target) -> TaskState:
    return TaskState.APPROVED if target.approvals_required == 0 else \
        TaskState.PENDING_APPROVAL


def _chosen_servers(ctx: Context, target: Target, names: list[str] | None) -> list[int] | None:
    servers = resolve_servers(ctx, target)
    if not servers:
        raise InvalidInput("the target has no servers", field="servers")
    if names is None:
        return None
    by_name = {s.name: s for s in servers}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise InvalidInput(f"not servers of this target: {', '.join(unknown)}",
                           field="servers")
    if not names:
        raise InvalidInput("choose at least one server, or omit servers for all",
                           field="servers")
    return sorted({by_name[n].id for n in names})


def list_tasks(ctx: Context, space: Space, *, project: str | None = None,
               environment: str | None = None, state: str | None = None,
               submitted_by: str | None = None, kind: str | None = None,
               cursor: int | None = None, limit: int = 50) -> Page[TaskView]:
    who = ctx.principal
    rbac.require(who, "task.read", space.id)
    if not 1 <= limit <= 200:
        raise InvalidInput("limit must be from 1 to 200", field="limit")
    query = _view_query().where(DeployTask.space_id == space.id)
    if not who.is_super and who.role_in(space.id) is None:
        # Only project memberships here: only those projects' tasks.
        query = query.where(DeployTask.project_id.in_(
            [pid for pid, (sid, _) in who.project_roles.items() if sid == space.id]))
    if project:
        query = query.where(Project.name == project)
    if environment:
        query = query.where(Environment.name == environment)
    if state:
        try:
            query = query.where(DeployTask.state == TaskState(state))
        except ValueError:
            raise InvalidInput(f"unknown state {state!r}; one of "
                               + ", ".join(s.value for s in TaskState), field="state") from None
    if kind:
        query = query.where(DeployTask.kind == kind)
    if submitted_by:
        query = query.where(User.username == submitted_by)
    if cursor is not None:
        query = query.where(DeployTask.id < cursor)
    rows = ctx.db.execute(query.order_by(DeployTask.id.desc()).limit(limit + 1)).all()
    views = _with_server_names(ctx, [TaskView(*row) for row in rows[:limit]])
    return Page(views, views[-1].task.id if len(rows) > limit else None)


def get_task(ctx: Context, space: Space, task_id: int) -> DeployTask:
    task = lookup.task(ctx, space.id, task_id)
    rbac.require(ctx.principal, "task.read", space.id, task.project_id)
    return task


def approvals(ctx: Context, task: DeployTask) -> list[tuple[Approval, str]]:
    rows = ctx.db.execute(select(Approval, User.username).join(User, User.id == Approval.user_id)
                          .where(Approval.task_id == task.id).order_by(Approval.id))
    return [(a, name) for a, name in rows]


def edit(ctx: Context, space: Space, task_id: int, changes: TaskUpdate) -> DeployTask:
    """Edit a task that has not started. Any approvals given so far are withdrawn."""
    task = lookup.task(ctx, space.id, task_id)
    _require_own_or_manager(ctx, task, "task.edit")
    if task.state not in EDITABLE:
        raise StateConflict(f"task {task.id} is {task.state.value}; only a task that has "
                            "not started can be edited")
    before = audit.snapshot(task, FIELDS)
    target = ctx.db.get_one(Target, task.target_id)
    values: dict[str, Any] = {}
    data = changes.model_dump(exclude_unset=True)
    if data.get("title"):
        values["title"] = data["title"]
    if data.get("ref"):
        project = ctx.db.get_one(Project, task.project_id)
        values["ref"] = data["ref"]
        values["commit_sha"] = repos.resolve(ctx, project, data["ref"])
    if "servers" in data:
        values["server_ids"] = _chosen_servers(ctx, target, data["servers"])
    values["state"] = _initial_state(target)
    _cas(ctx, task, EDITABLE, **values)
    for approval in ctx.db.scalars(select(Approval).where(Approval.task_id == task.id)):
        ctx.db.delete(approval)
    audit.record(ctx, "task.edit", "task", task.id, space_id=space.id, before=before,
                 after=audit.snapshot(task, FIELDS))
    return task


def approve(ctx: Context, space: Space, task_id: int, comment: str = "") -> DeployTask:
    task = lookup.task(ctx, space.id, task_id)
    who = ctx.principal
    rbac.require(who, "task.approve", space.id, task.project_id)
    target = ctx.db.get_one(Target, task.target_id)
    if task.submitted_by_id == who.user_id and not target.allow_self_approval:
        raise PermissionDenied("you cannot approve your own task; another MASTER must")
    if task.state is not TaskState.PENDING_APPROVAL:
        raise StateConflict(f"task {task.id} is {task.state.value}, not pending approval")
    if ctx.db.scalar(select(Approval.id).where(Approval.task_id == task.id,
                                               Approval.user_id == who.user_id)):
        raise StateConflict("you have already approved this task")
    ctx.db.add(Approval(task_id=task.id, user_id=who.user_id, decision="approved",
                        comment=comment, created_at=utcnow()))
    ctx.db.flush()
    count = ctx.db.scalar(select(func.count()).select_from(Approval)
                          .where(Approval.task_id == task.id,
                                 Approval.decision == "approved")) or 0
    if count >= target.approvals_required:
        _cas(ctx, task, (TaskState.PENDING_APPROVAL,), state=TaskState.APPROVED)
        publish_after_commit(ctx, TaskEventKind.APPROVED, task.id)
    else:
        _cas(ctx, task, (TaskState.PENDING_APPROVAL,))
    audit.record(ctx, "task.approve", "task", task.id, space_id=space.id,
                 after={"approvals": count, "required": target.approvals_required,
                        "state": task.state.value, "comment": comment})
    return task


def reject(ctx: Context, space: Space, task_id: int, reason: str) -> DeployTask:
    task = lookup.task(ctx, space.id, task_id)
    who = ctx.principal
    rbac.require(who, "task.approve", space.id, task.project_id)
    target = ctx.db.get_one(Target, task.target_id)
    if task.submitted_by_id == who.user_id and not target.allow_self_approval:
        raise PermissionDenied("you cannot reject your own task; cancel it instead")
    before = audit.snapshot(task, FIELDS)
    _cas(ctx, task, (TaskState.PENDING_APPROVAL,), state=TaskState.REJECTED,
         reject_reason=reason, finished_at=utcnow())
    ctx.db.add(Approval(task_id=task.id, user_id=who.user_id, decision="rejected",
                        comment=reason, created_at=utcnow()))
    audit.record(ctx, "task.reject", "task", task.id, space_id=space.id, before=before,
                 after=audit.snapshot(task, FIELDS))
    publish_after_commit(ctx, TaskEventKind.REJECTED, task.id, reason)
    return task


def start(ctx: Context, space: Space, task_id: int) -> DeployTask:
    """Queue an approved task and dispatch ``run_task`` once the change is committed."""
    task = lookup.task(ctx, space.id, task_id)
    rbac.require(ctx.principal, _start_action(task), space.id, task.project_id)
    _require_rollback_rule(ctx, task)
    _cas(ctx, task, (TaskState.APPROVED,), state=TaskState.QUEUED, queued_at=utcnow(),
         started_by_id=ctx.principal.user_id)
    audit.record(ctx, "task.start", "task", task.id, space_id=space.id,
                 after={"state": task.state.value})
    dispatcher = ctx.runtime.dispatcher
    if dispatcher is not None:
        zone = ctx.db.get_one(Target, task.target_id).zone or ""
        ctx.after_commit(lambda: dispatcher.dispatch_task(task.id, zone))
    return task


def cancel(ctx: Context, space: Space, task_id: int) -> DeployTask:
    """Cancel a task that has not started, or ask a running one to stop cleanly."""
    task = lookup.task(ctx, space.id, task_id)
    _require_own_or_manager(ctx, task, "task.cancel")
    before = audit.snapshot(task, FIELDS)
    if task.state is TaskState.RUNNING:
        _cas(ctx, task, (TaskState.RUNNING,), cancel_requested_at=utcnow())
    else:
        if task.state not in CANCELLABLE:
            raise StateConflict(f"task {task.id} is {task.state.value} and cannot be "
                                "cancelled")
        _cas(ctx, task, CANCELLABLE, state=TaskState.CANCELLED, finished_at=utcnow())
        publish_after_commit(ctx, TaskEventKind.CANCELLED, task.id)
    audit.record(ctx, "task.cancel", "task", task.id, space_id=space.id, before=before,
                 after=audit.snapshot(task, FIELDS))
    return task


def _start_action(task: DeployTask) -> str:
    return "task.rollback" if task.kind is TaskKind.ROLLBACK else "task.start"


def _require_rollback_rule(ctx: Context, task: DeployTask) -> None:
    if task.kind is not TaskKind.ROLLBACK:
        return
    target = ctx.db.get_one(Target, task.target_id)
    if not target.developers_can_rollback and not rbac.may_manage_others_tasks(
            ctx.principal, task.space_id, task.project_id):
        raise PermissionDenied("on this target only MASTER+ may roll back")


def _require_own_or_manager(ctx: Context, task: DeployTask, action: str) -> None:
    who = ctx.principal
    rbac.require(who, action, task.space_id, task.project_id)
    if task.submitted_by_id != who.user_id and not rbac.may_manage_others_tasks(
            who, task.space_id, task.project_id):
        raise PermissionDenied("only the submitter or a MASTER+ may do that")


def _cas(ctx: Context, task: DeployTask, from_states: Iterable[TaskState],
         **values: Any) -> None:
    """Compare-and-set: apply ``values`` only if the task is still in one of
    ``from_states`` at the version we read; else StateConflict."""
    states = list(from_states)
    result = ctx.db.execute(
        update(DeployTask)
        .where(DeployTask.id == task.id, DeployTask.state.in_(states),
               DeployTask.version == task.version)
        .values(version=task.version + 1, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False))
    if changed(result) != 1:
        ctx.db.refresh(task)
        raise StateConflict(f"task {task.id} changed meanwhile (now {task.state.value}); "
                            "reload and try again")
    ctx.db.refresh(task)


def follow_up(ctx: Context, space: Space, task_id: int, which: str) -> DeployTask:
    """A new task for the same commit and target: ``retry`` redeploys only the hosts that
    failed (or never finished), ``continue`` deploys to the target's servers the parent
    did not switch (a gray release's rest). The commit was approved for this target
    already, so the follow-up starts ``approved``; its build is reused from the cache."""
    from shipyard.services import runs

    parent = lookup.task(ctx, space.id, task_id)
    who = ctx.principal
    rbac.require(who, "task.submit", space.id, parent.project_id)
    if parent.state not in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED,
                            TaskState.INTERRUPTED):
        raise StateConflict(f"task {parent.id} is {parent.state.value}; wait until it ends")
    if which == "retry":
        if parent.state is TaskState.SUCCEEDED:
            raise StateConflict(f"task {parent.id} succeeded on every host; nothing to retry")
        ids = runs.failed_or_unfinished_hosts(ctx, parent.id)
        if not ids:
            ids = {s.id for s in target_servers(ctx, parent)}
        title = f"Retry of #{parent.id}: {parent.title}"
    elif which == "continue":
        if parent.kind is not TaskKind.DEPLOY:
            raise InvalidInput("only a deploy can be continued", field="task_id")
        done = runs.switched_hosts(ctx, parent.id)
        ids = {s.id for s in resolve_servers(ctx, ctx.db.get_one(Target, parent.target_id))}
        ids -= done
        if not ids:
            raise StateConflict("every server of the target already has this release")
        title = f"Continue #{parent.id} to the rest: {parent.title}"
    else:
        raise InvalidInput("which must be retry or continue", field="which")
    task = DeployTask(
        space_id=space.id, project_id=parent.project_id, target_id=parent.target_id,
        environment_id=parent.environment_id, kind=parent.kind, title=title[:200],
        ref=parent.ref, commit_sha=parent.commit_sha, server_ids=sorted(ids),
        rollback_to=parent.rollback_to, parent_task_id=parent.id,
        release=parent.release if parent.kind is TaskKind.DEPLOY else None,
        state=TaskState.APPROVED, submitted_by_id=who.user_id)
    ctx.db.add(task)
    ctx.db.flush()
    audit.record(ctx, f"task.{which}", "task", task.id, space_id=space.id,
                 after={**audit.snapshot(task, FIELDS), "parent": parent.id})
    publish_after_commit(ctx, TaskEventKind.APPROVED, task.id)
    return task


def submit_rollback(ctx: Context, space: Space, project_name: str, environment: str,
                    release: str, servers: list[str] | None = None,
                    title: str | None = None) -> DeployTask:
    """A rollback task: switch the target (or chosen servers) to a kept release and run
    the release hooks; no build, no transfer. Subject to the target's approval policy and
    its developers-may-roll-back rule."""
    from shipyard.deploy.release import is_release_id
    from shipyard.models import HostRelease

    project = lookup.named(ctx, Project, space.id, project_name)
    who = ctx.principal
    rbac.require(who, "task.rollback", space.id, project.id)
    target = lookup.target(ctx, project, environment)
    if not target.developers_can_rollback and not rbac.may_manage_others_tasks(
            who, space.id, project.id):
        raise PermissionDenied("on this target only MASTER+ may roll back")
    if not is_release_id(release):
        raise InvalidInput(f"{release!r} is not a release id like 20261122T101500-42",
                           field="release")
    known = ctx.db.scalar(select(HostRelease).where(HostRelease.target_id == target.id,
                                                    HostRelease.release == release,
                                                    HostRelease.pruned_at.is_(None))
                          .limit(1))
    if known is None:
        raise InvalidInput(f"release {release} is not kept on this target's servers; see "
                           "the releases list", field="release")
    task = DeployTask(
        space_id=space.id, project_id=project.id, target_id=target.id,
        environment_id=target.environment_id, kind=TaskKind.ROLLBACK,
        title=(title or f"Roll back {project.name} {environment} to {release}")[:200],
        ref=release, commit_sha=known.commit_sha,
        server_ids=_chosen_servers(ctx, target, servers), rollback_to=release,
        release=release,
        state=_initial_state(target), submitted_by_id=who.user_id)
    ctx.db.add(task)
    ctx.db.flush()
    audit.record(ctx, "task.rollback", "task", task.id, space_id=space.id,
                 after=audit.snapshot(task, (*FIELDS, "rollback_to")))
    _announce_submitted(ctx, task)
    return task


def target_servers(ctx: Context, task: DeployTask) -> list[Server]:
    """The servers a task deploys to: its chosen subset, or all of the target's."""
    target = ctx.db.get_one(Target, task.target_id)
    servers = resolve_servers(ctx, target)
    if task.server_ids is None:
        return servers
    chosen = set(task.server_ids)
    return [s for s in servers if s.id in chosen]


# -- what an interface may offer ---------------------------------------------------------
# The same rules as the actions above, asked in advance so that pages show only buttons
# that would work. The actions still check everything themselves.

ACTIONS = ("approve", "reject", "edit", "start", "cancel", "retry", "continue", "rollback")
_ENDED = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.INTERRUPTED)


@dataclass
class ApprovalStatus:
    """Where a task's approval stands, and whether the caller may approve or reject it."""

    given: int
    required: int
    approved_by_me: bool
    may_decide: bool


def approval_status(ctx: Context, tasks: list[DeployTask]) -> dict[int, ApprovalStatus]:
    """Per task (two queries for any number of tasks: fit for a list page)."""
    if not tasks:
        return {}
    who = ctx.principal
    ids = [t.id for t in tasks]
    policy = {target_id: (required, self_ok) for target_id, required, self_ok in ctx.db.execute(
        select(Target.id, Target.approvals_required, Target.allow_self_approval)
        .where(Target.id.in_({t.target_id for t in tasks})))}
    given: dict[int, int] = {}
    mine: set[int] = set()
    for task_id, user_id in ctx.db.execute(
            select(Approval.task_id, Approval.user_id)
            .where(Approval.task_id.in_(ids), Approval.decision == "approved")):
        given[task_id] = given.get(task_id, 0) + 1
        if user_id == who.user_id:
            mine.add(task_id)
    out: dict[int, ApprovalStatus] = {}
    for task in tasks:
        may = (task.state is TaskState.PENDING_APPROVAL and task.id not in mine
               and rbac.allowed(who, "task.approve", task.space_id, task.project_id)
               and (task.submitted_by_id != who.user_id or policy[task.target_id][1]))
        out[task.id] = ApprovalStatus(given.get(task.id, 0), policy[task.target_id][0],
                                      task.id in mine, may)
    return out


def may_roll_back(ctx: Context, target: Target) -> bool:
    """Whether the caller may submit (and start) a rollback of ``target``."""
    who = ctx.principal
    return rbac.allowed(who, "task.rollback", target.space_id, target.project_id) and (
        target.developers_can_rollback
        or rbac.may_manage_others_tasks(who, target.space_id, target.project_id))


def available_actions(ctx: Context, task: DeployTask,
                      status: ApprovalStatus | None = None) -> frozenset[str]:
    """Which of ``ACTIONS`` the caller may take on ``task`` in its current state."""
    from shipyard.services import runs

    who = ctx.principal
    space_id, project_id = task.space_id, task.project_id
    target = ctx.db.get_one(Target, task.target_id)
    own_or_manager = task.submitted_by_id == who.user_id or rbac.may_manage_others_tasks(
        who, space_id, project_id)
    status = status or approval_status(ctx, [task])[task.id]
    offered: set[str] = set()
    if status.may_decide:
        offered |= {"approve", "reject"}
    if task.state in EDITABLE and own_or_manager and rbac.allowed(
            who, "task.edit", space_id, project_id):
        offered.add("edit")
    if task.state is TaskState.APPROVED and (
            may_roll_back(ctx, target) if task.kind is TaskKind.ROLLBACK
            else rbac.allowed(who, "task.start", space_id, project_id)):
        offered.add("start")
    if (task.state in CANCELLABLE or (task.state is TaskState.RUNNING
                                      and task.cancel_requested_at is None)) \
            and own_or_manager and rbac.allowed(who, "task.cancel", space_id, project_id):
        offered.add("cancel")
    if task.state in _ENDED and rbac.allowed(who, "task.submit", space_id, project_id):
        if task.state is not TaskState.SUCCEEDED:
            offered.add("retry")
        if task.kind is TaskKind.DEPLOY:
            rest = {s.id for s in resolve_servers(ctx, target)} - runs.switched_hosts(
                ctx, task.id)
            if rest and task.server_ids is not None:
                offered.add("continue")
    if may_roll_back(ctx, target):
        offered.add("rollback")
    return frozenset(offered)
