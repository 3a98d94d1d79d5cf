"""Environments of a space, in order (dev < test < prod): add, rename, move up or down,
delete (refused while targets use one)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError

from shipyard.auth import rbac
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.services import environments
from shipyard.services.environments import EnvironmentSpec, EnvironmentUpdate
from shipyard.web import forms
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)

# Errors a form shows next to its fields; anything else (403, 404) is an error page.
FORM_ERRORS = (ValidationError, InvalidInput, Conflict)
STEP = 10  # positions are renumbered in steps, leaving room for one inserted by the API


def _page(page: PageCall, *, values: dict[str, str] | None = None,
          errors: dict[str, str] | None = None, row_values: dict[str, dict[str, str]] | None = None,
          row_errors: dict[str, dict[str, str]] | None = None, status: int = 200) -> Response:
    return page.render("pages/environments.html", status=status,
                       environments=environments.list_environments(page.ctx, page.in_space),
                       values=values or {}, errors=errors or {}, row_values=row_values or {},
                       row_errors=row_errors or {})


@router.get("/s/{space}/environments")
def environment_list(space: str, page: Page) -> Response:
    return _page(page)


@router.post("/s/{space}/environments")
def environment_create(space: str, page: Page, form: Form) -> Response:
    values = {"name": forms.text(form, "name"), "position": forms.text(form, "position")}
    try:
        with page.ctx.db.begin_nested():
            env = environments.create_environment(page.ctx, page.in_space, forms.parse(
                EnvironmentSpec, {"name": values["name"], "position": values["position"] or None}))
    except FORM_ERRORS as exc:
        return _page(page, values=values, errors=forms.FormErrors.of(exc), status=422)
    return page.redirect(f"/s/{space}/environments", flash=f"Environment {env.name} added.")


@router.post("/s/{space}/environments/{name}")
def environment_update(space: str, name: str, page: Page, form: Form) -> Response:
    values = {"name": forms.text(form, "name"), "position": forms.text(form, "position")}
    changes: dict[str, str] = {"name": values["name"]}
    if values["position"]:
        changes["position"] = values["position"]
    try:
        with page.ctx.db.begin_nested():
            env = environments.update_environment(page.ctx, page.in_space, name,
                                                  forms.parse(EnvironmentUpdate, changes))
    except FORM_ERRORS as exc:
        return _page(page, row_values={name: values},
                     row_errors={name: forms.FormErrors.of(exc)}, status=422)
    return page.redirect(f"/s/{space}/environments", flash=f"Environment {env.name} saved.")


@router.post("/s/{space}/environments/{name}/move")
def environment_move(space: str, name: str, page: Page, form: Form) -> Response:
    """Swap with the neighbour above or below, then number all in steps of STEP."""
    # Checked up front too: moving the first one up changes nothing, yet is not allowed.
    rbac.require(page.ctx.principal, "environment.manage", page.in_space.id)
    order = environments.list_environments(page.ctx, page.in_space)
    names = [e.name for e in order]
    if name not in names:
        raise NotFound(f"no environment named {name!r} in this space")
    i = names.index(name)
    j = i - 1 if forms.text(form, "direction") == "up" else i + 1
    if 0 <= j < len(order):
        order[i], order[j] = order[j], order[i]
    for position, env in enumerate(order):
        if env.position != position * STEP:
            environments.update_environment(page.ctx, page.in_space, env.name,
                                            EnvironmentUpdate(position=position * STEP))
    return page.redirect(f"/s/{space}/environments")


@router.post("/s/{space}/environments/{name}/delete")
def environment_delete(space: str, name: str, page: Page) -> Response:
    try:
        with page.ctx.db.begin_nested():
            environments.delete_environment(page.ctx, page.in_space, name)
    except Conflict as exc:  # targets still use it
        return _page(page, row_errors={name: {"": exc.message}}, status=exc.status)
    return page.redirect(f"/s/{space}/environments", flash=f"Environment {name} deleted.")
