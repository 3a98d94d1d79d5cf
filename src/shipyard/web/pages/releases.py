"""A target's kept releases (read from its servers) and rolling back to one: pick a
release, confirm what will happen, then watch the rollback like a deploy."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from shipyard.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from shipyard.models import Project, Target
from shipyard.services import releases, targets, tasks
from shipyard.services.releases import KeptRelease, ReleaseReport
from shipyard.web import forms
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)
BASE = "/s/{space}/projects/{project}/targets/{environment}"


def _project(page: PageCall) -> Project:
    assert page.project is not None
    return page.project


def _outliers(report: ReleaseReport) -> set[str]:
    """Hosts whose live release differs from what most hosts run."""
    if not report.hosts_disagree:
        return set()
    usual, _ = Counter(report.live.values()).most_common(1)[0]
    return {host for host, live in report.live.items() if live != usual}


def _live_everywhere(kept: KeptRelease, report: ReleaseReport) -> bool:
    return bool(report.live) and set(kept.live_on) == set(report.live)


@router.get(BASE + "/releases")
def release_list(space: str, project: str, environment: str, page: Page) -> Response:
    target = targets.get_target(page.ctx, _project(page), environment)
    report = releases.list_releases(page.ctx, _project(page), environment)
    may_roll_back = tasks.may_roll_back(page.ctx, target)
    return page.render("pages/releases.html", target=target, report=report,
                       outliers=_outliers(report), may_roll_back=may_roll_back,
                       live_everywhere={r.id: _live_everywhere(r, report)
                                        for r in report.releases})


def _confirm(page: PageCall, target: Target, release: str, values: dict[str, Any],
             errors: dict[str, str], status: int = 200) -> Response:
    report = releases.list_releases(page.ctx, _project(page), target.environment.name)
    kept = next((r for r in report.releases if r.id == release), None)
    if kept is None:
        raise NotFound(f"release {release!r} is not kept on any server of this target")
    servers = targets.resolve_servers(page.ctx, target)
    if "servers" not in values:
        values = {**values, "servers": [s.name for s in servers if s.name in kept.hosts]}
    return page.render("pages/rollback.html", status=status, target=target, report=report,
                       kept=kept, servers=servers, values=values, errors=errors)


@router.get(BASE + "/rollback")
def rollback_confirm(space: str, project: str, environment: str, page: Page,
                     release: str = "") -> Response:
    target = targets.get_target(page.ctx, _project(page), environment)
    if not tasks.may_roll_back(page.ctx, target):
        raise PermissionDenied("you may not roll back this target")
    return _confirm(page, target, release, {"title": ""}, {})


@router.post(BASE + "/rollback")
def rollback_submit(space: str, project: str, environment: str, page: Page,
                    form: Form) -> Response:
    target = targets.get_target(page.ctx, _project(page), environment)
    release, title = forms.text(form, "release"), forms.text(form, "title")
    servers = forms.many(form, "servers")
    values: dict[str, Any] = {"title": title, "servers": servers}
    every = {s.name for s in targets.resolve_servers(page.ctx, target)}
    try:
        with page.ctx.db.begin_nested():
            task = tasks.submit_rollback(page.ctx, page.in_space, project, environment,
                                         release, None if set(servers) == every else servers,
                                         title or None)
            if "start" in tasks.available_actions(page.ctx, task):
                tasks.start(page.ctx, page.in_space, task.id)
    except (InvalidInput, Conflict) as exc:
        return _confirm(page, target, release, values, forms.FormErrors.of(exc),
                        status=exc.status)
    return page.redirect(f"/s/{space}/tasks/{task.id}")
