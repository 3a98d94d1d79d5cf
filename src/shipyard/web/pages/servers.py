"""Servers of a space: list, add, edit, delete, forget a host key. (The pattern for the
other inventory pages: GET shows the form, POST validates through the service and
re-renders with field errors and the typed values on failure.)"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError

from shipyard.errors import ShipyardError
from shipyard.models import Server
from shipyard.services import checks, credentials, servers
from shipyard.services.servers import ServerSpec
from shipyard.web import forms
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)


def _values(form: Any) -> dict[str, Any]:
    return {"name": forms.text(form, "name"), "host": forms.text(form, "host"),
            "port": forms.text(form, "port") or "22", "user": forms.text(form, "user"),
            "labels": forms.text(form, "labels"),
            "credential": forms.optional(form, "credential")}


def _spec(values: dict[str, Any]) -> dict[str, Any]:
    """Form strings -> the service's input shape."""
    port = values["port"]
    return {**values, "port": int(port) if str(port).isdigit() else port,
            "labels": forms.items(values["labels"])}


def _form(page: PageCall, *, server: Server | None, values: dict[str, Any],
          errors: dict[str, str], status: int = 200) -> Response:
    creds = [(c.name, f"{c.name} ({c.kind})")
             for c in credentials.list_credentials(page.ctx, page.in_space)
             if c.kind == "ssh_key"]
    return page.render("pages/server_form.html", status=status, server=server, values=values,
                       errors=errors, credential_options=creds)


@router.get("/s/{space}/servers")
def server_list(space: str, page: Page, label: str | None = None, q: str | None = None,
                cursor: int | None = None) -> Response:
    result = servers.list_servers(page.ctx, page.in_space, label=label, q=q, cursor=cursor,
                                  limit=100)
    return page.render("pages/servers.html", servers=result.items, label=label or "",
                       q=q or "", next_url=page.next_url(result.next_cursor))


@router.get("/s/{space}/servers/new")
def server_new(space: str, page: Page) -> Response:
    return _form(page, server=None, values={"port": "22", "user": "deploy"}, errors={})


@router.post("/s/{space}/servers/new")
def server_create(space: str, page: Page, form: Form) -> Response:
    values = _values(form)
    try:
        server = servers.create_server(page.ctx, page.in_space,
                                       forms.parse(ServerSpec, _spec(values)))
    except (ValidationError, ShipyardError) as exc:
        return _form(page, server=None, values=values, errors=forms.FormErrors.of(exc),
                     status=422)
    return page.redirect(f"/s/{space}/servers", flash=f"Server {server.name} added.")


@router.post("/s/{space}/servers/check")
def server_check(space: str, page: Page, form: Form) -> Response:
    """Check the ticked servers (or all of them): SSH reach, host key, free disk."""
    names = forms.many(form, "servers") if form.get("scope") != "all" else []
    # Host keys seen on first contact are recorded through a connection of their own:
    # commit this request's writes first so that it never waits on our (SQLite) lock.
    page.ctx.db.commit()
    reports = checks.check_servers(page.ctx, page.in_space, names)
    return page.render("pages/server_check.html", hosts=reports, git=None,
                       ok=all(r.ok for r in reports), title=None, back=f"/s/{space}/servers")


@router.get("/s/{space}/servers/{name}")
def server_edit(space: str, name: str, page: Page) -> Response:
    server = servers.get_server(page.ctx, page.in_space, name)
    spec = servers.spec_of(server)
    values = {**spec.model_dump(), "labels": "\n".join(spec.labels)}
    return _form(page, server=server, values=values, errors={})


@router.post("/s/{space}/servers/{name}")
def server_update(space: str, name: str, page: Page, form: Form) -> Response:
    values = _values(form)
    server = servers.get_server(page.ctx, page.in_space, name)
    try:
        # Savepoint: a failed update leaves nothing half-written in this request.
        with page.ctx.db.begin_nested():
            server = servers.update_server(page.ctx, page.in_space, name, _spec(values))
    except (ValidationError, ShipyardError) as exc:
        return _form(page, server=server, values=values, errors=forms.FormErrors.of(exc),
                     status=422)
    return page.redirect(f"/s/{space}/servers", flash=f"Server {server.name} saved.")


@router.post("/s/{space}/servers/{name}/delete")
def server_delete(space: str, name: str, page: Page) -> Response:
    servers.delete_server(page.ctx, page.in_space, name)
    return page.redirect(f"/s/{space}/servers", flash=f"Server {name} deleted.")


@router.post("/s/{space}/servers/{name}/forget-host-key")
def server_forget_key(space: str, name: str, page: Page) -> Response:
    servers.forget_host_key(page.ctx, page.in_space, name)
    return page.redirect(f"/s/{space}/servers/{name}",
                         flash="Host key forgotten; the next connection records it again.")
