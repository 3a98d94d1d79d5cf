"""SUPER's pages: spaces (create, assign owners) and users (list, create, edit)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError

from shipyard.auth import rbac
from shipyard.errors import Conflict, InvalidInput, NotFound
from shipyard.models import Role, User
from shipyard.services import lookup, spaces, users
from shipyard.services.spaces import SpaceSpec
from shipyard.services.users import UserSpec, UserUpdate
from shipyard.web import forms
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)

# Errors a form shows next to its fields; anything else (403, 404) is an error page.
FORM_ERRORS = (ValidationError, InvalidInput, Conflict)


# -- spaces ----------------------------------------------------------------------------------

def _spaces_page(page: PageCall, *, values: dict[str, Any] | None = None,
                 errors: dict[str, str] | None = None, owner_errors: dict[str, str] | None = None,
                 status: int = 200) -> Response:
    rbac.require(page.ctx.principal, "space.create")
    rows = []
    for space in spaces.list_spaces(page.ctx):
        members = spaces.list_members(page.ctx, space)
        rows.append({"space": space, "members": len(members),
                     "owners": [u.username for m, u in members if m.role is Role.OWNER]})
    return page.render("admin/spaces.html", status=status, rows=rows, values=values or {},
                       errors=errors or {}, owner_errors=owner_errors or {})


@router.get("/admin/spaces")
def space_list(page: Page) -> Response:
    return _spaces_page(page)


@router.post("/admin/spaces")
def space_create(page: Page, form: Form) -> Response:
    values = {"name": forms.text(form, "name"), "display_name": forms.text(form, "display_name"),
              "owner": forms.optional(form, "owner")}
    try:
        with page.ctx.db.begin_nested():
            space = spaces.create_space(page.ctx, forms.parse(SpaceSpec, values))
    except FORM_ERRORS as exc:
        return _spaces_page(page, values=values, errors=forms.FormErrors.of(exc), status=422)
    except NotFound as exc:  # the owner's username
        return _spaces_page(page, values=values, errors={"owner": exc.message}, status=422)
    return page.redirect("/admin/spaces", flash=f"Space {space.name} created.")


@router.post("/admin/spaces/{name}/owners")
def space_add_owner(name: str, page: Page, form: Form) -> Response:
    username = forms.text(form, "username")
    space = lookup.space(page.ctx, name)
    try:
        with page.ctx.db.begin_nested():
            spaces.set_member(page.ctx, space, username, Role.OWNER)
    except (*FORM_ERRORS, NotFound) as exc:
        message = exc.message if isinstance(exc, NotFound) else \
            next(iter(forms.FormErrors.of(exc).values()))
        return _spaces_page(page, owner_errors={space.name: message}, status=422)
    return page.redirect("/admin/spaces", flash=f"{username} is now an owner of {space.name}.")


# -- users -----------------------------------------------------------------------------------

@router.get("/admin/users")
def user_list(page: Page, q: str | None = None, cursor: int | None = None) -> Response:
    result = users.list_users(page.ctx, q=q or None, cursor=cursor, limit=50)
    return page.render("admin/users.html", users=result.items, q=q or "",
                       next_url=page.next_url(result.next_cursor))


def _user_form(page: PageCall, *, account: User | None, values: dict[str, Any],
               errors: dict[str, str], status: int = 200) -> Response:
    rbac.require(page.ctx.principal, "user.manage")
    return page.render("admin/user_form.html", status=status, account=account, values=values,
                       errors=errors)


@router.get("/admin/users/new")
def user_new(page: Page) -> Response:
    return _user_form(page, account=None, values={}, errors={})


@router.post("/admin/users/new")
def user_create(page: Page, form: Form) -> Response:
    # The password is never echoed back into the page.
    values = {"username": forms.text(form, "username"), "email": forms.optional(form, "email"),
              "display_name": forms.text(form, "display_name"),
              "is_super": forms.checked(form, "is_super")}
    try:
        with page.ctx.db.begin_nested():
            account = users.create_user(page.ctx, forms.parse(
                UserSpec, {**values, "password": str(form.get("password", ""))}))
    except FORM_ERRORS as exc:
        return _user_form(page, account=None, values=values, errors=forms.FormErrors.of(exc),
                          status=422)
    return page.redirect("/admin/users", flash=f"User {account.username} created.")


@router.get("/admin/users/{username}")
def user_edit(username: str, page: Page) -> Response:
    account = users.get_user(page.ctx, username)
    values = {"email": account.email or "", "display_name": account.display_name,
              "is_super": account.is_super, "is_active": account.is_active}
    return _user_form(page, account=account, values=values, errors={})


@router.post("/admin/users/{username}")
def user_update(username: str, page: Page, form: Form) -> Response:
    account = users.get_user(page.ctx, username)
    values = {"email": forms.optional(form, "email"),
              "display_name": forms.text(form, "display_name"),
              "is_super": forms.checked(form, "is_super"),
              "is_active": forms.checked(form, "is_active")}
    changes = dict(values)
    if form.get("password"):
        changes["password"] = str(form.get("password"))
    try:
        with page.ctx.db.begin_nested():
            users.update_user(page.ctx, username, forms.parse(UserUpdate, changes))
    except FORM_ERRORS as exc:
        return _user_form(page, account=account, values=values,
                          errors=forms.FormErrors.of(exc), status=422)
    return page.redirect("/admin/users", flash=f"User {username} saved.")
