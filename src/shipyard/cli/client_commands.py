"""The API client commands: log in, list and create things, submit and decide deploy
tasks, read the audit log, and ``apply`` a configuration file.

Each command parses its arguments, makes one or a few API calls and formats the answer
(``-o table``, the default, or ``-o json``). Rules live on the server; a refusal comes back
as an error with the server's message. ``shipyard NOUN ARGS`` is short for
``shipyard NOUN list ARGS`` where a noun also has other subcommands (spaces, envs, tokens).
"""

from __future__ import annotations

import getpass
import re
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from shipyard.cli import apply as applying
from shipyard.cli import client
from shipyard.cli.client import ApiClient, path
from shipyard.cli.output import (
    Cell,
    Format,
    OutputOption,
    note,
    record,
    reporting_errors,
    show,
    table,
    text,
    when,
)
from shipyard.errors import NotAuthenticated, ShipyardError

Space = Annotated[str, typer.Argument(metavar="SPACE", help="space name", show_default=False)]
TaskId = Annotated[int, typer.Argument(metavar="ID", help="task number", show_default=False)]
ProjectPath = Annotated[str, typer.Argument(metavar="SPACE/PROJECT", show_default=False,
                                            help="a project, as space/project")]


class ListByDefault(TyperGroup):
    """A group that runs ``list`` when the first word is not one of its subcommands, so
    ``shipyard envs acme`` means ``shipyard envs list acme``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's click.Context
        if not args or (args[0] not in self.commands
                        and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def group(help_text: str) -> typer.Typer:
    return typer.Typer(cls=ListByDefault, help=help_text)


def project_of(value: str) -> tuple[str, str]:
    space, sep, project = value.partition("/")
    if not sep or not space or not project or "/" in project:
        raise typer.BadParameter(f"expected SPACE/PROJECT, got {value!r}")
    return space, project


# -- account ------------------------------------------------------------------------------


@reporting_errors
def login(
    url: Annotated[str, typer.Option(help="server URL (default: SHIPYARD_URL or the last "
                                          "one used)")] = "",
    username: Annotated[str, typer.Option("--username", "-u")] = "",
    output: OutputOption = Format.table,
) -> None:
    """Log in with your password; stores a new API token for the next commands."""
    server = (client.server_url(url or None)
              or typer.prompt("Shipyard URL", default=client.DEFAULT_URL)).rstrip("/")
    user = username or typer.prompt("Username", default=client.load_login().username
                                    or getpass.getuser())
    password = typer.prompt("Password", hide_input=True)
    api = ApiClient(server, None)
    new = api.post("/auth/token", {"username": user, "password": password,
                                   "token_name": _token_name()})
    file = client.save_login(client.Login(url=server, token=new["token"], username=user,
                                          token_id=new["id"]))
    result = {"url": server, "username": user, "token_name": new["name"],
              "token_prefix": new["prefix"], "config": str(file)}
    show(result, output, lambda r: note(
        f"logged in to [bold]{r['url']}[/] as [bold]{r['username']}[/] "
        f"(token {r['token_name']} stored in {r['config']})"))


def _token_name() -> str:
    """``cli-<hostname>``, so that a user's token list says which machine is which."""
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:50]
    return f"cli-{host}" if host else "cli"


@reporting_errors
def logout(output: OutputOption = Format.table) -> None:
    """Revoke the stored API token on the server and forget it here."""
    stored = client.load_login()
    revoked = False
    if stored.url and stored.token and stored.token_id is not None:
        try:
            ApiClient(stored.url, stored.token).delete(path("/me/tokens/{}", stored.token_id))
            revoked = True
        except NotAuthenticated:
            pass  # already revoked or expired: nothing left to revoke
        except ShipyardError as exc:  # e.g. unreachable: still log out here, but say so
            note(f"[yellow]warning:[/] the token was not revoked on the server "
                 f"({escape(exc.message)}); revoke it later with `shipyard tokens revoke`")
    forgotten = client.forget_login()
    show({"logged_out": forgotten, "token_revoked": revoked}, output, lambda r: note(
        f"logged out of {stored.url}" if r["logged_out"] else "not logged in"))


@reporting_errors
def whoami(output: OutputOption = Format.table) -> None:
    """Who you are on the server, and your spaces and roles."""
    me = client.connect().get("/me")

    def render(me: dict[str, Any]) -> None:
        record(me["user"], [("user", "username"), ("name", "display_name"),
                            ("email", "email"), ("super", "is_super")])
        table(me["spaces"], [("SPACE", "name"), ("ROLE", "role")], empty="no spaces")

    show(me, output, render)


tokens = group("Your personal API tokens. `shipyard tokens` lists them.")
TOKEN_COLUMNS: list[tuple[str, Cell]] = [("ID", "id"), ("NAME", "name"), ("PREFIX", "prefix"),
                 ("CREATED", lambda t: when(t["created_at"])),
                 ("LAST USED", lambda t: when(t["last_used_at"])),
                 ("EXPIRES", lambda t: when(t["expires_at"])),
                 ("REVOKED", lambda t: when(t["revoked_at"]))]


@tokens.command("list")
@reporting_errors
def list_tokens(output: OutputOption = Format.table) -> None:
    """List your API tokens (never the secret part)."""
    show(client.connect().get("/me/tokens"), output, lambda t: table(t, TOKEN_COLUMNS))


@tokens.command("create")
@reporting_errors
def create_token(name: Annotated[str, typer.Argument(metavar="NAME",
                                                     help="a name, e.g. ci-deploy")],
                 days: Annotated[int | None, typer.Option(help="expire after N days")] = None,
                 output: OutputOption = Format.table) -> None:
    """Create an API token; it is printed once, store it now."""
    new = client.connect().post("/me/tokens", {"name": name, "expires_in_days": days})

    def render(t: dict[str, Any]) -> None:
        typer.echo(t["token"])
        note("store this token now: it cannot be shown again")

    show(new, output, render)


@tokens.command("revoke")
@reporting_errors
def revoke_token(token_id: Annotated[int, typer.Argument(metavar="ID")],
                 output: OutputOption = Format.table) -> None:
    """Revoke one of your tokens; it stops working at once."""
    revoked = client.connect().delete(path("/me/tokens/{}", token_id))
    show(revoked, output, lambda t: note(f"revoked token {t['id']} ({t['name']})"))


# -- spaces and inventory -------------------------------------------------------------------

spaces = group("Spaces (teams). `shipyard spaces` lists yours.")
SPACE_COLUMNS: list[tuple[str, Cell]] = [("NAME", "name"), ("DISPLAY NAME", "display_name"),
                                         ("ROLE", "role")]


@spaces.command("list")
@reporting_errors
def list_spaces(output: OutputOption = Format.table) -> None:
    """List the spaces you belong to (all of them for SUPER) and your role in each."""
    show(client.connect().get("/spaces"), output, lambda s: table(s, SPACE_COLUMNS))


@spaces.command("create")
@reporting_errors
def create_space(name: Annotated[str, typer.Argument(metavar="NAME",
                                                     help="a slug, e.g. web-team")],
                 owner: Annotated[str | None, typer.Option(help="username made OWNER")] = None,
                 display_name: Annotated[str, typer.Option()] = "",
                 output: OutputOption = Format.table) -> None:
    """Create a space (SUPER only)."""
    created = client.connect().post("/spaces", {"name": name, "owner": owner,
                                                "display_name": display_name})
    show(created, output, lambda s: note(f"created space [bold]{s['name']}[/]"))


envs = group("Environments of a space, lowest first. `shipyard envs SPACE` lists them.")


@envs.command("list")
@reporting_errors
def list_envs(space: Space, output: OutputOption = Format.table) -> None:
    """List a space's environments in order."""
    found = client.connect().get(path("/spaces/{}/environments", space))
    show(found, output, lambda e: table(e, [("NAME", "name"), ("POSITION", "position")]))


@envs.command("create")
@reporting_errors
def create_env(space: Space,
               name: Annotated[str, typer.Argument(metavar="NAME", help="e.g. staging")],
               position: Annotated[int | None, typer.Option(
                   help="order, lowest first (default: after the last)")] = None,
               output: OutputOption = Format.table) -> None:
    """Add an environment to a space (OWNER)."""
    created = client.connect().post(path("/spaces/{}/environments", space),
                                    {"name": name, "position": position})
    show(created, output, lambda e: note(f"created environment [bold]{e['name']}[/] "
                                         f"at position {e['position']}"))


@reporting_errors
def servers(space: Space, label: Annotated[str | None, typer.Option(
                help="only servers with this label")] = None,
            output: OutputOption = Format.table) -> None:
    """List a space's servers (all pages)."""
    found = client.connect().get_all(path("/spaces/{}/servers", space), label=label)
    show(found, output, lambda s: table(s, [
        ("NAME", "name"), ("HOST", "host"), ("PORT", "port"), ("USER", "user"),
        ("LABELS", "labels"), ("CREDENTIAL", "credential"),
        ("HOST KEY", lambda s: "recorded" if s["host_key"] else "not yet")]))


@reporting_errors
def projects(space: Space, output: OutputOption = Format.table) -> None:
    """List a space's projects."""
    found = client.connect().get(path("/spaces/{}/projects", space))
    show(found, output, lambda p: table(p, [
        ("NAME", "name"), ("REPO", "repo"), ("BRANCH", "default_branch"),
        ("CREDENTIAL", "credential"), ("DESCRIPTION", "description")]))


@reporting_errors
def targets(project: ProjectPath, output: OutputOption = Format.table) -> None:
    """List a project's targets (one per environment)."""
    space, name = project_of(project)
    found = client.connect().get(path("/spaces/{}/projects/{}/targets", space, name))
    show(found, output, lambda t: table(t, [
        ("ENVIRONMENT", "environment"), ("SERVERS", "servers"), ("LABELS", "labels"),
        ("WEBROOT", "webroot"), ("RELEASES", "releases"), ("KEEP", "keep"),
        ("APPROVALS", lambda t: t["approval"]["required"]),
        ("BATCH", lambda t: t["strategy"].get("batch") or "all")]))


# -- deploy tasks ---------------------------------------------------------------------------

TASK_COLUMNS: list[tuple[str, Cell]] = [("ID", "id"), ("STATE", "state"), ("PROJECT", "project"),
                ("ENV", "environment"), ("TITLE", "title"), ("REF", "ref"),
                ("COMMIT", lambda t: (t["commit"] or "")[:10]), ("BY", "submitted_by"),
                ("CREATED", lambda t: when(t["created_at"]))]


def show_task(task: dict[str, Any], output: Format) -> None:
    def render(t: dict[str, Any]) -> None:
        record(t, [("task", "id"), ("title", "title"), ("state", "state"),
                   ("project", "project"), ("environment", "environment"), ("ref", "ref"),
                   ("commit", "commit"),
                   ("servers", lambda t: ", ".join(t["servers"]) if t["servers"] else "all"),
                   ("submitted by", "submitted_by"), ("created", lambda t: when(t["created_at"])),
                   ("started", lambda t: when(t["started_at"])),
                   ("finished", lambda t: when(t["finished_at"])),
                   ("rejected because", "reject_reason"), ("error", "error")])
        if t.get("approvals"):
            table(t["approvals"], [("BY", "user"), ("DECISION", "decision"),
                                   ("COMMENT", "comment"), ("AT", lambda a: when(a["at"]))])

    show(task, output, render)


@reporting_errors
def tasks(space: Space,
          project: Annotated[str | None, typer.Option(help="only this project")] = None,
          env: Annotated[str | None, typer.Option(help="only this environment")] = None,
          state: Annotated[str | None, typer.Option(help="e.g. pending_approval")] = None,
          user: Annotated[str | None, typer.Option(help="only tasks submitted by")] = None,
          limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
          cursor: Annotated[int | None, typer.Option(help="from a previous page")] = None,
          output: OutputOption = Format.table) -> None:
    """List deploy tasks, newest first, one page at a time."""
    page = client.connect().get(path("/spaces/{}/tasks", space), project=project,
                                environment=env, state=state, submitted_by=user,
                                limit=limit, cursor=cursor)

    def render(page: dict[str, Any]) -> None:
        table(page["items"], TASK_COLUMNS, empty="no tasks")
        if page["next_cursor"] is not None:
            note(f"[dim]more: add --cursor {page['next_cursor']}[/]")

    show(page, output, render)


@reporting_errors
def task(space: Space, task_id: TaskId, output: OutputOption = Format.table) -> None:
    """Show one deploy task with its approvals."""
    show_task(client.connect().get(path("/spaces/{}/tasks/{}", space, task_id)), output)


@reporting_errors
def submit(project: ProjectPath,
           env: Annotated[str, typer.Option(help="target environment", show_default=False)],
           title: Annotated[str, typer.Option(help="what this deploy is", show_default=False)],
           ref: Annotated[str | None, typer.Option(
               help="branch, tag or commit (default: the project's default branch)")] = None,
           servers: Annotated[str | None, typer.Option(
               help="comma-separated subset of the target's servers (default: all)")] = None,
           output: OutputOption = Format.table) -> None:
    """Submit a deploy task; the ref is pinned to a commit now."""
    space, name = project_of(project)
    chosen = [s.strip() for s in servers.split(",") if s.strip()] if servers else None
    created = client.connect().post(path("/spaces/{}/tasks", space), {
        "project": name, "environment": env, "title": title, "ref": ref, "servers": chosen})
    show_task(created, output)


def _act(space: str, task_id: int, action: str, body: dict[str, Any] | None,
         output: Format) -> None:
    show_task(client.connect().post(path("/spaces/{}/tasks/{}/" + action, space, task_id),
                                    body), output)


@reporting_errors
def approve(space: Space, task_id: TaskId,
            comment: Annotated[str, typer.Option(help="a note for the record")] = "",
            output: OutputOption = Format.table) -> None:
    """Approve a task waiting for approval (MASTER+, not your own)."""
    _act(space, task_id, "approve", {"comment": comment}, output)


@reporting_errors
def reject(space: Space, task_id: TaskId,
           reason: Annotated[str, typer.Option(help="why", show_default=False)],
           output: OutputOption = Format.table) -> None:
    """Reject a task waiting for approval (MASTER+)."""
    _act(space, task_id, "reject", {"reason": reason}, output)


@reporting_errors
def cancel(space: Space, task_id: TaskId, output: OutputOption = Format.table) -> None:
    """Cancel a task that has not started, or ask a running one to stop."""
    _act(space, task_id, "cancel", None, output)


@reporting_errors
def start(space: Space, task_id: TaskId, output: OutputOption = Format.table) -> None:
    """Queue an approved task for deployment."""
    _act(space, task_id, "start", None, output)


@reporting_errors
def audit(space: Space,
          action: Annotated[str | None, typer.Option(help="e.g. task.approve")] = None,
          actor: Annotated[str | None, typer.Option(help="username")] = None,
          limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
          cursor: Annotated[int | None, typer.Option(help="from a previous page")] = None,
          output: OutputOption = Format.table) -> None:
    """Read a space's audit log, newest first (OWNER); SPACE '*' reads the events that
    belong to no space: logins, users, tokens, spaces (SUPER)."""
    route = "/audit" if space == "*" else path("/spaces/{}/audit", space)
    page = client.connect().get(route, action=action, actor=actor, limit=limit, cursor=cursor)

    def render(page: dict[str, Any]) -> None:
        table(page["items"], [
            ("ID", "id"), ("WHEN", lambda e: when(e["created_at"])), ("ACTOR", "actor"),
            ("ACTION", "action"), ("OBJECT", lambda e: f"{e['object_type']} "
                                                       f"{text(e['object_id'])}"),
            ("FROM", "address")], empty="no events")
        if page["next_cursor"] is not None:
            note(f"[dim]more: add --cursor {page['next_cursor']}[/]")

    show(page, output, render)


# -- configuration as code ------------------------------------------------------------------


@reporting_errors
def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="e.g. shipyard.yaml",
                                       show_default=False)],
    dry_run: Annotated[bool, typer.Option(help="show what would change, change nothing")]
    = False,
    update_secrets: Annotated[bool, typer.Option(
        help="re-send token/password secrets (they cannot be compared)")] = False,
    output: OutputOption = Format.table,
) -> None:
    """Create or update a space's environments, credentials, servers, projects and
    targets from a YAML file, idempotently. Nothing is ever deleted."""
    result = applying.apply_file(client.connect(), file, dry_run=dry_run,
                                 update_secrets=update_secrets)

    def render(r: dict[str, Any]) -> None:
        table(r["changes"], [("KIND", "kind"), ("NAME", "name"), ("ACTION", "action"),
                             ("CHANGED", "fields")])
        counts = {a: sum(c["action"] == a for c in r["changes"])
                  for a in ("created", "updated", "unchanged")}
        summary = ", ".join(f"{n} {a}" for a, n in counts.items())
        note(f"{'dry run, nothing changed: ' if r['dry_run'] else ''}{summary}")

    show(result, output, render)


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``shipyard`` app."""
    for command in (login, logout, whoami, servers, projects, targets, tasks, task, submit,
                    approve, reject, cancel, start, audit, apply):
        app.command(rich_help_panel="Client")(command)
    app.add_typer(spaces, name="spaces", rich_help_panel="Client")
    app.add_typer(envs, name="envs", rich_help_panel="Client")
    app.add_typer(tokens, name="tokens", rich_help_panel="Client")

