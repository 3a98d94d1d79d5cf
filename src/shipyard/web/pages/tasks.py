"""Deploy tasks (上线单) in the browser: the list, submitting and editing, the approval
queue, and the task page that watches a deploy live (matrix, progress, console over SSE).

Every action goes through ``services.tasks``, which checks permissions and states; the
page only asks ``tasks.available_actions`` which buttons to show."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import FormData

from shipyard.auth import rbac
from shipyard.deploy.runner import DEPLOY_STAGES, ROLLBACK_STAGES
from shipyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied, ShipyardError
from shipyard.models import DeployTask, HostStep, Project, Target, TaskKind, TaskState
from shipyard.models.runs import Stage, StepStatus
from shipyard.services import environments, projects, runs, targets, tasks
from shipyard.services.tasks import Reason, TaskSpec, TaskUpdate, TaskView
from shipyard.web import forms, i18n
from shipyard.web.render import zone
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
STEP_STATUSES = [s.value for s in StepStatus]
FINISHED_STEPS = ("succeeded", "failed", "skipped", "cancelled")
# Errors a form shows next to its fields; PermissionDenied and the like become error pages.
FORM_ERRORS = (ValidationError, InvalidInput, NotFound)


# -- the list ------------------------------------------------------------------------------

@router.get("/s/{space}/tasks")
def task_list(space: str, page: Page, project: str = "", environment: str = "",
              state: str = "", submitted_by: str = "", kind: str = "",
              cursor: int | None = None) -> Response:
    filters = {"project": project, "environment": environment, "state": state,
               "submitted_by": submitted_by, "kind": kind}
    result = tasks.list_tasks(page.ctx, page.in_space, cursor=cursor, limit=PAGE_SIZE,
                              **{k: v or None for k, v in filters.items()})
    return page.render(
        "pages/tasks.html", views=result.items, filters=filters,
        next_url=page.next_url(result.next_cursor),
        project_options=[p.name for p in projects.list_projects(page.ctx, page.in_space)],
        environment_options=[e.name for e in
                             environments.list_environments(page.ctx, page.in_space)],
        state_options=[s.value for s in TaskState], kind_options=[k.value for k in TaskKind])


# -- submitting ----------------------------------------------------------------------------

@dataclass
class Choice:
    """What the submit form offers: projects, the chosen project's targets, and the
    chosen target's servers."""

    projects: list[Project]
    project: Project | None = None
    targets: list[Target] = field(default_factory=list)
    target: Target | None = None
    servers: list[Any] = field(default_factory=list)


def _choice(page: PageCall, project: str, environment: str) -> Choice:
    choice = Choice([p for p in projects.list_projects(page.ctx, page.in_space)
                     if page.can("task.submit", p.id)])
    choice.project = next((p for p in choice.projects if p.name == project),
                          choice.projects[0] if choice.projects else None)
    if choice.project is None:
        return choice
    choice.targets = targets.list_targets(page.ctx, choice.project)
    choice.target = next((t for t in choice.targets if t.environment.name == environment),
                         choice.targets[0] if choice.targets else None)
    if choice.target is not None:
        choice.servers = targets.resolve_servers(page.ctx, choice.target)
    return choice


def _submit_values(form: FormData) -> dict[str, Any]:
    return {"project": forms.text(form, "project"),
            "environment": forms.text(form, "environment"),
            "title": forms.text(form, "title"), "ref": forms.text(form, "ref"),
            "servers_mode": forms.text(form, "servers_mode") or "all",
            "servers": forms.many(form, "servers")}


def _chosen_servers(values: dict[str, Any]) -> list[str] | None:
    return values["servers"] if values["servers_mode"] == "some" else None


def _new_form(page: PageCall, values: dict[str, Any], errors: dict[str, str],
              status: int = 200) -> Response:
    choice = _choice(page, values.get("project", ""), values.get("environment", ""))
    if choice.project is not None:
        values = {**values, "project": choice.project.name}
        if not values.get("ref"):
            values["ref"] = choice.project.default_branch
    if choice.target is not None:
        values = {**values, "environment": choice.target.environment.name}
    return page.render("pages/task_new.html", status=status, choice=choice, values=values,
                       errors=errors)


@router.get("/s/{space}/tasks/new")
def task_new(space: str, page: Page, project: str = "", environment: str = "",
             ref: str = "", title: str = "") -> Response:
    rbac.require(page.ctx.principal, "task.submit", page.in_space.id)
    return _new_form(page, {"project": project, "environment": environment, "ref": ref,
                            "title": title, "servers_mode": "all", "servers": []}, {})


@router.post("/s/{space}/tasks/new")
def task_submit(space: str, page: Page, form: Form) -> Response:
    values = _submit_values(form)
    try:
        spec = forms.parse(TaskSpec, {"project": values["project"] or "-",
                                      "environment": values["environment"] or "-",
                                      "title": values["title"], "ref": values["ref"] or None,
                                      "servers": _chosen_servers(values)})
        with page.ctx.db.begin_nested():
            task = tasks.submit(page.ctx, page.in_space, spec)
    except FORM_ERRORS as exc:
        return _new_form(page, values, forms.FormErrors.of(exc), status=422)
    return page.redirect(f"/s/{space}/tasks/{task.id}", flash="Deploy submitted.")


# -- editing -------------------------------------------------------------------------------

def _edit_form(page: PageCall, view: TaskView, values: dict[str, Any],
               errors: dict[str, str], status: int = 200) -> Response:
    task = view.task
    return page.render("pages/task_edit.html", status=status, view=view, values=values,
                       errors=errors, servers=targets.resolve_servers(
                           page.ctx, page.ctx.db.get_one(Target, task.target_id)),
                       project=page.ctx.db.get_one(Project, task.project_id))


@router.get("/s/{space}/tasks/{task_id}/edit")
def task_edit(space: str, task_id: int, page: Page) -> Response:
    task = tasks.get_task(page.ctx, page.in_space, task_id)
    if "edit" not in tasks.available_actions(page.ctx, task):
        raise PermissionDenied("only the submitter or a MASTER+ may edit a task, and only "
                               "before it starts")
    chosen = [s.name for s in tasks.target_servers(page.ctx, task)]
    values = {"title": task.title, "ref": task.ref,
              "servers_mode": "all" if task.server_ids is None else "some",
              "servers": chosen if task.server_ids is not None else []}
    return _edit_form(page, tasks.view(page.ctx, task), values, {})


@router.post("/s/{space}/tasks/{task_id}/edit")
def task_update(space: str, task_id: int, page: Page, form: Form) -> Response:
    task = tasks.get_task(page.ctx, page.in_space, task_id)
    values = _submit_values(form)
    try:
        changes = forms.parse(TaskUpdate, {"title": values["title"],
                                           "ref": values["ref"] or None,
                                           "servers": _chosen_servers(values)})
        with page.ctx.db.begin_nested():
            tasks.edit(page.ctx, page.in_space, task_id, changes)
    except FORM_ERRORS as exc:
        page.ctx.db.refresh(task)
        return _edit_form(page, tasks.view(page.ctx, task), values,
                          forms.FormErrors.of(exc), status=422)
    return page.redirect(f"/s/{space}/tasks/{task_id}", flash="Task saved.")


# -- one task, live ------------------------------------------------------------------------

@dataclass
class Cell:
    host: str
    stage: str
    status: str  # a step status, or "" where the stage does not apply to the row
    duration: float | None = None


@dataclass
class Matrix:
    """Hosts x stages, as the runner plans them: a build row (host "") for a deploy,
    then one row per host."""

    stages: list[str]
    rows: list[tuple[str, list[Cell]]]

    @property
    def cells(self) -> Iterator[Cell]:
        return (c for _, row in self.rows for c in row if c.status)

    @property
    def total(self) -> int:
        return sum(1 for _ in self.cells)

    @property
    def finished(self) -> int:
        return sum(1 for c in self.cells if c.status in FINISHED_STEPS)


def matrix_of(task: DeployTask, hosts: list[str], steps: list[HostStep]) -> Matrix:
    """The matrix for ``task`` on ``hosts``, filled in with the steps recorded so far."""
    host_stages = [s.value for s in (ROLLBACK_STAGES if task.kind is TaskKind.ROLLBACK
                                     else DEPLOY_STAGES)]
    build = task.kind is TaskKind.DEPLOY
    stages = ([Stage.BUILD.value] if build else []) + host_stages
    recorded = {(s.host, s.stage): s for s in steps}
    names = list(hosts) + [s.host for s in steps if s.host and s.host not in hosts]
    names = list(dict.fromkeys(names))

    def row(host: str, applies: list[str]) -> list[Cell]:
        cells = []
        for stage in stages:
            step = recorded.get((host, stage))
            if stage not in applies:
                cells.append(Cell(host, stage, ""))
            else:
                cells.append(Cell(host, stage, step.status if step else "pending",
                                  step.duration if step else None))
        return cells

    rows = [("", row("", [Stage.BUILD.value]))] if build else []
    rows += [(name, row(name, host_stages)) for name in names]
    return Matrix(stages, rows)


@router.get("/s/{space}/tasks/{task_id}")
def task_page(space: str, task_id: int, page: Page) -> Response:
    task = tasks.get_task(page.ctx, page.in_space, task_id)
    return _task_page(page, task, {}, {})


def _task_page(page: PageCall, task: DeployTask, values: dict[str, Any],
               errors: dict[str, str], status: int = 200) -> Response:
    view = tasks.view(page.ctx, task)
    approval = tasks.approval_status(page.ctx, [task])[task.id]
    servers = tasks.target_servers(page.ctx, task)
    steps = runs.steps(page.ctx, page.in_space, task.id)
    return page.render(
        "pages/task.html", status=status, view=view, task=task, approval=approval,
        approvals=tasks.approvals(page.ctx, task),
        offered=tasks.available_actions(page.ctx, task, approval), servers=servers,
        matrix=matrix_of(task, [s.name for s in servers], steps),
        live=task.state is not TaskState.PENDING_APPROVAL
        and task.state is not TaskState.REJECTED,
        labels=_labels(page.lang), values=values, errors=errors)


def _labels(lang: str) -> dict[str, str]:
    """Step statuses and task states in the page's language, for the live script."""
    gettext = i18n.translations(lang).gettext
    words = [*STEP_STATUSES, *(s.value for s in TaskState), "build host", "disconnected"]
    return {w: gettext(w.replace("_", " ")) for w in words}


@router.get("/s/{space}/tasks/{task_id}/log")
def task_log(space: str, task_id: int, page: Page, host: str | None = None) -> Response:
    """The whole output as plain text (for reading without JavaScript, or saving)."""
    tasks.get_task(page.ctx, page.in_space, task_id)
    tz = zone(page.tz)
    chunks: list[str] = []
    after = 0
    while True:
        batch = runs.lines(page.ctx, page.in_space, task_id, after=after,
                           limit=runs.MAX_LINES, host=host)
        if not batch:
            break
        chunks.append("".join(
            f"{line.at.astimezone(tz):%H:%M:%S} {line.host or 'build'} {line.stage} "
            f"{'! ' if line.stream == 'stderr' else ''}{line.line}\n" for line in batch))
        after = batch[-1].seq
    return StreamingResponse(iter(chunks), media_type="text/plain; charset=utf-8",
                             headers={"X-Content-Type-Options": "nosniff"})


# -- actions -------------------------------------------------------------------------------

def _back(page: PageCall, form: FormData, task_id: int) -> str:
    """Where to go after an action: the approval queue if it came from there."""
    if forms.text(form, "back") == "approvals":
        return f"/s/{page.in_space.name}/approvals"
    return f"/s/{page.in_space.name}/tasks/{task_id}"


def _refused(page: PageCall, form: FormData, task_id: int, exc: ShipyardError,
             values: dict[str, Any] | None = None) -> Response:
    """A lost race or a missing reason: show the page again with why, nothing changed."""
    errors = forms.FormErrors.of(exc)
    if forms.text(form, "back") == "approvals":
        return _approvals_page(page, None, {task_id: next(iter(errors.values()))},
                               {task_id: values or {}}, status=exc.status)
    task = tasks.get_task(page.ctx, page.in_space, task_id)
    return _task_page(page, task, values or {}, errors, status=exc.status)


@router.post("/s/{space}/tasks/{task_id}/approve")
def task_approve(space: str, task_id: int, page: Page, form: Form) -> Response:
    comment = forms.text(form, "comment")[:2000]
    try:
        with page.ctx.db.begin_nested():
            task = tasks.approve(page.ctx, page.in_space, task_id, comment)
    except Conflict as exc:
        return _refused(page, form, task_id, exc)
    flash = "Approved." if task.state is TaskState.APPROVED else "Approval recorded."
    return page.redirect(_back(page, form, task_id), flash=flash)


@router.post("/s/{space}/tasks/{task_id}/reject")
def task_reject(space: str, task_id: int, page: Page, form: Form) -> Response:
    values = {"reason": forms.text(form, "reason")}
    try:
        reason = forms.parse(Reason, values).reason
        with page.ctx.db.begin_nested():
            tasks.reject(page.ctx, page.in_space, task_id, reason)
    except ValidationError as exc:
        error = InvalidInput(forms.FormErrors.of(exc).get("reason", "a reason is required"),
                             field="reason")
        return _refused(page, form, task_id, error, values)
    except Conflict as exc:
        return _refused(page, form, task_id, exc, values)
    return page.redirect(_back(page, form, task_id), flash="Rejected.")


@router.post("/s/{space}/tasks/{task_id}/start")
def task_start(space: str, task_id: int, page: Page, form: Form) -> Response:
    try:
        with page.ctx.db.begin_nested():
            tasks.start(page.ctx, page.in_space, task_id)
    except Conflict as exc:
        return _refused(page, form, task_id, exc)
    return page.redirect(f"/s/{space}/tasks/{task_id}")


@router.post("/s/{space}/tasks/{task_id}/cancel")
def task_cancel(space: str, task_id: int, page: Page, form: Form) -> Response:
    try:
        with page.ctx.db.begin_nested():
            task = tasks.cancel(page.ctx, page.in_space, task_id)
    except Conflict as exc:
        return _refused(page, form, task_id, exc)
    flash = "Cancelled." if task.state is TaskState.CANCELLED else \
        "Cancel requested; the deploy stops after the current step."
    return page.redirect(f"/s/{space}/tasks/{task_id}", flash=flash)


@router.post("/s/{space}/tasks/{task_id}/retry")
def task_retry(space: str, task_id: int, page: Page, form: Form) -> Response:
    """Redeploy the same commit to the hosts that failed or never finished."""
    return _follow_up(page, form, task_id, "retry")


@router.post("/s/{space}/tasks/{task_id}/continue")
def task_continue(space: str, task_id: int, page: Page, form: Form) -> Response:
    """After a gray release to a subset: the same build to the target's other servers."""
    return _follow_up(page, form, task_id, "continue")


def _follow_up(page: PageCall, form: FormData, task_id: int, which: str) -> Response:
    """A new task for the same commit, started at once when the caller may start it."""
    try:
        with page.ctx.db.begin_nested():
            task = tasks.follow_up(page.ctx, page.in_space, task_id, which)
            if "start" in tasks.available_actions(page.ctx, task):
                tasks.start(page.ctx, page.in_space, task.id)
    except (Conflict, InvalidInput) as exc:
        return _refused(page, form, task_id, exc)
    return page.redirect(f"/s/{page.in_space.name}/tasks/{task.id}")


# -- the approval queue --------------------------------------------------------------------

def _approvals_page(page: PageCall, cursor: int | None, errors: dict[int, str],
                    values: dict[int, dict[str, Any]], status: int = 200) -> Response:
    result = tasks.list_tasks(page.ctx, page.in_space, state=TaskState.PENDING_APPROVAL.value,
                              cursor=cursor, limit=PAGE_SIZE)
    status_of = tasks.approval_status(page.ctx, [v.task for v in result.items])
    return page.render("pages/approvals.html", status=status, views=result.items,
                       approval=status_of, errors=errors, values=values,
                       next_url=page.next_url(result.next_cursor))


@router.get("/s/{space}/approvals")
def approval_queue(space: str, page: Page, cursor: int | None = None) -> Response:
    return _approvals_page(page, cursor, {}, {})
