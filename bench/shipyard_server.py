"""A real ``shipyard serve`` subprocess, and the REST calls the benchmark makes to it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

FINAL = {"succeeded", "failed", "cancelled", "interrupted", "rejected"}
POLL = 0.05  # seconds between GETs of a running task
START_TIMEOUT = 60.0
HTTP_TIMEOUT = 30.0


class ShipyardServer:
    """``shipyard serve`` on 127.0.0.1 with its own SHIPYARD_HOME; stop() always kills it."""

    def __init__(self, executable: Path, home: Path, *, password: str) -> None:
        self.executable = executable
        self.home = home
        self.password = password
        self.port = _free_port()
        self.log_path = home.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.home / "shipyard.db"

    def start(self) -> None:
        env = {
            **os.environ,
            "SHIPYARD_HOME": str(self.home),
            "SHIPYARD_HOST": "127.0.0.1",
            "SHIPYARD_PORT": str(self.port),
            "SHIPYARD_ALLOW_LOCAL_REPOS": "true",
            "SHIPYARD_ADMIN_USER": "admin",
            "SHIPYARD_ADMIN_PASSWORD": self.password,
        }
        env.pop("SHIPYARD_DATABASE_URL", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.executable), "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"shipyard serve exited ({self.proc.returncode}); see "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"shipyard serve did not answer within {START_TIMEOUT:.0f}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
            proc.wait(timeout=10)

    def peak_rss_bytes(self) -> int:
        """VmHWM of the server process itself (children such as ssh not included)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class DeployRun:
    """One timed deploy: wall time from POST .../start to seeing the final state."""

    task_id: int
    wall: float
    release: str
    posted_at: datetime
    task: dict[str, Any]
    stages: dict[str, StageTimes] = field(default_factory=dict)


@dataclass
class StageTimes:
    count: int = 0
    total: float = 0.0
    longest: float = 0.0
    durations: list[float] = field(default_factory=list)
    first_start: datetime | None = None
    last_finish: datetime | None = None


class Api:
    """The REST API as an admin token sees it."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=f"{url}/api/v1",
            timeout=HTTP_TIMEOUT,
            headers={"Authorization": f"Bearer {token}"},
        )

    @classmethod
    def login(cls, url: str, username: str, password: str) -> Api:
        response = httpx.post(
            f"{url}/api/v1/auth/token",
            timeout=HTTP_TIMEOUT,
            json={"username": username, "password": password, "token_name": "bench"},
        )
        _check(response, 201)
        return cls(url, response.json()["token"])

    def call(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        _check(response, expect)
        return response.json() if response.content else None

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("POST", path, json=body, expect=201)

    def deploy(
        self, space: str, project: str, environment: str, ref: str, *, timeout: float
    ) -> DeployRun:
        """Submit a deploy of ``ref``, then time it from start to final; it must succeed."""
        task = self.post(
            f"/spaces/{space}/tasks",
            {"project": project, "title": "bench", "environment": environment, "ref": ref},
        )
        tid = task["id"]
        posted_at = datetime.now(UTC)
        started = time.monotonic()
        self.call("POST", f"/spaces/{space}/tasks/{tid}/start")
        deadline = started + timeout
        while True:
            task = self.call("GET", f"/spaces/{space}/tasks/{tid}")
            if task["state"] in FINAL:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(httpx.HTTPError, RuntimeError):
                    self.call("POST", f"/spaces/{space}/tasks/{tid}/cancel")
                raise RuntimeError(f"task {tid} still {task['state']} after {timeout:.0f}s")
            time.sleep(POLL)
        run = DeployRun(
            task_id=tid,
            wall=time.monotonic() - started,
            release=task["release"],
            posted_at=posted_at,
            task=task,
        )
        if task["state"] != "succeeded":
            raise DeployFailed(f"task {tid} {task['state']}: {task.get('error')}", run)
        return run


class DeployFailed(RuntimeError):
    """The deploy ended, but not in ``succeeded``; ``run`` has its timings."""

    def __init__(self, message: str, run: DeployRun) -> None:
        super().__init__(message)
        self.run = run


def stage_times(database: Path, task_id: int) -> dict[str, StageTimes]:
    """Per stage of a task, from the server's ``host_steps`` records (read-only).

    There is no steps endpoint in the API yet, so the benchmark reads the table directly.
    """
    out: dict[str, StageTimes] = defaultdict(StageTimes)
    with contextlib.closing(
        sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    ) as db:
        rows = db.execute(
            "SELECT stage, duration, started_at, finished_at FROM host_steps WHERE task_id = ?",
            (task_id,),
        ).fetchall()
    for stage, duration, started_at, finished_at in rows:
        times = out[stage]
        times.count += 1
        times.total += duration or 0.0
        times.longest = max(times.longest, duration or 0.0)
        if duration is not None:
            times.durations.append(duration)
        if started_at:
            start = _utc(started_at)
            times.first_start = min(filter(None, (times.first_start, start)))
        if finished_at:
            finish = _utc(finished_at)
            times.last_finish = max(filter(None, (times.last_finish, finish)))
    return dict(out)


def parse_time(value: str) -> datetime:
    return _utc(value)


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check(response: httpx.Response, expect: int) -> None:
    if response.status_code != expect:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} -> "
            f"{response.status_code}: {response.text[:500]}"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
