"""Distributed mode: the API dispatches through Redis to a real `shipyard worker` process
serving the target's zone, which runs the same deploy code path."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from shipyard.config import Settings

BROKER = "redis://127.0.0.1:6379/7"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(BROKER, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def zone() -> str:
    return "zone-" + secrets.token_hex(4)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:  # overrides conftest's
    from tests.conftest import SECRET_KEY

    if not _redis_up():
        if os.environ.get("CI"):
            pytest.fail("Redis on 127.0.0.1:6379 is needed for distributed-mode tests")
        pytest.skip("no Redis on 127.0.0.1:6379")
    return Settings(home=tmp_path / "home", database_url=database_url, secret_key=SECRET_KEY,
                    allow_local_repos=True, dispatcher="celery", broker_url=BROKER)


@pytest.fixture
def worker(settings: Settings, zone: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "SHIPYARD_HOME": str(settings.home),
           "SHIPYARD_DATABASE_URL": settings.resolved_database_url,
           "SHIPYARD_SECRET_KEY": settings.secret_key or "",
           "SHIPYARD_ALLOW_LOCAL_REPOS": "true", "SHIPYARD_BROKER_URL": BROKER}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "shipyard.cli.main", "worker", "-Q", zone,
                             "--concurrency", "2"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_a_worker_serving_the_targets_zone_runs_the_deploy(factory, fleet, worker, zone):
    world = factory.deploy_world(list(fleet)[:1], target={"zone": zone})
    task = factory.deploy(world, timeout=120)
    host = world.hosts[0]
    assert os.readlink(world.path_on(host, world.webroot)).endswith(task["release"])
    steps = factory.api("root", "GET", f"/spaces/ops/tasks/{task['id']}/steps")
    assert {s["status"] for s in steps} == {"succeeded"}
