"""A git push, for real: the webhook creates the task, the task deploys to an sshd host of
the test fleet, and the team hears about it; a receiver that never answers changes none
of that."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from shipyard.services.context import Runtime
from tests.factories import Factory, commit
from tests.integrations import payloads
from tests.integrations.receivers import Receiver


def test_a_push_deploys_and_is_announced_while_a_hanging_receiver_times_out(
        fleet: Any, factory: Factory, runtime: Runtime,
        receiver: Callable[..., Receiver]) -> None:
    # A loaded machine can hold a deploy's process up for a moment: the channel that
    # answers gets its retries; the one that hangs exhausts them.
    runtime.settings.notify_timeout = 1.0
    runtime.settings.notify_max_attempts = 3
    world = factory.deploy_world(list(fleet)[:1])
    project = f"/spaces/ops/projects/{world.project}"
    secret = factory.api("lead", "PUT", f"{project}/webhook", json={})["secret"]
    factory.api("lead", "PUT", f"{project}/webhook/rules", json={"rules": [
        {"name": "main-to-test", "event": "push", "pattern": "main", "environment": "test"}]})
    heard, stuck = receiver(), receiver()
    stuck.hang()
    for name, url in (("team", heard.url("/slack")), ("stuck", stuck.url("/never"))):
        factory.api("lead", "POST", "/spaces/ops/channels", expect=201,
                    json={"name": f"{name}-{world.base}", "kind": "slack", "url": url})
    factory.api("lead", "PUT", f"{project}/targets/test/channels", json={"channels": [
        {"name": f"team-{world.base}"}, {"name": f"stuck-{world.base}"}]})

    sha = commit(world.repo, {"index.html": "<h1>v2</h1>\n"}, "v2")
    headers, body = payloads.github("push", payloads.github_push("refs/heads/main", sha),
                                    secret)
    response = factory.client.post(f"/api/v1/hooks/github/ops/{world.project}",
                                   headers=headers, content=body)
    assert response.status_code == 200, response.text
    [task_id] = response.json()["tasks"]

    done = factory.wait("ops", task_id)  # type: ignore[attr-defined]
    assert (done["state"], done["commit"]) == ("succeeded", sha)
    host = world.hosts[0]
    release = os.path.basename(os.readlink(world.path_on(host, world.webroot)))
    live = world.path_on(host, f"{world.releases}/{release}/index.html")
    assert live.read_text() == "<h1>v2</h1>\n"

    sent = wait_final(factory, f"team-{world.base}", 3)
    assert [(n["event"], n["status"]) for n in sent] == [
        ("approved", "delivered"), ("started", "delivered"), ("succeeded", "delivered")]
    assert f"Deploy #{task_id} succeeded" in heard.requests[-1].json["text"]
    stalled = wait_final(factory, f"stuck-{world.base}", 3)
    assert {(n["status"], a["error"]) for n in stalled for a in n["attempts"]} == \
        {("failed", "timed out after 1s")}


def wait_final(factory: Factory, channel: str, count: int,
               timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        items = factory.api("lead", "GET", "/spaces/ops/notifications",
                            params={"channel": channel})["items"]
        if len(items) >= count and all(n["status"] in ("delivered", "failed")
                                       for n in items):
            return list(reversed(items))
        assert time.monotonic() < deadline, items
        time.sleep(0.05)
