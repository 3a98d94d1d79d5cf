"""Projects and their targets: list, the project page (targets, project roles), create and
edit forms, delete, and "check target" (per-host results and git access)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError

from shipyard.auth import rbac
from shipyard.errors import Conflict, InvalidInput
from shipyard.models import Project, Role, Target
from shipyard.services import checks, credentials, environments, projects, servers, spaces, targets
from shipyard.services.projects import ProjectSpec
from shipyard.services.targets import TargetSpec
from shipyard.web import forms
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)

# Errors a form shows next to its fields; anything else (403, 404) is an error page.
FORM_ERRORS = (ValidationError, InvalidInput, Conflict)

# Input models nest these; their fields appear flat in the forms.
_NESTED = {"hooks", "strategy", "approval"}
ROLES = [r.label for r in sorted(Role, reverse=True)]


def field_errors(exc: Exception) -> forms.FormErrors:
    """Like ``FormErrors.of``, with a nested model's field named as in the flat form."""
    if not isinstance(exc, ValidationError):
        return forms.FormErrors.of(exc)
    errors = forms.FormErrors()
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        key = loc[1] if len(loc) > 1 and loc[0] in _NESTED else (loc[0] if loc else "")
        errors.setdefault(key, str(err.get("msg", "invalid")).removeprefix("Value error, "))
    return errors


def _one_per_line(raw: str) -> list[str]:
    return [line.strip() for line in raw.splitlines() if line.strip()]


def _variables(raw: str) -> dict[str, str]:
    """``KEY=value`` lines; a line without ``=`` is an error, not silently dropped."""
    out: dict[str, str] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidInput(f"line {number} is not KEY=value", field="variables")
        out[key.strip()] = value.strip()
    return out


# -- projects --------------------------------------------------------------------------------

@router.get("/s/{space}/projects")
def project_list(space: str, page: Page) -> Response:
    rows = [(p, targets.list_targets(page.ctx, p))
            for p in projects.list_projects(page.ctx, page.in_space)]
    return page.render("pages/projects.html", rows=rows)


def _project_values(form: Any) -> dict[str, Any]:
    names = ("name", "repo", "default_branch", "credential", "description", "prev_deploy",
             "post_deploy", "excludes", "includes", "variables")
    return {name: forms.text(form, name) for name in names}


def _project_spec(values: dict[str, Any]) -> dict[str, Any]:
    return {"name": values["name"], "repo": values["repo"],
            "default_branch": values["default_branch"], "description": values["description"],
            "credential": values["credential"] or None,
            "hooks": {"prev_deploy": values["prev_deploy"] or None,
                      "post_deploy": values["post_deploy"] or None},
            "excludes": _one_per_line(values["excludes"]),
            "includes": _one_per_line(values["includes"]),
            "variables": _variables(values["variables"])}


def _project_form(page: PageCall, *, project: Project | None, values: dict[str, Any],
                  errors: dict[str, str], status: int = 200) -> Response:
    options = [(c.name, f"{c.name} ({c.kind})")
               for c in credentials.list_credentials(page.ctx, page.in_space)]
    return page.render("pages/project_form.html", status=status, project=project,
                       values=values, errors=errors, credential_options=options)


@router.get("/s/{space}/projects/new")
def project_new(space: str, page: Page) -> Response:
    rbac.require(page.ctx.principal, "project.create", page.in_space.id)
    return _project_form(page, project=None, values={"excludes": ".git"}, errors={})


@router.post("/s/{space}/projects/new")
def project_create(space: str, page: Page, form: Form) -> Response:
    values = _project_values(form)
    try:
        with page.ctx.db.begin_nested():
            project = projects.create_project(page.ctx, page.in_space, forms.parse(
                ProjectSpec, _project_spec(values)))
    except FORM_ERRORS as exc:
        return _project_form(page, project=None, values=values, errors=field_errors(exc),
                             status=422)
    return page.redirect(f"/s/{space}/projects/{project.name}",
                         flash=f"Project {project.name} created.")


def render_project(page: PageCall, project: Project, *, status: int = 200,
                   member_values: dict[str, str] | None = None,
                   member_errors: dict[str, str] | None = None) -> Response:
    """The project page: settings, targets with their actions, project-level roles."""
    project = projects.get_project(page.ctx, page.in_space, project.name)
    candidates = [u.username for _, u in spaces.list_members(page.ctx, page.in_space)]
    return page.render("pages/project.html", status=status, project=project,
                       targets=targets.list_targets(page.ctx, project),
                       members=spaces.list_project_members(page.ctx, project),
                       candidates=candidates, roles=ROLES,
                       member_values=member_values or {"role": "developer"},
                       member_errors=member_errors or {})


@router.get("/s/{space}/projects/{project}")
def project_show(space: str, project: str, page: Page) -> Response:
    assert page.project is not None
    return render_project(page, page.project)


@router.get("/s/{space}/projects/{project}/edit")
def project_edit(space: str, project: str, page: Page) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    rbac.require(page.ctx.principal, "project.manage", page.in_space.id, found.id)
    spec = projects.spec_of(found)
    values = {"name": spec.name, "repo": spec.repo, "default_branch": spec.default_branch,
              "description": spec.description, "credential": spec.credential or "",
              "prev_deploy": spec.hooks.prev_deploy or "",
              "post_deploy": spec.hooks.post_deploy or "",
              "excludes": "\n".join(spec.excludes), "includes": "\n".join(spec.includes),
              "variables": "\n".join(f"{k}={v}" for k, v in spec.variables.items())}
    return _project_form(page, project=found, values=values, errors={})


@router.post("/s/{space}/projects/{project}/edit")
def project_update(space: str, project: str, page: Page, form: Form) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    values = _project_values(form)
    try:
        # Savepoint: a failed update leaves nothing half-written in this request.
        with page.ctx.db.begin_nested():
            found = projects.update_project(page.ctx, page.in_space, project,
                                            _project_spec(values))
    except FORM_ERRORS as exc:
        return _project_form(page, project=found, values=values, errors=field_errors(exc),
                             status=422)
    return page.redirect(f"/s/{space}/projects/{found.name}",
                         flash=f"Project {found.name} saved.")


@router.post("/s/{space}/projects/{project}/delete")
def project_delete(space: str, project: str, page: Page) -> Response:
    projects.delete_project(page.ctx, page.in_space, project)
    return page.redirect(f"/s/{space}/projects", flash=f"Project {project} deleted.")


# -- targets ---------------------------------------------------------------------------------

_TARGET_TEXT = ("environment", "labels", "webroot", "releases", "keep", "prev_release",
                "post_release", "batch", "pause", "parallel", "on_failure", "required", "zone")
_TARGET_FLAGS = ("allow_self_approval", "developers_can_rollback")
NEW_TARGET = {"keep": "8", "pause": "0s", "parallel": "20", "on_failure": "stop",
              "required": "0", "developers_can_rollback": True, "servers": []}


def _target_values(form: Any) -> dict[str, Any]:
    values: dict[str, Any] = {name: forms.text(form, name) for name in _TARGET_TEXT}
    values.update({name: forms.checked(form, name) for name in _TARGET_FLAGS})
    values["servers"] = forms.many(form, "servers")
    return values


def _target_spec(values: dict[str, Any]) -> dict[str, Any]:
    """Form strings -> the service's input shape (empty numbers take their defaults)."""
    return {"environment": values["environment"], "servers": values["servers"],
            "labels": forms.items(values["labels"]), "webroot": values["webroot"],
            "releases": values["releases"], "keep": values["keep"] or 8,
            "hooks": {"prev_release": values["prev_release"] or None,
                      "post_release": values["post_release"] or None},
            "strategy": {"batch": values["batch"] or None, "pause": values["pause"] or 0,
                         "parallel": values["parallel"] or 20,
                         "on_failure": values["on_failure"] or "stop"},
            "approval": {"required": values["required"] or 0,
                         "allow_self_approval": values["allow_self_approval"]},
            "developers_can_rollback": values["developers_can_rollback"],
            "zone": values["zone"]}


def _values_of(target: Target) -> dict[str, Any]:
    spec = targets.spec_of(target)
    return {"environment": spec.environment, "servers": list(spec.servers),
            "labels": ", ".join(spec.labels), "webroot": spec.webroot,
            "releases": spec.releases, "keep": str(spec.keep),
            "prev_release": spec.hooks.prev_release or "",
            "post_release": spec.hooks.post_release or "",
            "batch": str(spec.strategy.batch or ""), "pause": f"{spec.strategy.pause:g}s",
            "parallel": str(spec.strategy.parallel), "on_failure": spec.strategy.on_failure,
            "required": str(spec.approval.required),
            "allow_self_approval": spec.approval.allow_self_approval,
            "developers_can_rollback": spec.developers_can_rollback, "zone": spec.zone}


def _target_form(page: PageCall, project: Project, *, target: Target | None,
                 values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Response:
    rbac.require(page.ctx.principal, "target.manage", page.in_space.id, project.id)
    envs = [(e.name, e.name) for e in environments.list_environments(page.ctx, page.in_space)]
    hosts = servers.list_servers(page.ctx, page.in_space, limit=200).items
    return page.render("pages/target_form.html", status=status, project=project, target=target,
                       values=values, errors=errors, environment_options=envs, servers=hosts)


@router.get("/s/{space}/projects/{project}/targets/new")
def target_new(space: str, project: str, page: Page) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    return _target_form(page, found, target=None, values=dict(NEW_TARGET), errors={})


@router.post("/s/{space}/projects/{project}/targets/new")
def target_create(space: str, project: str, page: Page, form: Form) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    values = _target_values(form)
    try:
        with page.ctx.db.begin_nested():
            target = targets.create_target(page.ctx, page.in_space, found,
                                           forms.parse(TargetSpec, _target_spec(values)))
    except FORM_ERRORS as exc:
        return _target_form(page, found, target=None, values=values, errors=field_errors(exc),
                            status=422)
    return page.redirect(f"/s/{space}/projects/{project}",
                         flash=f"Target {target.environment.name} added.")


@router.get("/s/{space}/projects/{project}/targets/{environment}/edit")
def target_edit(space: str, project: str, environment: str, page: Page) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    target = targets.get_target(page.ctx, found, environment)
    return _target_form(page, found, target=target, values=_values_of(target), errors={})


@router.post("/s/{space}/projects/{project}/targets/{environment}/edit")
def target_update(space: str, project: str, environment: str, page: Page,
                  form: Form) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    target = targets.get_target(page.ctx, found, environment)
    values = _target_values(form)
    try:
        with page.ctx.db.begin_nested():
            target = targets.update_target(page.ctx, page.in_space, found, environment,
                                           _target_spec(values))
    except FORM_ERRORS as exc:
        return _target_form(page, found, target=target, values=values,
                            errors=field_errors(exc), status=422)
    return page.redirect(f"/s/{space}/projects/{project}",
                         flash=f"Target {target.environment.name} saved.")


@router.post("/s/{space}/projects/{project}/targets/{environment}/delete")
def target_delete(space: str, project: str, environment: str, page: Page) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    targets.delete_target(page.ctx, page.in_space, found, environment)
    return page.redirect(f"/s/{space}/projects/{project}",
                         flash=f"Target {environment} deleted.")


@router.post("/s/{space}/projects/{project}/targets/{environment}/check")
def target_check(space: str, project: str, environment: str, page: Page) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    # Host keys seen on first contact are recorded through a connection of their own:
    # commit this request's writes first so that it never waits on our (SQLite) lock.
    page.ctx.db.commit()
    report = checks.check_target(page.ctx, found, environment)
    return page.render("pages/server_check.html", hosts=report.hosts, git=report.git,
                       ok=report.ok, title=f"{found.name} → {environment}",
                       back=f"/s/{space}/projects/{found.name}")
