"""Credentials of a space: SSH keys, tokens, passwords, secrets. Write-only: the secret is
never rendered, not in the list, not in the edit form, not when a form is shown again."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError

from shipyard.auth import rbac
from shipyard.errors import Conflict, InvalidInput
from shipyard.models import Credential
from shipyard.services import credentials
from shipyard.services.credentials import CredentialSpec, CredentialUpdate
from shipyard.web import forms
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)

# Errors a form shows next to its fields; anything else (403, 404) is an error page.
FORM_ERRORS = (ValidationError, InvalidInput, Conflict)
KINDS = ("ssh_key", "token", "password", "secret")


def _list(page: PageCall, *, row_errors: dict[str, str] | None = None,
          status: int = 200) -> Response:
    return page.render("pages/credentials.html", status=status,
                       credentials=credentials.list_credentials(page.ctx, page.in_space),
                       row_errors=row_errors or {})


def _form(page: PageCall, *, credential: Credential | None, values: dict[str, Any],
          errors: dict[str, str], status: int = 200) -> Response:
    rbac.require(page.ctx.principal, "credential.manage", page.in_space.id)
    assert "secret" not in values  # write-only: what was typed is not sent back either
    return page.render("pages/credential_form.html", status=status, credential=credential,
                       values=values, errors=errors, kinds=KINDS)


def _secret(form: Any) -> str:
    # Not stripped: an SSH key needs its final newline, a password may end in a space.
    return str(form.get("secret", ""))


@router.get("/s/{space}/credentials")
def credential_list(space: str, page: Page) -> Response:
    return _list(page)


@router.get("/s/{space}/credentials/new")
def credential_new(space: str, page: Page) -> Response:
    return _form(page, credential=None, values={"kind": "ssh_key"}, errors={})


@router.post("/s/{space}/credentials/new")
def credential_create(space: str, page: Page, form: Form) -> Response:
    values = {"name": forms.text(form, "name"), "kind": forms.text(form, "kind"),
              "username": forms.optional(form, "username")}
    try:
        with page.ctx.db.begin_nested():
            cred = credentials.create_credential(page.ctx, page.in_space, forms.parse(
                CredentialSpec, {**values, "secret": _secret(form)}))
    except FORM_ERRORS as exc:
        return _form(page, credential=None, values=values, errors=forms.FormErrors.of(exc),
                     status=422)
    return page.redirect(f"/s/{space}/credentials", flash=f"Credential {cred.name} added.")


@router.get("/s/{space}/credentials/{name}")
def credential_edit(space: str, name: str, page: Page) -> Response:
    cred = credentials.get_credential(page.ctx, page.in_space, name)
    return _form(page, credential=cred, values={"username": cred.username or ""}, errors={})


@router.post("/s/{space}/credentials/{name}")
def credential_update(space: str, name: str, page: Page, form: Form) -> Response:
    cred = credentials.get_credential(page.ctx, page.in_space, name)
    values = {"username": forms.optional(form, "username")}
    changes: dict[str, Any] = dict(values)
    if _secret(form).strip():
        changes["secret"] = _secret(form)  # empty: keep the stored secret
    try:
        with page.ctx.db.begin_nested():
            cred = credentials.update_credential(page.ctx, page.in_space, name,
                                                 forms.parse(CredentialUpdate, changes))
    except FORM_ERRORS as exc:
        return _form(page, credential=cred, values=values, errors=forms.FormErrors.of(exc),
                     status=422)
    flash = "secret replaced" if "secret" in changes else "saved"
    return page.redirect(f"/s/{space}/credentials", flash=f"Credential {cred.name}: {flash}.")


@router.post("/s/{space}/credentials/{name}/delete")
def credential_delete(space: str, name: str, page: Page) -> Response:
    try:
        with page.ctx.db.begin_nested():
            credentials.delete_credential(page.ctx, page.in_space, name)
    except Conflict as exc:  # servers or projects still use it
        return _list(page, row_errors={name: exc.message}, status=exc.status)
    return page.redirect(f"/s/{space}/credentials", flash=f"Credential {name} deleted.")
