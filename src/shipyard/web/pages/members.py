"""Who belongs to a space and with which role; and project-level roles, which override
the space role for one project (managed from the project page)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.models import Role
from shipyard.services import projects, spaces
from shipyard.services.spaces import MemberSpec
from shipyard.web import forms
from shipyard.web.pages.projects import ROLES, render_project
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)

# Errors a form shows next to its fields; anything else (403, 404) is an error page.
FORM_ERRORS = (ValidationError, InvalidInput, Conflict)


def _role(form: FormData) -> Role:
    return MemberSpec(role=forms.text(form, "role") or "-").parsed_role()


def _members_page(page: PageCall, *, values: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None,
                  row_errors: dict[str, str] | None = None, status: int = 200) -> Response:
    members = spaces.list_members(page.ctx, page.in_space)
    overrides: dict[str, list[tuple[str, str]]] = {}
    for project in projects.list_projects(page.ctx, page.in_space):
        for member, user in spaces.list_project_members(page.ctx, project):
            overrides.setdefault(user.username, []).append((project.name, member.role.label))
    return page.render("pages/members.html", status=status, members=members,
                       overrides=overrides, roles=ROLES,
                       values=values or {"role": "developer"}, errors=errors or {},
                       row_errors=row_errors or {})


@router.get("/s/{space}/members")
def member_list(space: str, page: Page) -> Response:
    return _members_page(page)


@router.post("/s/{space}/members")
def member_add(space: str, page: Page, form: Form) -> Response:
    values = {"username": forms.text(form, "username"), "role": forms.text(form, "role")}
    try:
        with page.ctx.db.begin_nested():
            spaces.set_member(page.ctx, page.in_space, values["username"], _role(form))
    except FORM_ERRORS as exc:
        return _members_page(page, values=values, errors=forms.FormErrors.of(exc), status=422)
    except NotFound as exc:  # no such user
        return _members_page(page, values=values, errors={"username": exc.message},
                             status=422)
    return page.redirect(f"/s/{space}/members",
                         flash=f"{values['username']} is now {values['role']}.")


@router.post("/s/{space}/members/{username}")
def member_set_role(space: str, username: str, page: Page, form: Form) -> Response:
    try:
        with page.ctx.db.begin_nested():
            role = _role(form)
            spaces.set_member(page.ctx, page.in_space, username, role)
    except FORM_ERRORS as exc:
        message = next(iter(forms.FormErrors.of(exc).values()))
        return _members_page(page, row_errors={username: message}, status=422)
    return page.redirect(f"/s/{space}/members", flash=f"{username} is now {role.label}.")


@router.post("/s/{space}/members/{username}/remove")
def member_remove(space: str, username: str, page: Page) -> Response:
    try:
        with page.ctx.db.begin_nested():
            spaces.remove_member(page.ctx, page.in_space, username)
    except FORM_ERRORS as exc:  # e.g. the last owner
        message = next(iter(forms.FormErrors.of(exc).values()))
        return _members_page(page, row_errors={username: message}, status=422)
    return page.redirect(f"/s/{space}/members", flash=f"{username} removed from the space.")


# -- project-level roles (shown on the project page) -----------------------------------------

@router.post("/s/{space}/projects/{project}/members")
def project_member_set(space: str, project: str, page: Page, form: Form) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    values = {"username": forms.text(form, "username"), "role": forms.text(form, "role")}
    try:
        with page.ctx.db.begin_nested():
            spaces.set_project_member(page.ctx, found, values["username"], _role(form))
    except FORM_ERRORS as exc:
        return render_project(page, found, member_values=values,
                              member_errors=forms.FormErrors.of(exc), status=422)
    except NotFound as exc:
        return render_project(page, found, member_values=values,
                              member_errors={"username": exc.message}, status=422)
    return page.redirect(f"/s/{space}/projects/{project}",
                         flash=f"{values['username']} is {values['role']} on {project}.")


@router.post("/s/{space}/projects/{project}/members/{username}/remove")
def project_member_remove(space: str, project: str, username: str, page: Page) -> Response:
    found = projects.get_project(page.ctx, page.in_space, project)
    spaces.remove_project_member(page.ctx, found, username)
    return page.redirect(f"/s/{space}/projects/{project}",
                         flash=f"{username}'s role on {project} removed.")
