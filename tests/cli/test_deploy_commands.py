"""`shipyard deploy/releases/rollback/check/logs` through the real CLI, API, database and
sshd fleet."""

from __future__ import annotations

import os

from tests.cli.test_commands import connected_cli
from tests.factories import commit


def test_deploy_wait_then_releases_rollback_and_logs(factory, client, monkeypatch, tmp_path,
                                                     fleet):
    cli = connected_cli(factory, client, monkeypatch, tmp_path)
    world = factory.deploy_world(list(fleet)[:2],
                                 target={"hooks": {"post_release": "echo live on $SERVER"}})
    project = f"ops/{world.project}"

    first = cli.json("deploy", project, "--env", "test", "--ref", "main", "--wait", user="dev")
    assert first["state"] == "succeeded"
    commit(world.repo, {"index.html": "<h1>v2</h1>\n"})
    second = cli.json("deploy", project, "--env", "test", "--wait", user="dev")
    assert second["state"] == "succeeded" and second["release"] != first["release"]

    report = cli.json("releases", project, "--env", "test", user="viewer")
    assert [r["id"] for r in report["releases"]] == [second["release"], first["release"]]
    assert set(report["live"].values()) == {second["release"]}

    # Without --to: back to the release before the live one.
    back = cli.json("rollback", project, "--env", "test", "--wait", user="dev")
    assert back["state"] == "succeeded" and back["kind"] == "rollback"
    for host in world.hosts:
        assert os.readlink(world.path_on(host, world.webroot)).endswith(first["release"])

    lines = cli("logs", f"ops/{back['id']}", user="viewer").stdout
    assert f"live on {world.hosts[0].name}" in lines

    assert cli.json("check", project, "--env", "test", user="lead")["ok"] is True


def test_deploy_wait_exits_non_zero_and_shows_the_failing_host(factory, client, monkeypatch,
                                                               tmp_path, fleet):
    cli = connected_cli(factory, client, monkeypatch, tmp_path)
    world = factory.deploy_world(list(fleet)[:1],
                                 target={"hooks": {"prev_release": "echo broken >&2; exit 7"}})
    result = cli("deploy", f"ops/{world.project}", "--env", "test", "--wait", user="dev",
                 expect=1)
    assert "prev_release" in result.stderr and "broken" in result.stderr
    assert "failed" in result.stderr
