"""Live logs: every output line lands in the database in order, pages with ``after=``
return it without gaps, and the SSE stream delivers it live and resumes with
``Last-Event-ID``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.deploy.helpers import bounded, logs, start, submit

LINES = 100_000


def sse_events(
    client: Any, factory: Any, path: str, headers: dict[str, str] | None = None
) -> Iterator[tuple[str, str | None, str]]:
    """(event, id, data) for each event of a text/event-stream, parsed by hand."""
    with client.stream(
        "GET", f"/api/v1{path}", headers={**factory.headers("viewer"), **(headers or {})}
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event, event_id, data = "message", None, list[str]()
        for raw in response.iter_lines():
            line = raw.rstrip("\r")
            if not line:
                if data:
                    yield event, event_id, "\n".join(data)
                event, event_id, data = "message", None, list[str]()
            elif line.startswith(":"):
                continue  # a keep-alive comment
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "id":
                    event_id = value
                elif name == "data":
                    data.append(value)


def test_a_hundred_thousand_build_lines_arrive_in_order_through_pages_and_the_event_stream(
    factory, fleet, client
):
    world = factory.deploy_world(
        list(fleet)[:1], project={"hooks": {"post_deploy": f"seq {LINES}"}}
    )
    task = submit(factory, world)
    start(factory, world, task["id"])
    events = f"/spaces/ops/tasks/{task['id']}/events"

    # Opened while the build is still printing: the stream waits for lines past ``after``,
    # follows the task live and ends once it is final and every line was sent.
    tail_from = LINES - 5000
    streamed = bounded(
        lambda: list(sse_events(client, factory, f"{events}?after={tail_from}")),
        timeout=240,
        what="the event stream to end",
        on_timeout=lambda: factory.api("dev", "POST", f"/spaces/ops/tasks/{task['id']}/cancel"),
    )
    task = factory.wait("ops", task["id"])
    assert streamed[-1][0] == "end"
    assert [e for e, _, _ in streamed].count("end") == 1
    states = [json.loads(data)["state"] for e, _, data in streamed if e == "task"]
    assert states[0] in {"queued", "running"} and states[-1] == "succeeded", states
    lines = [(int(i or 0), json.loads(data)) for e, i, data in streamed if e == "line"]
    assert all(i == line["seq"] for i, line in lines)
    ids = [i for i, _ in lines]
    assert ids == list(range(tail_from + 1, tail_from + 1 + len(ids)))  # no gaps, in order

    # ``end`` came only after the task's last line, the final verdict, was sent.
    assert lines[-1][1]["line"] == "succeeded"
    paged = logs(factory, world, task["id"], page=5000)
    assert [line["seq"] for line in paged] == list(range(1, len(paged) + 1))
    assert paged[-1]["seq"] == ids[-1]
    assert [
        line["line"] for line in paged if line["stage"] == "build" and line["stream"] == "stdout"
    ] == [str(n) for n in range(1, LINES + 1)]
    assert [line["line"] for line in paged[tail_from:]] == [line["line"] for _, line in lines]

    # A browser reconnecting sends the last id it saw; the stream goes on from the next.
    resume_at = ids[-1000]
    resumed = list(sse_events(client, factory, events, headers={"Last-Event-ID": str(resume_at)}))
    assert [int(i or 0) for e, i, _ in resumed if e == "line"] == ids[-999:]
    assert resumed[-1][0] == "end"
