"""``shipyard apply``: a space's setup from a YAML file, created once, then left alone,
then patched field by field; never half-applied from an invalid file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from shipyard.services.credentials import describe_ssh_key
from tests.cli.test_commands import Cli, connected_cli, rows
from tests.factories import Factory

EXAMPLE = Path(__file__).parents[2] / "examples" / "shipyard.yaml"


def ssh_key() -> str:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()


@pytest.fixture
def cli(factory: Factory, client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    return connected_cli(factory, client, monkeypatch, tmp_path)


@pytest.fixture
def setup(factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Space ``web`` with OWNER ``ola``, a deploy key on disk, a git token in the
    environment, and the file content that describes the rest."""
    factory.space("web", {"ola": "owner"})
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "deploy").write_text(ssh_key())
    monkeypatch.setenv("GIT_TOKEN", "token-one")
    repo = str(factory.repo("shop"))
    return {
        "space": "web",
        "environments": ["test", "prod"],
        "credentials": {
            "deploy-key": {"type": "ssh_key", "private_key_file": "keys/deploy"},
            "git-token": {"type": "token", "username": "ci", "secret_env": "GIT_TOKEN"},
        },
        "servers": [
            {"name": "web-1", "host": "10.0.0.11", "user": "www", "credential": "deploy-key",
             "labels": ["web"]},
            {"name": "web-2", "host": "10.0.0.12", "user": "www", "credential": "deploy-key",
             "labels": ["web", "blue"]},
        ],
        "projects": [{
            "name": "shop", "repo": repo, "default_branch": "main", "credential": "git-token",
            "excludes": [".git"], "variables": {"NODE_ENV": "production"},
            "hooks": {"post_deploy": "make build"},
            "targets": [
                {"environment": "test", "servers": ["web-2", "web-1"],
                 "webroot": "/srv/www/shop", "releases": "/srv/releases/shop"},
                {"environment": "prod", "labels": ["web"], "webroot": "/srv/www/shop",
                 "releases": "/srv/releases/shop", "keep": 8,
                 "strategy": {"batch": 1, "pause": "10s"}, "approval": {"required": 1}},
            ],
        }],
    }


def write(tmp_path: Path, content: dict[str, Any]) -> Path:
    file = tmp_path / "shipyard.yaml"
    file.write_text(yaml.safe_dump(content, sort_keys=False))
    return file


def actions(result: dict[str, Any]) -> dict[tuple[str, str], tuple[str, list[str]]]:
    return {(c["kind"], c["name"]): (c["action"], c["fields"]) for c in result["changes"]}


def space_is_empty(factory: Factory) -> bool:
    base = "/spaces/web"
    return not any([factory.api("ola", "GET", f"{base}/environments"),
                    factory.api("ola", "GET", f"{base}/credentials"),
                    factory.api("ola", "GET", f"{base}/servers")["items"],
                    factory.api("ola", "GET", f"{base}/projects")])


def test_first_apply_creates_everything_and_a_second_changes_nothing(cli, factory, setup,
                                                                     tmp_path):
    file = write(tmp_path, setup)
    first = cli.json("apply", "-f", file, user="ola")
    assert {a for a, _ in actions(first).values()} == {"created"}
    assert list(actions(first)) == [
        ("environment", "test"), ("environment", "prod"), ("credential", "deploy-key"),
        ("credential", "git-token"), ("server", "web-1"), ("server", "web-2"),
        ("project", "shop"), ("target", "shop/test"), ("target", "shop/prod")]

    prod = factory.api("ola", "GET", "/spaces/web/projects/shop/targets/prod")
    assert prod["strategy"]["pause"] == 10.0 and prod["approval"]["required"] == 1
    key = factory.api("ola", "GET", "/spaces/web/credentials/deploy-key")
    assert key["fingerprint"] == describe_ssh_key((tmp_path / "keys/deploy").read_text())[1]
    assert [e["position"] for e in factory.api("ola", "GET", "/spaces/web/environments")] \
        == [0, 10]

    second = cli("apply", "-f", file, user="ola")
    assert {a for a, _ in actions(cli.json("apply", "-f", file, user="ola")).values()} \
        == {"unchanged"}
    assert "0 created, 0 updated, 9 unchanged" in second.stderr


def test_apply_patches_exactly_the_fields_that_changed(cli, factory, setup, tmp_path):
    cli("apply", "-f", write(tmp_path, setup), user="ola")
    edited = copy.deepcopy(setup)
    edited["environments"] = ["dev", "test", "prod"]
    edited["servers"][1]["port"] = 2222
    edited["servers"][1]["labels"] = ["blue", "web"]          # same set: no change
    shop = edited["projects"][0]
    shop["variables"]["NODE_ENV"] = "staging"
    shop["targets"][0]["servers"] = ["web-1", "web-2"]        # same set: no change
    shop["targets"][1]["strategy"]["pause"] = 10              # 10s == 10: no change
    shop["targets"][1]["keep"] = 5
    shop["targets"][1]["hooks"] = {"post_release": "sudo systemctl reload nginx"}

    result = cli.json("apply", "-f", write(tmp_path, edited), user="ola")

    changed = {k: v for k, v in actions(result).items() if v[0] != "unchanged"}
    assert changed == {
        ("environment", "dev"): ("created", []),
        ("environment", "test"): ("updated", ["position"]),
        ("environment", "prod"): ("updated", ["position"]),
        ("server", "web-2"): ("updated", ["port"]),
        ("project", "shop"): ("updated", ["variables"]),
        ("target", "shop/prod"): ("updated", ["keep", "hooks"]),
    }
    prod = factory.api("ola", "GET", "/spaces/web/projects/shop/targets/prod")
    assert (prod["keep"], prod["hooks"]) == (5, {"post_release": "sudo systemctl reload nginx"})
    assert factory.api("ola", "GET", "/spaces/web/servers/web-2")["port"] == 2222
    assert {a for a, _ in actions(cli.json("apply", "-f", write(tmp_path, edited),
                                           user="ola")).values()} == {"unchanged"}


def test_a_dry_run_reports_the_plan_and_changes_nothing(cli, factory, setup, tmp_path):
    result = cli.json("apply", "-f", write(tmp_path, setup), "--dry-run", user="ola")
    assert result["dry_run"] is True
    assert {a for a, _ in actions(result).values()} == {"created"}
    assert space_is_empty(factory)


def test_an_invalid_file_names_every_path_at_fault_and_changes_nothing(cli, factory, setup,
                                                                       tmp_path):
    broken = copy.deepcopy(setup)
    broken["servers"][0]["host"] = "not a host"
    broken["servers"][1]["lables"] = ["web"]
    broken["projects"][0]["targets"][1]["webroot"] = "srv/www/shop"
    broken["projects"][0]["targets"][1]["strategy"]["pause"] = "soon"

    result = cli("apply", "-f", write(tmp_path, broken), user="ola", expect=2)

    assert "4 problems" in result.stderr
    for line in ("servers[0].host: must be a hostname or IP address",
                 "servers[1].lables: unknown field",
                 "projects[0].targets[1].webroot: must be an absolute path",
                 "projects[0].targets[1].strategy.pause: must be a duration"):
        assert line in result.stderr
    assert space_is_empty(factory)


def test_a_reference_to_nothing_fails_before_the_first_write(cli, factory, setup, tmp_path):
    broken = copy.deepcopy(setup)
    broken["projects"][0]["targets"][0]["servers"] = ["web-1", "web-9"]
    broken["servers"][0]["credential"] = "lost-key"

    result = cli("apply", "-f", write(tmp_path, broken), user="ola", expect=2)

    assert "projects[0].targets[0].servers[1]: no server named 'web-9'" in result.stderr
    assert "servers[0].credential: no credential named 'lost-key'" in result.stderr
    assert space_is_empty(factory)


def test_a_missing_space_is_created_only_when_the_file_asks(cli, factory, setup, tmp_path):
    factory.user("root", is_super=True)
    setup["space"] = "new-team"
    refused = cli("apply", "-f", write(tmp_path, setup), user="root", expect=1)
    assert "create_space: true" in refused.stderr

    setup["create_space"] = True
    result = cli.json("apply", "-f", write(tmp_path, setup), user="root")
    assert actions(result)[("space", "new-team")] == ("created", [])
    assert len(factory.api("root", "GET", "/spaces/new-team/servers")["items"]) == 2


def test_an_ssh_key_is_compared_by_fingerprint(cli, factory, setup, tmp_path):
    file = write(tmp_path, setup)
    cli("apply", "-f", file, user="ola")
    (tmp_path / "keys" / "deploy").write_text(ssh_key())

    result = cli.json("apply", "-f", file, user="ola")

    assert actions(result)[("credential", "deploy-key")] == ("updated", ["secret"])
    stored = factory.api("ola", "GET", "/spaces/web/credentials/deploy-key")["fingerprint"]
    assert stored == describe_ssh_key((tmp_path / "keys/deploy").read_text())[1]


def test_a_token_is_resent_only_with_update_secrets(cli, setup, tmp_path, monkeypatch):
    file = write(tmp_path, setup)
    cli("apply", "-f", file, user="ola")
    monkeypatch.setenv("GIT_TOKEN", "token-two")
    assert actions(cli.json("apply", "-f", file, user="ola"))[
        ("credential", "git-token")] == ("unchanged", [])
    assert actions(cli.json("apply", "-f", file, "--update-secrets", user="ola"))[
        ("credential", "git-token")] == ("updated", ["secret"])


def test_a_secret_that_cannot_be_read_is_named_and_nothing_is_written(cli, factory, setup,
                                                                       tmp_path, monkeypatch):
    monkeypatch.delenv("GIT_TOKEN")
    result = cli("apply", "-f", write(tmp_path, setup), user="ola", expect=2)
    assert "credentials.git-token.secret_env: environment variable GIT_TOKEN is not set" \
        in result.stderr
    assert space_is_empty(factory)


def test_yaml_that_does_not_parse_says_where(cli, factory, tmp_path):
    factory.space("web", {"ola": "owner"})
    file = tmp_path / "shipyard.yaml"
    file.write_text("space: web\nservers: [\n")
    assert "line 3" in cli("apply", "-f", file, user="ola", expect=2).stderr


def test_the_summary_table_lists_kind_name_action_and_changed_fields(cli, setup, tmp_path):
    file = write(tmp_path, setup)
    cli("apply", "-f", file, user="ola")
    setup["servers"][0]["user"] = "deploy"
    table = cli("apply", "-f", write(tmp_path, setup), user="ola")
    assert ["server", "web-1", "updated", "user"] in rows(table)
    assert ["project", "shop", "unchanged", "-"] in rows(table)


def test_the_example_applies_cleanly_to_a_fresh_space(cli, factory, tmp_path, monkeypatch):
    factory.space("web-team", {"ola": "owner"})
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(ssh_key())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SHOP_GIT_TOKEN", "t0ken")

    first = cli.json("apply", "-f", EXAMPLE, user="ola")
    assert {a for a, _ in actions(first).values()} == {"created"}
    again = cli.json("apply", "-f", EXAMPLE, user="ola")
    assert {a for a, _ in actions(again).values()} == {"unchanged"}
