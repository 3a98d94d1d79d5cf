"""Deploy scenarios end to end: real git repos, real sshd hosts, the real API.

Each test reads as one rule of "A deploy, step by step" in DESIGN.md. Hosts share one fleet
per test worker, so every world deploys under its own ``/srv/<base>``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.deploy.helpers import (
    at,
    check_target,
    live_release,
    log_text,
    patch_target,
    processes_in_namespace_of,
    release_ids_on,
    releases,
    start,
    step_status,
    steps,
    submit,
    wait_until,
)
from tests.factories import DeployWorld, Factory, commit
from tests.fleet.harness import Fleet, FleetHost

# Appends a line to a file outside the workspace each time the build hook really runs.
COUNTING_BUILD = {"hooks": {"post_deploy": 'echo built >> "$BUILD_COUNTER"'}}


def _content(world: DeployWorld, host: FleetHost) -> str:
    """index.html of the live release, seen from here (the symlink is absolute on the
    host, so it is resolved through the host's /srv)."""
    live = os.readlink(world.path_on(host, world.webroot))
    return (world.path_on(host, live) / "index.html").read_text()


# -- gray release, then the rest ---------------------------------------------------------


def test_continue_after_a_gray_release_deploys_the_same_build_to_the_other_hosts_only(
    factory, fleet, tmp_path: Path
):
    counter = tmp_path / "builds.count"
    world = factory.deploy_world(
        list(fleet), project={**COUNTING_BUILD, "variables": {"BUILD_COUNTER": str(counter)}}
    )
    host1, host2, host3 = world.hosts

    gray = factory.deploy(world, servers=["host1"])
    assert live_release(world, host1) == gray["release"]
    assert live_release(world, host2) is None and live_release(world, host3) is None

    rest = factory.api("dev", "POST", f"/spaces/ops/tasks/{gray['id']}/continue", expect=201)
    assert rest["state"] == "approved"
    assert rest["parent_task_id"] == gray["id"]
    assert rest["commit"] == gray["commit"]
    assert rest["servers"] == ["host2", "host3"]
    start(factory, world, rest["id"])
    rest = factory.wait("ops", rest["id"])

    assert {host for host, _ in steps(factory, world, rest["id"])} == {"", "host2", "host3"}
    assert counter.read_text() == "built\n"  # the hook ran for the gray deploy only
    assert "reusing the build of this commit" in log_text(factory, world, rest["id"])
    assert live_release(world, host1) == gray["release"]
    assert live_release(world, host2) == live_release(world, host3) == rest["release"]
    report = releases(factory, world)
    commits = {r["id"]: r["commit"] for r in report["releases"]}
    assert {commits[report["live"][h.name]] for h in world.hosts} == {gray["commit"]}
    assert {_content(world, h) for h in world.hosts} == {"<h1>v1</h1>\n"}


# -- batches -----------------------------------------------------------------------------


def test_batches_switch_one_batch_only_after_the_previous_batch_finished(factory, fleet):
    world = factory.deploy_world(list(fleet), target={"strategy": {"batch": 1}})
    task = factory.deploy(world)
    matrix = steps(factory, world, task["id"])
    for earlier, later in (("host1", "host2"), ("host2", "host3")):
        assert at(matrix[(later, "connect")]["started_at"]) >= at(
            matrix[(earlier, "prune")]["finished_at"]
        )
        assert at(matrix[(later, "switch")]["started_at"]) > at(
            matrix[(earlier, "switch")]["finished_at"]
        )
    text = log_text(factory, world, task["id"])
    positions = [text.index(f"batch {n}/3: host{n}") for n in (1, 2, 3)]
    assert positions == sorted(positions)
    assert {live_release(world, h) for h in world.hosts} == {task["release"]}


# -- failures ----------------------------------------------------------------------------

FAILS_ON_HOST2 = (
    'echo "checking $SERVER"; test "$SERVER" != host2 || { echo "host2 is not ready" >&2; exit 3; }'
)


def test_a_failing_prev_release_hook_switches_no_host_or_with_continue_the_others_only(
    factory, fleet
):
    world = factory.deploy_world(list(fleet))
    host1, host2, host3 = world.hosts
    v1 = factory.deploy(world)
    patch_target(factory, world, hooks={"prev_release": FAILS_ON_HOST2})
    commit(world.repo, {"index.html": "<h1>v2</h1>\n"})

    # on_failure: stop (the default): the batch fails before any host is switched.
    stopped = factory.deploy(world, expect_state="failed")
    assert "host2 at prev_release" in stopped["error"], stopped["error"]
    assert {live_release(world, h) for h in world.hosts} == {v1["release"]}
    matrix = steps(factory, world, stopped["id"])
    failed = matrix[("host2", "prev_release")]
    assert failed["status"] == "failed"
    assert failed["exit_code"] == 3
    assert "host2 is not ready" in failed["output_tail"]
    for host in ("host1", "host3"):
        assert matrix[(host, "prev_release")]["status"] == "succeeded"
        assert matrix[(host, "switch")]["status"] == "skipped"

    # on_failure: continue: the hosts that passed are switched, the failed one is not.
    patch_target(factory, world, strategy={"on_failure": "continue"})
    partial = factory.deploy(world, expect_state="failed")
    assert live_release(world, host1) == live_release(world, host3) == partial["release"]
    assert _content(world, host1) == _content(world, host3) == "<h1>v2</h1>\n"
    assert live_release(world, host2) == v1["release"]
    assert steps(factory, world, partial["id"])[("host2", "prev_release")]["exit_code"] == 3

    # Retry: a task for the failed host only, same commit, already approved.
    retry = factory.api("dev", "POST", f"/spaces/ops/tasks/{partial['id']}/retry", expect=201)
    assert retry["servers"] == ["host2"]
    assert retry["commit"] == partial["commit"] and retry["state"] == "approved"
    patch_target(factory, world, hooks={"prev_release": None})  # host2 is ready now
    start(factory, world, retry["id"])
    factory.wait("ops", retry["id"])
    assert {host for host, _ in steps(factory, world, retry["id"])} == {"", "host2"}
    assert {_content(world, h) for h in world.hosts} == {"<h1>v2</h1>\n"}


def test_a_host_that_is_down_fails_the_deploy_at_connect_switches_no_host_and_fails_its_check(
    factory, make_fleet
):
    private = make_fleet(2)
    world = factory.deploy_world(list(private))
    v1 = factory.deploy(world)
    private.stop_host(1)
    commit(world.repo, {"index.html": "<h1>v2</h1>\n"})

    task = factory.deploy(world, expect_state="failed")

    assert "host2 at connect" in task["error"], task["error"]
    assert "refused the connection" in task["error"]
    matrix = steps(factory, world, task["id"])
    assert matrix[("host2", "connect")]["status"] == "failed"
    assert "Connection refused" in matrix[("host2", "connect")]["output_tail"]
    assert matrix[("host1", "transfer")]["status"] == "succeeded"
    assert matrix[("host1", "switch")]["status"] == "skipped"
    assert live_release(world, world.hosts[0]) == v1["release"]
    assert _content(world, world.hosts[0]) == "<h1>v1</h1>\n"

    report = check_target(factory, world)
    assert report["ok"] is False
    assert report["hosts"]["host1"]["_ok"] is True, report
    assert report["hosts"]["host2"]["ssh"]["ok"] is False
    assert "refused the connection" in report["hosts"]["host2"]["ssh"]["detail"]


# -- hooks -------------------------------------------------------------------------------

HOSTILE = "$(touch /srv/pwned) `touch /srv/pwned`; touch /srv/pwned 'quoted' \"double\""


def test_release_hooks_get_the_built_in_variables_and_project_variables_literally(factory, fleet):
    world = factory.deploy_world(
        list(fleet)[:2],
        project={"variables": {"HOSTILE": HOSTILE}},
        target={"hooks": {"post_release": 'env -0 > "$(dirname "$WEBROOT")/hook-env.$SERVER"'}},
    )
    task = factory.deploy(world)
    for host in world.hosts:
        dump = world.path_on(host, f"/srv/{world.base}/hook-env.{host.name}").read_bytes()
        env = dict(item.split("=", 1) for item in dump.decode().split("\0") if item)
        assert env["RELEASE"] == task["release"]
        assert env["RELEASE_DIR"] == f"{world.releases}/{task['release']}"
        assert env["WEBROOT"] == world.webroot
        assert env["COMMIT_ID"] == task["commit"]
        assert env["BRANCH"] == "main" and env["TAG"] == ""
        assert env["TASK_ID"] == str(task["id"])
        assert env["TASK_NAME"] == "deploy"
        assert env["PROJECT_NAME"] == world.project
        assert env["ENV_NAME"] == "test"
        assert env["DEPLOY_USER"] == "dev"
        assert env["SERVER"] == host.name
        assert env["HOSTILE"] == HOSTILE
        assert not (Path(host.host_dir) / "pwned").exists()


# -- cancel and the one-deploy-per-target lock -------------------------------------------


def test_cancelling_a_running_deploy_kills_the_remote_hook_switches_nothing_and_frees_the_lock(
    factory, fleet
):
    world = factory.deploy_world(
        list(fleet)[:2], target={"hooks": {"prev_release": 'echo "sleeping on $SERVER"; sleep 37'}}
    )
    task = submit(factory, world)
    start(factory, world, task["id"])
    wait_until(
        lambda: all(
            step_status(factory, world, task["id"], h.name, "prev_release") == "running"
            for h in world.hosts
        ),
        timeout=60,
        what="both hosts to run the prev_release hook",
    )

    cancelled = factory.api("dev", "POST", f"/spaces/ops/tasks/{task['id']}/cancel")
    assert cancelled["cancel_requested"] is True
    task = factory.wait("ops", task["id"], expect_state="cancelled", timeout=60)

    matrix = steps(factory, world, task["id"])
    for host in world.hosts:
        assert matrix[(host.name, "prev_release")]["status"] == "cancelled"
        assert matrix[(host.name, "switch")]["status"] == "cancelled"
        assert live_release(world, host) is None
        wait_until(
            lambda h=host: not processes_in_namespace_of(h, ["sleep", "37"]),
            timeout=10,
            what=f"the hook's sleep on {host.name} to be killed",
        )
    patch_target(factory, world, hooks={"prev_release": None})
    after = factory.deploy(world)
    assert {live_release(world, h) for h in world.hosts} == {after["release"]}


FINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def task_state(factory: Factory, task_id: int) -> str:
    return factory.api("root", "GET", f"/spaces/ops/tasks/{task_id}")["state"]  # type: ignore[no-any-return]


def test_a_second_deploy_to_the_same_target_waits_in_the_queue_until_the_first_finishes(
    factory, fleet
):
    world = factory.deploy_world(list(fleet)[:1], target={"hooks": {"prev_release": "sleep 2"}})
    first, second = submit(factory, world), submit(factory, world)
    start(factory, world, first["id"])
    start(factory, world, first["id"], expect=409)  # a double click starts it once
    wait_until(
        lambda: task_state(factory, first["id"]) == "running",
        timeout=60,
        what="the first task to run",
    )
    start(factory, world, second["id"])
    start(factory, world, second["id"], expect=409)

    waiting = f"waiting: task #{first['id']} is deploying to this target"
    saw_waiting = False
    seen: list[tuple[str, str]] = []

    def both_final() -> bool:
        nonlocal saw_waiting
        states = (task_state(factory, first["id"]), task_state(factory, second["id"]))
        seen.append(states)
        assert states != ("running", "running"), seen
        if states == ("running", "queued") and not saw_waiting:
            saw_waiting = waiting in log_text(factory, world, second["id"])
        return states[0] in FINAL and states[1] in FINAL

    wait_until(both_final, timeout=90, what="both tasks to finish")
    assert saw_waiting, seen
    first = factory.wait("ops", first["id"])
    second = factory.wait("ops", second["id"])
    assert at(second["started_at"]) >= at(first["finished_at"])
    assert live_release(world, world.hosts[0]) == second["release"]


# -- releases and rollback ---------------------------------------------------------------

LOG_RELEASE_HOOK = 'echo "$RELEASE $RELEASE_DIR" >> "$(dirname "$WEBROOT")/post_release.log"'


def _rollback(
    factory: Factory, world: DeployWorld, release: str, *, user: str = "dev", expect: int = 201
) -> dict[str, Any]:
    return factory.api(  # type: ignore[no-any-return]
        user,
        "POST",
        f"/spaces/ops/projects/{world.project}/targets/test/rollback",
        json={"release": release},
        expect=expect,
    )


def test_rollback_switches_back_to_a_kept_release_without_rebuilding(factory, fleet):
    world = factory.deploy_world(
        list(fleet)[:2], target={"hooks": {"post_release": LOG_RELEASE_HOOK}}
    )
    v1 = factory.deploy(world)
    commit(world.repo, {"index.html": "<h1>v2</h1>\n"})
    v2 = factory.deploy(world, user="lead")

    report = releases(factory, world)
    kept = {r["id"]: r for r in report["releases"]}
    assert list(kept) == [v2["release"], v1["release"]]  # newest first
    for task, who in ((v1, "dev"), (v2, "lead")):
        entry = kept[task["release"]]
        assert entry["commit"] == task["commit"]
        assert entry["task_id"] == task["id"]
        assert entry["deployed_by"] == who
        assert sorted(entry["hosts"]) == ["host1", "host2"]
    assert sorted(kept[v2["release"]]["live_on"]) == ["host1", "host2"]
    assert kept[v1["release"]]["live_on"] == []
    assert report["live"] == {"host1": v2["release"], "host2": v2["release"]}
    assert report["hosts_disagree"] is False

    rollback = _rollback(factory, world, v1["release"])
    assert rollback["kind"] == "rollback" and rollback["rollback_to"] == v1["release"]
    start(factory, world, rollback["id"])
    factory.wait("ops", rollback["id"])

    assert {live_release(world, h) for h in world.hosts} == {v1["release"]}
    assert {_content(world, h) for h in world.hosts} == {"<h1>v1</h1>\n"}
    matrix = steps(factory, world, rollback["id"])
    assert {stage for _, stage in matrix} == {"connect", "prev_release", "switch", "post_release"}
    assert all(row["status"] == "succeeded" for row in matrix.values())
    for host in world.hosts:
        hook_log = world.path_on(host, f"/srv/{world.base}/post_release.log").read_text()
        assert hook_log.splitlines()[-1] == f"{v1['release']} {world.releases}/{v1['release']}"
    assert releases(factory, world)["live"] == {"host1": v1["release"], "host2": v1["release"]}


def test_rollback_to_an_unknown_release_fails_clearly_and_a_target_can_reserve_rollback_to_masters(
    factory, fleet
):
    world = factory.deploy_world(list(fleet)[:1])
    host = world.hosts[0]
    v1 = factory.deploy(world)
    v2 = factory.deploy(world)

    _rollback(factory, world, "../../etc", expect=422)
    refused = _rollback(factory, world, "20200101T000000-999", expect=422)
    assert refused["field"] == "release" and "not kept" in refused["message"]

    patch_target(factory, world, developers_can_rollback=False)
    _rollback(factory, world, v1["release"], user="dev", expect=403)
    rollback = _rollback(factory, world, v1["release"], user="lead")
    assert rollback["release"] == v1["release"]  # the task names the release it switches to
    start(factory, world, rollback["id"], user="dev", expect=403)
    start(factory, world, rollback["id"], user="lead")
    factory.wait("ops", rollback["id"])
    assert live_release(world, host) == v1["release"]

    # A release Shipyard knows but someone deleted on the host: the run says so clearly.
    shutil.rmtree(world.path_on(host, f"{world.releases}/{v2['release']}"))
    gone = _rollback(factory, world, v2["release"], user="lead")
    start(factory, world, gone["id"], user="lead")
    failed = factory.wait("ops", gone["id"], expect_state="failed")
    assert f"release {v2['release']} is not on host1" in failed["error"], failed["error"]
    assert v1["release"] in failed["error"]  # what is kept there instead
    assert live_release(world, host) == v1["release"]


def test_pruning_keeps_the_newest_releases_and_never_the_live_or_the_previous_one(factory, fleet):
    world = factory.deploy_world(list(fleet)[:1], target={"keep": 2})
    host = world.hosts[0]
    r1, r2, r3 = (factory.deploy(world)["release"] for _ in range(3))
    assert release_ids_on(world, host) == {r2, r3}
    assert live_release(world, host) == r3

    rollback = _rollback(factory, world, r2)
    start(factory, world, rollback["id"])
    factory.wait("ops", rollback["id"])
    r4 = factory.deploy(world)["release"]
    # The newest two are r4 and r3; r2 stays because the switch to r4 was made from it.
    assert release_ids_on(world, host) == {r2, r3, r4}
    assert live_release(world, host) == r4


# -- checks and host keys ----------------------------------------------------------------


def test_check_passes_on_a_healthy_target_and_names_a_webroot_that_is_a_real_directory(
    factory, fleet
):
    world = factory.deploy_world(list(fleet)[:2])
    report = check_target(factory, world)
    assert report["ok"] is True and report["git"]["ok"] is True, report
    for host in ("host1", "host2"):
        checks = report["hosts"][host]
        assert set(checks) == {"_ok", "ssh", "releases_writable", "webroot_free", "free_disk"}
        assert all(c["ok"] for name, c in checks.items() if name != "_ok"), checks

    world.path_on(world.hosts[1], world.webroot).mkdir(parents=True)
    report = check_target(factory, world)
    assert report["ok"] is False
    assert report["hosts"]["host1"]["_ok"] is True, report
    webroot_free = report["hosts"]["host2"]["webroot_free"]
    assert webroot_free["ok"] is False and "real directory" in webroot_free["detail"]
    assert report["hosts"]["host2"]["ssh"]["ok"] is True


def test_a_changed_host_key_fails_the_deploy_at_connect_until_the_key_is_forgotten(
    factory, make_fleet
):
    private = make_fleet(1)
    host = private.hosts[0]
    world = factory.deploy_world([host])
    server = f"/spaces/ops/servers/{host.name}"
    assert factory.api("lead", "GET", server)["host_key"] is None
    v1 = factory.deploy(world)
    recorded = factory.api("lead", "GET", server)
    assert recorded["host_key"] == host.host_public_key
    assert recorded["host_key_recorded_at"] is not None

    new_key = _reinstall(private, 0)
    commit(world.repo, {"index.html": "<h1>v2</h1>\n"})
    task = factory.deploy(world, expect_state="failed")
    assert "host key" in task["error"] and "does not match" in task["error"], task["error"]
    assert steps(factory, world, task["id"])[("host1", "connect")]["status"] == "failed"
    assert factory.api("lead", "GET", server)["host_key"] == host.host_public_key
    assert live_release(world, host) == v1["release"]
    ssh_check = check_target(factory, world)["hosts"]["host1"]["ssh"]
    assert ssh_check["ok"] is False and "host key" in ssh_check["detail"]

    factory.api("lead", "POST", f"{server}/forget-host-key")
    factory.deploy(world)
    assert factory.api("lead", "GET", server)["host_key"] == new_key
    assert _content(world, host) == "<h1>v2</h1>\n"


def _reinstall(private: Fleet, i: int) -> str:
    """Give fleet host ``i`` a new host key, as a reinstalled server has; return it."""
    host = private.hosts[i]
    private.stop_host(i)
    key = Path(host.host_dir).parent / "ssh_host_ed25519_key"
    key.unlink()
    key.with_suffix(".pub").unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    private.start_host(i)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])
