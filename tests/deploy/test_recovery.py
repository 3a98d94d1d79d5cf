"""A server killed mid-deploy: after a restart no task is stuck in ``running``.

A real ``shipyard serve`` process (its own data dir and SQLite file) is driven over HTTP,
killed with SIGKILL while a release hook runs, and started again on the same data."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.deploy.helpers import wait_until
from tests.factories import make_repo

PASSWORD = "recovery-admin-password"
# host2 sleeps in its prev_release hook the first time only (a marker next to its webroot),
# so the deploy can be killed there and the retry then runs through.
SLEEP_ONCE_ON_HOST2 = (
    'marker="$(dirname "$WEBROOT")/slept"; '
    'if [ "$SERVER" = host2 ] && [ ! -e "$marker" ]; then '
    'touch "$marker"; echo "sleeping on $SERVER"; sleep 60; fi'
)


class ShipyardServer:
    """``shipyard serve`` as a child process; ``kill()`` is SIGKILL, nothing graceful."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = workdir / "shipyard.db"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")} | {
            "SHIPYARD_HOME": str(workdir / "home"),
            "SHIPYARD_DATABASE_URL": f"sqlite:///{self.database}",
            "SHIPYARD_HOST": "127.0.0.1",
            "SHIPYARD_PORT": str(self.port),
            "SHIPYARD_ALLOW_LOCAL_REPOS": "true",
            "SHIPYARD_ADMIN_PASSWORD": PASSWORD,
        }

    def start(self) -> None:
        assert self.proc is None
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - the child holds it
        try:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("shipyard")), "serve"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            return False

        wait_until(healthy, timeout=60, every=0.2, what="shipyard serve to answer")

    def kill(self) -> None:
        """SIGKILL the server, then whatever it started in its process group."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")[-4000:]

    def client(self) -> httpx.Client:
        token = httpx.post(
            f"{self.url}/api/v1/auth/token",
            timeout=30,
            json={"username": "admin", "password": PASSWORD},
        )
        assert token.status_code == 201, token.text
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            timeout=30,
            headers={"Authorization": f"Bearer {token.json()['token']}"},
        )

    def locks(self) -> int:
        engine = create_engine(f"sqlite:///{self.database}")
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM target_locks")).scalar_one())
        finally:
            engine.dispose()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ShipyardServer]:
    process = ShipyardServer(tmp_path)
    try:
        yield process
    finally:
        process.kill()


def test_a_deploy_killed_with_its_server_is_interrupted_after_restart_and_retry_finishes_it(
    server: ShipyardServer, make_fleet: Any, tmp_path: Path
) -> None:
    fleet = make_fleet(2)
    repo = make_repo(tmp_path / "repo", files={"index.html": "<h1>v1</h1>\n"})
    server.start()
    api = server.client()
    _setup(api, fleet, repo)

    task = _call(
        api,
        "POST",
        "/spaces/ops/tasks",
        201,
        json={"project": "app", "environment": "test", "title": "killed"},
    )
    _call(api, "POST", f"/spaces/ops/tasks/{task['id']}/start", 200)
    wait_until(
        lambda: (
            _steps(api, task["id"]).get(("host2", "prev_release"), {}).get("status") == "running"
        ),
        timeout=60,
        what="host2's prev_release hook",
    )
    api.close()
    server.kill()

    server.start()
    api = server.client()
    interrupted = _call(api, "GET", f"/spaces/ops/tasks/{task['id']}", 200)
    assert interrupted["state"] == "interrupted", interrupted
    assert "retry" in interrupted["error"]
    assert server.locks() == 0
    steps = _steps(api, task["id"])
    assert all(
        steps[("host1", stage)]["status"] == "succeeded"
        for stage in ("connect", "transfer", "prev_release", "switch", "post_release", "prune")
    )
    assert steps[("host2", "transfer")]["status"] == "succeeded"
    assert steps[("host2", "prev_release")]["status"] != "succeeded"
    assert steps[("host2", "switch")]["status"] != "succeeded"
    assert _live(fleet[0]) == interrupted["release"]
    assert _live(fleet[1]) is None

    retry = _call(api, "POST", f"/spaces/ops/tasks/{task['id']}/retry", 201)
    assert retry["parent_task_id"] == task["id"] and retry["servers"] == ["host2"]
    _call(api, "POST", f"/spaces/ops/tasks/{retry['id']}/start", 200)
    done = wait_until(lambda: _final(api, retry["id"]), timeout=90, what="the retry")
    assert done is not None and done["state"] == "succeeded", done
    assert {host for host, _ in _steps(api, retry["id"])} == {"", "host2"}
    assert _live(fleet[1]) == done["release"]
    assert _live(fleet[0]) == interrupted["release"]
    api.close()


def _setup(api: httpx.Client, fleet: Any, repo: Path) -> None:
    _call(api, "POST", "/spaces", 201, json={"name": "ops"})
    _call(api, "POST", "/spaces/ops/environments", 201, json={"name": "test"})
    _call(
        api,
        "POST",
        "/spaces/ops/credentials",
        201,
        json={"name": "fleet-key", "kind": "ssh_key", "secret": fleet[0].client_private_key},
    )
    for host in fleet:
        _call(
            api,
            "POST",
            "/spaces/ops/servers",
            201,
            json={
                "name": host.name,
                "host": host.address,
                "port": host.port,
                "user": host.user,
                "credential": "fleet-key",
            },
        )
    _call(
        api,
        "POST",
        "/spaces/ops/projects",
        201,
        json={"name": "app", "repo": str(repo), "default_branch": "main"},
    )
    _call(
        api,
        "POST",
        "/spaces/ops/projects/app/targets",
        201,
        json={
            "environment": "test",
            "servers": [h.name for h in fleet],
            "webroot": "/srv/app/www",
            "releases": "/srv/app/releases",
            "strategy": {"batch": 1},
            "hooks": {"prev_release": SLEEP_ONCE_ON_HOST2},
        },
    )


def _call(api: httpx.Client, method: str, path: str, expect: int, **kwargs: Any) -> Any:
    response = api.request(method, path, **kwargs)
    assert response.status_code == expect, (method, path, response.status_code, response.text)
    return response.json()


def _steps(api: httpx.Client, task_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    rows = _call(api, "GET", f"/spaces/ops/tasks/{task_id}/steps", 200)
    return {(row["host"], row["stage"]): row for row in rows}


def _final(api: httpx.Client, task_id: int) -> dict[str, Any] | None:
    task = _call(api, "GET", f"/spaces/ops/tasks/{task_id}", 200)
    return task if task["state"] in {"succeeded", "failed", "cancelled", "interrupted"} else None


def _live(host: Any) -> str | None:
    webroot = Path(host.host_dir) / "app" / "www"
    return os.path.basename(os.readlink(webroot)) if webroot.is_symlink() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
