"""Small readers for deploy scenario tests: steps, logs, what is live on a host, and
bounded waiting. Everything goes through the real API or looks at a fleet host's /srv."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], *, timeout: float = 30, what: str = "condition", every: float = 0.1
) -> T:
    """Poll ``check`` until it returns something truthy (returned), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def bounded(
    work: Callable[[], T],
    *,
    timeout: float,
    what: str,
    on_timeout: Callable[[], object] | None = None,
) -> T:
    """Run ``work`` (a blocking call with no timeout of its own, such as reading an event
    stream to its end) in a thread; fail if it has not returned within ``timeout`` s,
    after calling ``on_timeout`` to unblock it."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"bounded {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if on_timeout is not None:
            on_timeout()
        raise AssertionError(f"timed out after {timeout}s: {what}")
    if errors:
        raise errors[0]
    return result[0]


def submit(
    factory: Any,
    world: Any,
    *,
    user: str = "dev",
    ref: str | None = None,
    servers: list[str] | None = None,
    title: str = "deploy",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "project": world.project,
        "environment": world.environment,
        "title": title,
    }
    if ref:
        body["ref"] = ref
    if servers is not None:
        body["servers"] = servers
    return factory.api(user, "POST", f"/spaces/{world.space}/tasks", json=body, expect=201)


def start(
    factory: Any, world: Any, task_id: int, *, user: str = "dev", expect: int = 200
) -> dict[str, Any]:
    return factory.api(user, "POST", f"/spaces/{world.space}/tasks/{task_id}/start", expect=expect)


def task(factory: Any, world: Any, task_id: int) -> dict[str, Any]:
    return factory.api("root", "GET", f"/spaces/{world.space}/tasks/{task_id}")


def steps(factory: Any, world: Any, task_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    """The task's host x stage matrix, keyed by (host, stage); the build's host is ''."""
    rows = factory.api("root", "GET", f"/spaces/{world.space}/tasks/{task_id}/steps")
    return {(row["host"], row["stage"]): row for row in rows}


def step_status(factory: Any, world: Any, task_id: int, host: str, stage: str) -> str | None:
    """One step's status, or None before the runner planned the matrix."""
    row = steps(factory, world, task_id).get((host, stage))
    return row["status"] if row else None


def logs(factory: Any, world: Any, task_id: int, *, page: int = 5000) -> list[dict[str, Any]]:
    """Every log line of the task, read page by page with ``after=``."""
    lines: list[dict[str, Any]] = []
    after = 0
    while True:
        batch = factory.api(
            "root",
            "GET",
            f"/spaces/{world.space}/tasks/{task_id}/logs",
            params={"after": after, "limit": page},
        )
        if not batch:
            return lines
        lines += batch
        after = batch[-1]["seq"]


def log_text(factory: Any, world: Any, task_id: int) -> str:
    return "\n".join(line["line"] for line in logs(factory, world, task_id))


def patch_target(factory: Any, world: Any, **changes: Any) -> dict[str, Any]:
    return factory.api(
        "lead",
        "PATCH",
        f"/spaces/{world.space}/projects/{world.project}/targets/{world.environment}",
        json=changes,
    )


def releases(factory: Any, world: Any) -> dict[str, Any]:
    return factory.api(
        "root",
        "GET",
        f"/spaces/{world.space}/projects/{world.project}/targets/{world.environment}/releases",
    )


def check_target(factory: Any, world: Any) -> dict[str, Any]:
    """POST .../check, reshaped: {"ok", "git", "hosts": {host: {check name: check,
    "_ok": the host's verdict}}}."""
    report = factory.api(
        "lead",
        "POST",
        f"/spaces/{world.space}/projects/{world.project}/targets/{world.environment}/check",
    )
    return {
        "ok": report["ok"],
        "git": report["git"],
        "hosts": {
            h["host"]: {c["name"]: c for c in h["checks"]} | {"_ok": h["ok"]}
            for h in report["hosts"]
        },
    }


def live_release(world: Any, host: Any) -> str | None:
    """The release id the host's webroot points at, or None when there is no symlink."""
    webroot = world.path_on(host, world.webroot)
    if not webroot.is_symlink():
        return None
    return os.path.basename(os.readlink(webroot))


def release_ids_on(world: Any, host: Any) -> set[str]:
    releases_dir = world.path_on(host, world.releases)
    return {p.name for p in releases_dir.iterdir()} if releases_dir.is_dir() else set()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def processes_in_namespace_of(host: Any, argv: list[str]) -> list[int]:
    """Pids running exactly ``argv`` inside the host's mount namespace (its sshd's)."""
    sshd_pid = int((Path(host.host_dir).parent / "sshd.pid").read_text().strip())
    namespace = os.readlink(f"/proc/{sshd_pid}/ns/mnt")
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/mnt") != namespace:
                continue
            if Path(f"/proc/{entry}/cmdline").read_bytes() == wanted:
                found.append(int(entry))
        except OSError:
            continue
    return found
