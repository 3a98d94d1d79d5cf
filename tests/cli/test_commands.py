"""The client commands, run through the real ``shipyard`` app against the real API and
database: the CLI's HTTP client is the app's TestClient (the seam is
``shipyard.cli.client.make_http``), so nothing of ours is faked."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from shipyard.auth.tokens import TOKEN_PREFIX
from shipyard.cli import client as client_module
from shipyard.cli.main import app
from tests.factories import PASSWORD, Factory


class Cli:
    """``cli("spaces", user="ada")`` runs ``shipyard spaces`` as ada (through
    SHIPYARD_URL/SHIPYARD_TOKEN) and checks the exit code; ``user=None`` uses whatever
    login is stored."""

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        self.runner = CliRunner()

    def __call__(self, *args: object, user: str | None = None, input: str | None = None,
                 expect: int = 0) -> Result:
        env: dict[str, str | None] = {"COLUMNS": "200", "SHIPYARD_URL": None,
                                      "SHIPYARD_TOKEN": None}
        if user:
            env |= {"SHIPYARD_URL": "http://shipyard.test",
                    "SHIPYARD_TOKEN": self.factory.user(user)}
        result = self.runner.invoke(app, [str(a) for a in args], input=input, env=env)
        assert result.exit_code == expect, (
            f"exit {result.exit_code}, wanted {expect}\nstdout: {result.stdout}\n"
            f"stderr: {result.stderr}\nexception: {result.exception!r}")
        return result

    def json(self, *args: object, user: str | None = None, **kwargs: Any) -> Any:
        return json.loads(self(*args, "-o", "json", user=user, **kwargs).stdout)


def connected_cli(factory: Factory, client: Any, monkeypatch: pytest.MonkeyPatch,
                  tmp_path: Path) -> Cli:
    """The CLI talking to the test app, with its login file in ``tmp_path/config``."""
    monkeypatch.setattr(client_module, "make_http", lambda url: client)
    monkeypatch.setenv("SHIPYARD_CLI_CONFIG", str(tmp_path / "config" / "cli.json"))
    return Cli(factory)


@pytest.fixture
def cli(factory: Factory, client: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Cli:
    return connected_cli(factory, client, monkeypatch, tmp_path)


def rows(result: Result) -> list[list[str]]:
    """A Rich table's body rows, split into cells."""
    out = []
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) > 1 and not line.lstrip().startswith(("┏", "┡", "└", "┃")):
            out.append(cells)
    return out


def column(result: Result, index: int) -> Sequence[str]:
    return [r[index] for r in rows(result)]


# -- logging in ---------------------------------------------------------------------------


def test_login_stores_the_token_in_a_private_file_and_whoami_uses_it(cli, factory, tmp_path):
    factory.space("web", {"ada": "developer"})  # only members of a space may log in
    result = cli("login", "--url", "http://shipyard.test/", "--username", "ada",
                 input=f"{PASSWORD}\n")
    assert PASSWORD not in result.output
    config = tmp_path / "config" / "cli.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    stored = json.loads(config.read_text())
    assert stored["url"] == "http://shipyard.test"
    assert stored["username"] == "ada"
    assert stored["token"].startswith(TOKEN_PREFIX)
    assert factory.client.get("/api/v1/me", headers={
        "Authorization": f"Bearer {stored['token']}"}).json()["user"]["username"] == "ada"

    assert cli.json("whoami")["user"]["username"] == "ada"
    assert "ada" in cli("whoami").stdout


def test_login_with_a_wrong_password_fails_clearly_and_stores_nothing(cli, factory, tmp_path):
    factory.space("web", {"ada": "developer"})
    result = cli("login", "--url", "http://shipyard.test", "-u", "ada", input="wrong\n",
                 expect=1)
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "config" / "cli.json").exists()


def test_logout_revokes_the_token_on_the_server_and_forgets_it(cli, factory, tmp_path):
    factory.space("web", {"ada": "developer"})
    cli("login", "--url", "http://shipyard.test", "-u", "ada", input=f"{PASSWORD}\n")
    config = tmp_path / "config" / "cli.json"
    token = json.loads(config.read_text())["token"]

    assert cli.json("logout") == {"logged_out": True, "token_revoked": True}
    assert not config.exists()
    assert factory.client.get("/api/v1/me", headers={
        "Authorization": f"Bearer {token}"}).status_code == 401
    cli("whoami", expect=1)


def test_a_command_without_a_login_says_how_to_log_in(cli):
    result = cli("spaces", expect=1)
    assert "shipyard login" in result.stderr
    assert result.stdout == ""


def test_an_unreachable_server_is_one_clear_line_and_exit_code_1(monkeypatch, tmp_path):
    # The real httpx client, and a port nobody listens on.
    monkeypatch.setenv("SHIPYARD_CLI_CONFIG", str(tmp_path / "cli.json"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SHIPYARD_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SHIPYARD_TOKEN", "shp_whatever")
    result = CliRunner().invoke(app, ["spaces"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach the Shipyard server at "
                                    f"http://127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_tokens_are_created_once_listed_and_revoked(cli, factory):
    new = cli("tokens", "create", "ci-bot", user="ada").stdout.strip()
    assert factory.client.get("/api/v1/me", headers={
        "Authorization": f"Bearer {new}"}).status_code == 200
    listed = cli.json("tokens", user="ada")
    assert sorted(t["name"] for t in listed) == ["ci-bot", "test"]
    assert all("token" not in t for t in listed)
    bot = next(t for t in listed if t["name"] == "ci-bot")

    assert cli.json("tokens", "revoke", bot["id"], user="ada")["revoked_at"]
    assert factory.client.get("/api/v1/me", headers={
        "Authorization": f"Bearer {new}"}).status_code == 401


# -- listing ------------------------------------------------------------------------------


def test_spaces_lists_only_your_spaces_with_your_role(cli, factory):
    factory.world()
    table = cli("spaces", user="developer")
    assert rows(table) == [["acme", "", "developer"]]
    assert cli.json("spaces", user="developer") == [
        {"name": "acme", "display_name": "", "role": "developer"}]
    assert [s["name"] for s in cli.json("spaces", user="root")] == ["acme", "other"]


def test_inventory_lists_in_table_and_json(cli, factory):
    factory.world()
    assert column(cli("envs", "acme", user="reporter"), 0) == ["test", "prod"]
    assert cli.json("envs", "acme", user="reporter") == [
        {"name": "test", "position": 0}, {"name": "prod", "position": 10}]

    servers = cli("servers", "acme", user="reporter")
    assert rows(servers)[0][:5] == ["web-1", "127.0.0.2", "22", "root", "web"]
    assert [s["name"] for s in cli.json("servers", "acme", "--label", "web",
                                        user="reporter")] == ["web-1", "web-2"]
    assert cli.json("servers", "acme", "--label", "db", user="reporter") == []

    assert column(cli("projects", "acme", user="reporter"), 0) == ["shop"]
    target, = cli.json("targets", "acme/shop", user="reporter")
    assert (target["environment"], target["labels"]) == ("test", ["web"])
    assert rows(cli("targets", "acme/shop", user="reporter"))[0][:2] == ["test", "-"]


def test_spaces_and_environments_can_be_created(cli, factory):
    factory.user("root", is_super=True)
    factory.user("ola")
    created = cli.json("spaces", "create", "web", "--owner", "ola", user="root")
    assert created["name"] == "web"
    assert cli.json("envs", "create", "web", "staging", user="ola") == {
        "name": "staging", "position": 0}
    assert cli.json("spaces", user="ola") == [
        {"name": "web", "display_name": "", "role": "owner"}]


# -- errors -------------------------------------------------------------------------------


def test_a_refusal_is_one_line_on_stderr_and_exit_code_1(cli, factory):
    factory.world()
    result = cli("spaces", "create", "mine", user="developer", expect=1)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_input_exits_with_code_2_and_names_the_field(cli, factory):
    factory.world()
    result = cli("envs", "create", "acme", "Not A Slug", user="owner", expect=2)
    assert result.stderr.startswith("error: name")


def test_a_missing_object_is_reported_by_the_server_message(cli, factory):
    factory.world()
    assert "no task 999" in cli("task", "acme", 999, user="reporter", expect=1).stderr


def test_a_malformed_project_path_is_a_usage_error(cli, factory):
    factory.world()
    assert "SPACE/PROJECT" in cli("targets", "acme", user="reporter", expect=2).output


# -- deploy tasks -------------------------------------------------------------------------


@pytest.fixture
def no_runner(runtime: Any) -> None:
    """Started tasks stay queued: these tests are about the CLI, not the deploy engine."""
    runtime.dispatcher.shutdown()
    runtime.dispatcher = None


def test_submit_approve_and_start_through_the_cli(cli, factory, no_runner):
    factory.world(approvals=1)
    task = cli.json("submit", "acme/shop", "--env", "test", "--title", "ship it",
                    "--ref", "main", user="submitter")
    assert (task["state"], task["title"], task["ref"]) == ("pending_approval", "ship it",
                                                           "main")
    assert len(task["commit"]) == 40

    refused = cli("approve", "acme", task["id"], user="submitter", expect=1)
    assert "task.approve" in refused.stderr  # a developer may not approve
    approved = cli.json("approve", "acme", task["id"], "--comment", "lgtm", user="master")
    assert approved["state"] == "approved"
    assert [(a["user"], a["comment"]) for a in approved["approvals"]] == [("master", "lgtm")]

    assert "queued" in cli("start", "acme", task["id"], user="submitter").stdout
    assert cli.json("task", "acme", task["id"], user="reporter")["state"] == "queued"
    events = cli.json("audit", "acme", "--action", "task.approve", user="owner")
    assert [e["actor"] for e in events["items"]] == ["master"]


def test_reject_requires_a_reason_and_shows_it_on_the_task(cli, factory):
    world = factory.world(approvals=1)
    cli("reject", "acme", world.task_id, user="master", expect=2)
    rejected = cli.json("reject", "acme", world.task_id, "--reason", "not on a Friday",
                        user="master")
    assert rejected["state"] == "rejected"
    shown = cli("task", "acme", world.task_id, user="reporter").stdout
    assert "not on a Friday" in shown and "rejected" in shown


def test_a_submitter_cancels_their_own_task(cli, factory):
    world = factory.world(approvals=1)
    assert cli.json("cancel", "acme", world.task_id, user="submitter")["state"] == "cancelled"
    assert "cancelled" in cli("cancel", "acme", world.task_id, user="submitter",
                              expect=1).stderr


def test_tasks_are_listed_a_page_at_a_time_with_a_cursor_hint(cli, factory):
    world = factory.world(approvals=1)
    for title in ("second", "third"):
        cli("submit", "acme/shop", "--env", "test", "--title", title, user="submitter")
    first = cli("tasks", "acme", "--limit", "2", user="reporter")
    assert column(first, 4) == ["third", "second"]
    page = cli.json("tasks", "acme", "--limit", "2", user="reporter")
    assert f"--cursor {page['next_cursor']}" in first.stderr
    rest = cli.json("tasks", "acme", "--limit", "2", "--cursor", page["next_cursor"],
                    user="reporter")
    assert ([t["id"] for t in rest["items"]], rest["next_cursor"]) == ([world.task_id], None)
    mine = cli.json("tasks", "acme", "--user", "submitter", "--state", "pending_approval",
                    user="reporter")
    assert len(mine["items"]) == 3
