"""Deploying from the command line: ``deploy``, ``rollback``, ``releases``, ``check``,
``logs``, ``retry`` and ``continue``.

``--wait`` follows a task to its end with a progress bar per host (and the build), prints
each host's failure, and exits non-zero unless the task succeeded, so CI jobs can gate on
it. ``logs -f`` follows the output lines as they are written."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shipyard.cli import client
from shipyard.cli.client import ApiClient, path
from shipyard.cli.client_commands import ProjectPath, project_of, show_task
from shipyard.cli.output import (
    Format,
    OutputOption,
    note,
    reporting_errors,
    show,
    stderr,
    stdout,
    table,
    when,
)
from shipyard.errors import InvalidInput, ShipyardError

FINAL = {"succeeded", "failed", "cancelled", "interrupted", "rejected"}
POLL = 0.5
Env = Annotated[str, typer.Option("--env", help="target environment", show_default=False)]
Wait = Annotated[bool, typer.Option("--wait", help="follow the task to its end; exit 1 unless "
                                                   "it succeeded")]
Timeout = Annotated[float, typer.Option(help="give up waiting after this many seconds")]


def task_ref(value: str) -> tuple[str, int]:
    """``SPACE/ID`` -> (space, id)."""
    space, _, number = value.partition("/")
    if not space or not number.isdigit():
        raise InvalidInput(f"{value!r} is not SPACE/ID, e.g. web-team/42", field="task")
    return space, int(number)


@reporting_errors
def deploy(project: ProjectPath, env: Env,
           ref: Annotated[str | None, typer.Option(
               help="branch, tag or commit (default: the project's default branch)")] = None,
           servers: Annotated[str | None, typer.Option(
               help="comma-separated subset of the target's servers (gray release)")] = None,
           title: Annotated[str | None, typer.Option(help="what this deploy is")] = None,
           wait: Wait = False, logs: Annotated[bool, typer.Option(
               help="with --wait, print the output lines too")] = False,
           timeout: Timeout = 3600, output: OutputOption = Format.table) -> None:
    """Submit a deploy and start it when it needs no approval (else wait for one)."""
    space, name = project_of(project)
    api = client.connect()
    chosen = [s.strip() for s in servers.split(",") if s.strip()] if servers else None
    task = api.post(path("/spaces/{}/tasks", space), {
        "project": name, "environment": env, "title": title or f"Deploy {ref or 'default'}",
        "ref": ref, "servers": chosen})
    _start_and_follow(api, space, task, wait=wait, logs=logs, timeout=timeout, output=output)


@reporting_errors
def rollback(project: ProjectPath, env: Env,
             to: Annotated[str | None, typer.Option(
                 "--to", help="release id (default: the one before the live release)")] = None,
             servers: Annotated[str | None, typer.Option(
                 help="comma-separated subset of servers")] = None,
             wait: Wait = False, timeout: Timeout = 3600,
             output: OutputOption = Format.table) -> None:
    """Switch a target back to a kept release (no rebuild) and run the release hooks."""
    space, name = project_of(project)
    api = client.connect()
    release = to or _previous_release(api, space, name, env)
    chosen = [s.strip() for s in servers.split(",") if s.strip()] if servers else None
    task = api.post(path("/spaces/{}/projects/{}/targets/{}/rollback", space, name, env),
                    {"release": release, "servers": chosen})
    _start_and_follow(api, space, task, wait=wait, logs=False, timeout=timeout, output=output)


def _previous_release(api: ApiClient, space: str, project: str, env: str) -> str:
    report = api.get(path("/spaces/{}/projects/{}/targets/{}/releases", space, project, env))
    live = {r for r in report["live"].values() if r}
    if len(live) != 1:
        raise InvalidInput("the servers do not agree on a live release; name one with --to",
                           field="to")
    ids = [r["id"] for r in report["releases"]]  # newest first
    current = ids.index(live.pop())
    if current + 1 >= len(ids):
        raise InvalidInput("there is no older release to roll back to", field="to")
    return str(ids[current + 1])


def _start_and_follow(api: ApiClient, space: str, task: dict[str, Any], *, wait: bool,
                      logs: bool, timeout: float, output: Format) -> None:
    deadline = time.monotonic() + timeout
    if task["state"] == "pending_approval":
        if not wait:
            show_task(task, output)
            note(f"task {task['id']} waits for approval; then start it with "
                 f"`shipyard start {space} {task['id']}`")
            return
        note(f"task {task['id']} waits for approval…")
        while task["state"] == "pending_approval" and time.monotonic() < deadline:
            time.sleep(POLL * 2)
            task = api.get(path("/spaces/{}/tasks/{}", space, task["id"]))
    if task["state"] == "approved":
        task = api.post(path("/spaces/{}/tasks/{}/start", space, task["id"]))
    if not wait:
        show_task(task, output)
        return
    final = follow(api, space, task["id"], logs=logs, deadline=deadline,
                   quiet=output is Format.json)
    if output is Format.json:
        show(final, output, lambda _: None)
    if final["state"] != "succeeded":
        raise typer.Exit(1)


def follow(api: ApiClient, space: str, task_id: int, *, logs: bool, deadline: float,
           quiet: bool = False) -> dict[str, Any]:
    """Poll a task until it ends, drawing per-host progress; return the final task."""
    after = 0
    bars: dict[str, Any] = {}
    console = stderr()
    with Progress(TextColumn("{task.fields[host]:<16}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[stage]}"), TimeElapsedColumn(), console=console,
                  disable=quiet, transient=False) as progress:
        while True:
            task = api.get(path("/spaces/{}/tasks/{}", space, task_id))
            steps = api.get(path("/spaces/{}/tasks/{}/steps", space, task_id))
            _draw(progress, bars, steps)
            if logs:
                for line in api.get(path("/spaces/{}/tasks/{}/logs", space, task_id),
                                    after=after, limit=5000):
                    after = line["seq"]
                    progress.console.print(_format_line(line), markup=False,
                                           highlight=False)
            if task["state"] in FINAL:
                break
            if time.monotonic() > deadline:
                raise ShipyardError(f"task {task_id} is still {task['state']}; stopped "
                                    "waiting (it goes on)")
            time.sleep(POLL)
    _summary(task, steps, quiet)
    return dict(task)


def _draw(progress: Progress, bars: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    by_host: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        by_host.setdefault(step["host"] or "build", []).append(step)
    for host, rows in by_host.items():
        done = sum(1 for r in rows if r["status"] not in ("pending", "running"))
        running = [r["stage"] for r in rows if r["status"] == "running"]
        failed = [r["stage"] for r in rows if r["status"] == "failed"]
        label = (f"[red]failed at {failed[0]}[/]" if failed else
                 running[0] if running else ("done" if done == len(rows) else "waiting"))
        if host not in bars:
            bars[host] = progress.add_task("", total=len(rows), host=host, stage=label)
        progress.update(bars[host], completed=done, stage=label)


def _summary(task: dict[str, Any], steps: list[dict[str, Any]], quiet: bool) -> None:
    if quiet:
        return
    console = stderr()
    for step in steps:
        if step["status"] == "failed":
            console.print(f"[red]{step['host'] or 'build'} · {step['stage']}[/] "
                          f"(exit {step['exit_code']}):", highlight=False)
            console.print(step["output_tail"].rstrip()[-2000:], markup=False,
                          highlight=False)
    colour = "green" if task["state"] == "succeeded" else "red"
    console.print(f"[{colour}]task {task['id']} {task['state']}[/]"
                  + (f": {task['error']}" if task.get("error") else "")
                  + (f" · release {task['release']}" if task.get("release") else ""),
                  highlight=False)


def _format_line(line: dict[str, Any]) -> str:
    host = line["host"] or "build"
    mark = {"stderr": "!", "system": "*"}.get(line["stream"], " ")
    return f"{host:<12} {mark} {line['line']}"


@reporting_errors
def logs(task: Annotated[str, typer.Argument(metavar="SPACE/ID", show_default=False)],
         follow_: Annotated[bool, typer.Option("-f", "--follow",
                                               help="keep printing until the task ends")] = False,
         host: Annotated[str | None, typer.Option(help="only this host's lines")] = None,
         after: Annotated[int, typer.Option(help="start after this line number")] = 0) -> None:
    """Print a task's output lines (host, stream mark, text); ``-f`` follows them live."""
    space, task_id = task_ref(task)
    api = client.connect()
    out = stdout()
    while True:
        params: dict[str, Any] = {"after": after, "limit": 5000}
        if host:
            params["host"] = host
        lines = api.get(path("/spaces/{}/tasks/{}/logs", space, task_id), **params)
        for line in lines:
            after = line["seq"]
            out.print(_format_line(line), markup=False, highlight=False, soft_wrap=True)
        if lines:
            continue
        if not follow_ or api.get(path("/spaces/{}/tasks/{}", space, task_id))["state"] \
                in FINAL:
            # One more look: lines written just before the task ended.
            if not follow_ or not api.get(path("/spaces/{}/tasks/{}/logs", space, task_id),
                                          after=after, limit=1):
                return
            continue
        time.sleep(POLL)


@reporting_errors
def releases(project: ProjectPath, env: Env, output: OutputOption = Format.table) -> None:
    """Releases kept on the target's servers, which is live where, commit, task and who."""
    space, name = project_of(project)
    report = client.connect().get(path("/spaces/{}/projects/{}/targets/{}/releases", space,
                                       name, env))

    def render(data: dict[str, Any]) -> None:
        table(data["releases"], [
            ("release", lambda r: r["id"]), ("commit", lambda r: (r["commit"] or "")[:10]),
            ("task", lambda r: r["task_id"] or ""), ("by", lambda r: r["deployed_by"] or ""),
            ("when", lambda r: when(r["created_at"])),
            ("live on", lambda r: ", ".join(r["live_on"])),
            ("hosts", lambda r: f"{len(r['hosts'])}/{len(data['live']) or len(r['hosts'])}")])
        if data["hosts_disagree"]:
            note("the servers disagree on the live release: "
                 + ", ".join(f"{h}={v}" for h, v in data["live"].items()))
        for host, error in data["errors"].items():
            stderr().print(f"[red]{host}[/]: {error}", highlight=False)

    show(report, output, render)


@reporting_errors
def check(project: ProjectPath, env: Env, output: OutputOption = Format.table) -> None:
    """Check a target before deploying: SSH and host key, releases dir, webroot, disk, git."""
    space, name = project_of(project)
    report = client.connect().post(path("/spaces/{}/projects/{}/targets/{}/check", space,
                                        name, env))

    def render(data: dict[str, Any]) -> None:
        rows = [{"host": "(build host)", **data["git"]}]
        for host in data["hosts"]:
            rows += [{"host": host["host"], **c} for c in host["checks"]]
        table(rows, [("host", lambda r: r["host"]), ("check", lambda r: r["name"]),
                     ("ok", lambda r: "✓" if r["ok"] else "✗"),
                     ("detail", lambda r: r["detail"])])

    show(report, output, render)
    if not report["ok"]:
        raise typer.Exit(1)


@reporting_errors
def retry(task: Annotated[str, typer.Argument(metavar="SPACE/ID", show_default=False)],
          wait: Wait = False, timeout: Timeout = 3600,
          output: OutputOption = Format.table) -> None:
    """Redeploy a failed or interrupted task's commit to only the hosts that did not finish."""
    _follow_up(task, "retry", wait, timeout, output)


@reporting_errors
def continue_(task: Annotated[str, typer.Argument(metavar="SPACE/ID", show_default=False)],
              wait: Wait = False, timeout: Timeout = 3600,
              output: OutputOption = Format.table) -> None:
    """After a gray release: the same build to the target's remaining servers."""
    _follow_up(task, "continue", wait, timeout, output)


def _follow_up(task: str, which: str, wait: bool, timeout: float, output: Format) -> None:
    space, task_id = task_ref(task)
    api = client.connect()
    created = api.post(path("/spaces/{}/tasks/{}/" + which, space, task_id))
    _start_and_follow(api, space, created, wait=wait, logs=False, timeout=timeout,
                      output=output)


@reporting_errors
def branches(project: ProjectPath, output: OutputOption = Format.table) -> None:
    """Branches of the project's repository (fetched now), newest first."""
    _refs(project, "branches", output)


@reporting_errors
def tags(project: ProjectPath, output: OutputOption = Format.table) -> None:
    """Tags of the project's repository (fetched now), newest first."""
    _refs(project, "tags", output)


def _refs(project: str, kind: str, output: Format) -> None:
    space, name = project_of(project)
    refs = client.connect().get(path("/spaces/{}/projects/{}/" + kind, space, name))
    show(refs, output, lambda items: table(items, [
        ("name", lambda r: r["name"]), ("commit", lambda r: r["sha"][:10]),
        ("date", lambda r: when(r["date"]))]))


@reporting_errors
def commits(project: ProjectPath,
            ref: Annotated[str | None, typer.Option(
                help="branch, tag or commit (default: the project's default branch)")] = None,
            limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
            output: OutputOption = Format.table) -> None:
    """Recent commits of a ref: short SHA, author, date, message."""
    space, name = project_of(project)
    params: dict[str, Any] = {"limit": limit}
    if ref:
        params["ref"] = ref
    found = client.connect().get(path("/spaces/{}/projects/{}/commits", space, name), **params)
    show(found, output, lambda items: table(items, [
        ("commit", lambda c: c["short_sha"]), ("author", lambda c: c["author"]),
        ("date", lambda c: when(c["date"])), ("message", lambda c: c["message"])]))


def register(app: typer.Typer) -> None:
    for command in (deploy, rollback, releases, check, logs, retry, branches, tags, commits):
        app.command(rich_help_panel="Deploy")(command)
    app.command("continue", rich_help_panel="Deploy")(continue_)
