"""Building release artifacts: hooks, variables, filters, the cache, against real git repos."""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.deploy.build import (
    BuildCache,
    BuildResult,
    BuildSpec,
    build_key,
    filter_tree,
    validate_patterns,
)
from shipyard.deploy.git import Mirror
from shipyard.errors import BuildError, InvalidInput
from tests.deploy.test_git import Upstream

APP_FILES = {
    "index.php": "<?php echo 'hi';\n",
    "src/app.py": "print('app')\n",
    "src/docs": "a file named docs, not a directory\n",
    "docs/guide.md": "# guide\n",
    "debug.log": "noise\n",
    "src/deep/trace.log": "noise\n",
    "node_modules/left-pad/index.js": "module.exports = 1\n",
    "web/node_modules/x.js": "x\n",
    "storage/logs/app.txt": "old logs\n",
    "storage/cache.txt": "keep\n",
}


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    repo = Upstream(tmp_path / "upstream")
    repo.commit(APP_FILES, "the app")
    return repo


@pytest.fixture
def mirror(tmp_path: Path, upstream: Upstream) -> Mirror:
    mirror = Mirror(tmp_path / "mirrors" / "shop.git", upstream.url, allow_local=True)
    mirror.fetch()
    return mirror


@pytest.fixture
def cache(tmp_path: Path) -> BuildCache:
    return BuildCache(tmp_path / "cache")


@pytest.fixture
def spec(upstream: Upstream) -> BuildSpec:
    return BuildSpec(project_name="shop", sha=upstream.head())


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


# -- building -------------------------------------------------------------------------


def test_a_build_is_the_commits_tree_after_both_hooks_ran_in_order(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec
) -> None:
    spec = replace(
        spec,
        prev_deploy="echo prev >> order.txt; test -f index.php",
        post_deploy="echo post >> order.txt\nmkdir -p dist && cp src/app.py dist/",
    )
    hooks_started: list[str] = []
    result = cache.build(spec, mirror, on_hook=hooks_started.append)

    assert result.cached is False
    assert result.path == cache.builds_dir / result.key
    assert (result.path / "order.txt").read_text() == "prev\npost\n"
    assert (result.path / "dist/app.py").read_text() == APP_FILES["src/app.py"]
    assert _files(result.path) == set(APP_FILES) | {"order.txt", "dist/app.py"}
    assert hooks_started == ["prev_deploy", "post_deploy"]
    assert [(h.name, h.exit_code) for h in result.hooks] == [("prev_deploy", 0), ("post_deploy", 0)]
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o755  # travels to the servers
    assert list(cache.work_dir.iterdir()) == []


def test_hooks_get_variables_in_their_environment_and_never_as_command_text(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec, tmp_path: Path
) -> None:
    hostile = "$(touch pwned) `touch pwned2`; touch pwned3 \"'"
    spec = replace(
        spec,
        variables={"GREETING": hostile, "COMMIT_ID": "spoofed", "NODE_ENV": "production"},
        post_deploy='printf "%s|%s|%s|%s|%s|%s|%s" "$GREETING" "$NODE_ENV" "$COMMIT_ID" '
        '"$PROJECT_NAME" "$TASK_ID" "$BRANCH" "$WORKSPACE" > vars.txt',
    )
    result = cache.build(spec, mirror, task_vars={"TASK_ID": "42", "BRANCH": "trunk"})

    greeting, node_env, commit, project, task, branch, workspace = (
        (result.path / "vars.txt").read_text().split("|")
    )
    assert greeting == hostile
    assert node_env == "production"
    assert commit == spec.sha  # built-ins win over user variables
    assert (project, task, branch) == ("shop", "42", "trunk")
    assert Path(workspace).parent == cache.work_dir  # where the hooks ran
    assert not [p for p in tmp_path.rglob("pwned*")]


def test_hooks_do_not_see_the_servers_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mirror: Mirror, spec: BuildSpec
) -> None:
    monkeypatch.setenv("SHIPYARD_SECRET_KEY", "top-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:top-secret@db/shipyard")
    cache = BuildCache(tmp_path / "cache")
    result = cache.build(replace(spec, post_deploy="env > env.txt"), mirror)
    environment = (result.path / "env.txt").read_text()
    assert "top-secret" not in environment
    assert "PATH=" in environment


def test_every_output_line_reaches_on_line_in_order_and_labelled_by_stream(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec
) -> None:
    lines: list[tuple[str, str]] = []
    spec = replace(
        spec,
        prev_deploy="echo 'to stderr' >&2; printf 'no newline at the end'",
        post_deploy="seq 100000",
    )
    cache.build(spec, mirror, on_line=lambda stream, line: lines.append((stream, line)))

    assert ("stderr", "to stderr") in lines
    assert ("stdout", "no newline at the end") in lines
    assert [line for stream, line in lines[-100000:]] == [str(n) for n in range(1, 100001)]
    assert {stream for stream, _ in lines[-100000:]} == {"stdout"}


def test_a_failing_hook_raises_build_error_with_exit_code_and_output_tail(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec
) -> None:
    spec = replace(spec, post_deploy="echo compiling; echo 'boom: syntax error' >&2; exit 3")
    with pytest.raises(BuildError) as caught:
        cache.build(spec, mirror)
    details = caught.value.details
    assert details["hook"] == "post_deploy"
    assert details["exit_code"] == 3
    assert "compiling\nboom: syntax error" in details["output"]
    assert "post_deploy exited 3" in caught.value.message
    assert cache.get(build_key(spec)) is None
    assert list(cache.work_dir.iterdir()) == []


def test_a_hook_stops_at_its_first_failing_command(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec, tmp_path: Path
) -> None:
    marker = tmp_path / "after-failure"
    spec = replace(spec, prev_deploy=f"false\ntouch {marker}")
    with pytest.raises(BuildError) as caught:
        cache.build(spec, mirror)
    assert caught.value.details["exit_code"] == 1
    assert not marker.exists()


def test_a_hook_that_runs_out_of_time_is_killed_with_its_whole_process_group(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    spec = replace(spec, post_deploy=f"sleep 300 & echo $! > {pid_file}; wait")
    with pytest.raises(BuildError) as caught:
        cache.build(spec, mirror, timeout=1)
    assert caught.value.details["timed_out"] is True
    assert "timed out" in caught.value.message
    assert not _alive(int(pid_file.read_text()))
    assert cache.get(build_key(spec)) is None


def test_background_processes_left_by_a_hook_are_killed_instead_of_hanging_the_build(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    # The orphan keeps the hook's stdout open; the build must still finish (well in time).
    spec = replace(spec, post_deploy=f"sleep 300 & echo $! > {pid_file}; echo done")
    result = cache.build(spec, mirror, timeout=60)
    assert result.hooks[0].output_tail == "done"
    assert not _alive(int(pid_file.read_text()))


def test_an_exception_from_on_line_aborts_the_build_and_kills_the_hook(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec
) -> None:
    def cancel(stream: str, line: str) -> None:
        raise KeyboardInterrupt("cancelled by the user")

    spec = replace(spec, post_deploy="echo started; sleep 300")
    with pytest.raises(KeyboardInterrupt):
        cache.build(spec, mirror, on_line=cancel)
    assert cache.get(build_key(spec)) is None
    assert list(cache.work_dir.iterdir()) == []


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs once a SIGKILL sent to it has had time to take effect.

    A killed process closes its files (which ends our read of its output) a moment before
    it turns into a zombie, so allow it a moment; a zombie counts as dead.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
        except FileNotFoundError:
            return False
        time.sleep(0.01)
    return True


# -- the cache ------------------------------------------------------------------------


def test_a_cached_build_is_reused_without_running_any_hook(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec, tmp_path: Path
) -> None:
    counter = tmp_path / "hook-runs"
    spec = replace(spec, post_deploy=f'echo run >> "{counter}"')
    first = cache.build(spec, mirror, task_vars={"ENV_NAME": "test"})
    again = cache.build(spec, mirror, task_vars={"ENV_NAME": "prod"})

    assert (first.cached, again.cached) == (False, True)
    assert again.path == first.path == cache.get(first.key)
    assert again.hooks == ()
    assert counter.read_text() == "run\n"


def test_concurrent_builds_of_one_commit_run_the_hooks_once(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec, tmp_path: Path
) -> None:
    counter = tmp_path / "hook-runs"
    spec = replace(spec, post_deploy=f'echo run >> "{counter}"')
    start = threading.Barrier(3)
    results: list[BuildResult] = []

    def build() -> None:
        start.wait()
        results.append(BuildCache(cache.root).build(spec, mirror))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.cached for r in results) == [False, True, True]
    assert len({r.path for r in results}) == 1
    assert counter.read_text() == "run\n"


def test_the_key_changes_with_every_part_of_the_build_config(spec: BuildSpec) -> None:
    variants = [
        spec,
        replace(spec, project_name="shop-admin"),
        replace(spec, sha="f" * 40),
        replace(spec, prev_deploy="make prepare"),
        replace(spec, post_deploy="make prepare"),
        replace(spec, excludes=["*.log"]),
        replace(spec, includes=["*.log"]),
        replace(spec, variables={"NODE_ENV": "production"}),
        replace(spec, variables={"NODE_ENV": "staging"}),
    ]
    keys = [build_key(v) for v in variants]
    assert len(set(keys)) == len(variants)
    assert build_key(replace(spec, post_deploy="  \n")) == build_key(spec)
    assert build_key(replace(spec, variables={"A": "1", "B": "2"})) == build_key(
        replace(spec, variables={"B": "2", "A": "1"})
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sha": "abc1234"}, "sha"),
        ({"sha": "--output=x"}, "sha"),
        ({"variables": {"NOT-A-NAME": "x"}}, "variables"),
        ({"variables": {"A": "nul\x00byte"}}, "variables"),
        ({"excludes": ["../etc"]}, "excludes"),
        ({"includes": ["/etc/passwd"]}, "includes"),
    ],
)
def test_a_spec_that_cannot_be_built_is_refused_before_anything_runs(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec, change: dict, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        cache.build(replace(spec, post_deploy="exit 99", **change), mirror)
    assert caught.value.field == field
    assert not cache.root.exists()


def test_prune_keeps_the_most_recently_used_builds_and_those_in_use(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec
) -> None:
    builds = [cache.build(replace(spec, variables={"N": str(n)}), mirror).path for n in range(4)]
    for age, path in enumerate(reversed(builds)):  # builds[3] newest ... builds[0] oldest
        os.utime(path, (1_000_000 - age * 10, 1_000_000 - age * 10))
    (cache.work_dir / f"{builds[2].name}-deadbeef").mkdir()  # left by a crashed build

    with cache.hold(builds[0].name) as held:
        assert held == builds[0]
        removed = cache.prune(keep=2)

    assert sorted(removed) == sorted([builds[1].name])
    assert [b.exists() for b in builds] == [True, False, True, True]
    assert list(cache.work_dir.iterdir()) == []


# -- excludes and includes ------------------------------------------------------------


def test_excludes_remove_matching_names_at_any_depth_and_anchored_paths(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec
) -> None:
    spec = replace(spec, excludes=[".git", "node_modules", "*.log", "docs/", "storage/logs/*"])
    result = cache.build(spec, mirror)
    assert _files(result.path) == {"index.php", "src/app.py", "src/docs", "storage/cache.txt"}
    assert (result.path / "storage/logs").is_dir()  # its content went, the directory stays


def test_includes_keep_only_the_listed_paths_and_excludes_still_apply(
    cache: BuildCache, mirror: Mirror, spec: BuildSpec
) -> None:
    spec = replace(spec, includes=["src/", "index.php", "storage/**/*.txt"], excludes=["*.log"])
    result = cache.build(spec, mirror)
    assert _files(result.path) == {
        "index.php",
        "src/app.py",
        "src/docs",
        "storage/cache.txt",
        "storage/logs/app.txt",
    }
    assert sorted(p.name for p in result.path.iterdir()) == ["index.php", "src", "storage"]


def test_patterns_can_never_reach_outside_the_workspace(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "precious").mkdir(parents=True)
    (outside / "precious/data.txt").write_text("keep me")
    workspace = tmp_path / "workspace"
    (workspace / "app").mkdir(parents=True)
    (workspace / "app/link-to-outside").symlink_to(outside)
    (workspace / "precious").symlink_to(outside / "precious")

    filter_tree(workspace, excludes=["link-to-outside", "precious", "*.txt"])

    assert (outside / "precious/data.txt").read_text() == "keep me"
    assert not (workspace / "precious").is_symlink()
    assert not (workspace / "app/link-to-outside").is_symlink()
    for pattern in ["/etc", "../outside", "app/../../outside", "./app", "a//b", "", " "]:
        with pytest.raises(InvalidInput):
            validate_patterns([pattern], field="excludes")


def test_character_classes_and_double_stars_match_like_rsync(tmp_path: Path) -> None:
    for name in ["a1.txt", "b2.txt", "c3.txt", "x/y/z/deep.map", "x/keep.js", "[lit].txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    filter_tree(tmp_path, excludes=["[ab]?.txt", "x/**/*.map", "[[]lit].txt"])
    assert _files(tmp_path) == {"c3.txt", "x/keep.js"}
