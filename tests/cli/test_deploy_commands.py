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


def test_branches_tags_and_commits_use_the_projects_default_branch(factory, client,
                                                                   monkeypatch, tmp_path):
    from tests.factories import git

    cli = connected_cli(factory, client, monkeypatch, tmp_path)
    factory.space("acme", {"lead": "master", "viewer": "reporter"})
    repo = factory.repo("trunkrepo", branch="trunk")
    commit(repo, {"a.txt": "a"}, message="add a")
    git(repo, "tag", "v1.0")
    git(repo, "checkout", "-q", "-b", "feature")
    commit(repo, {"b.txt": "b"}, message="feature work")
    factory.api("lead", "POST", "/spaces/acme/projects", expect=201,
                json={"name": "app", "repo": str(repo), "default_branch": "trunk"})
    names = {b["name"] for b in cli.json("branches", "acme/app", user="viewer")}
    assert names == {"trunk", "feature"}
    assert [t["name"] for t in cli.json("tags", "acme/app", user="viewer")] == ["v1.0"]
    default = cli.json("commits", "acme/app", user="viewer")
    assert [c["message"] for c in default] == ["add a", "first commit"]  # trunk, not master
    feature = cli.json("commits", "acme/app", "--ref", "feature", "--limit", "1",
                       user="viewer")
    assert [c["message"] for c in feature] == ["feature work"]
    table = cli("commits", "acme/app", user="viewer").stdout
    assert "add a" in table and default[0]["short_sha"] in table
