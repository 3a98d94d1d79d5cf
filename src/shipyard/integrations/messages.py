"""What a notification says: one message per task event, rendered once from the facts at
the time of the event and stored, so that each retry sends the same words. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SUMMARY = 300

VERBS = {
    "submitted": "is waiting for approval",
    "approved": "was approved",
    "rejected": "was rejected",
    "started": "started",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "was cancelled",
    "interrupted": "was interrupted",
    "rolled_back": "rolled back",
    "test": "test message",
}


@dataclass(frozen=True)
class TaskFacts:
    """The task as a notification needs it (names, not ids)."""

    task_id: int
    space: str
    project: str
    environment: str
    title: str
    kind: str
    ref: str
    commit_sha: str | None
    submitted_by: str
    state: str
    error: str | None = None
    reject_reason: str | None = None
    rollback_to: str | None = None
    approvers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Message:
    """A rendered notification. ``fields`` is the structured form (the JSON webhook sends
    it as is); ``headline``, ``lines`` and ``link`` are what people read."""

    event: str
    headline: str
    lines: list[str]
    link: str
    fields: dict[str, Any]
    # Email only: addresses added for this event (the approvers of a submitted task).
    to: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join([self.headline, *self.lines, f"Open: {self.link}"])

    def markdown(self) -> str:
        body = "\n".join(f"- {line}" for line in self.lines)
        return f"### {self.headline}\n{body}\n\n[Open in Shipyard]({self.link})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(event=data["event"], headline=data["headline"], lines=list(data["lines"]),
                   link=data["link"], fields=dict(data["fields"]),
                   to=list(data.get("to") or []))


def task_link(base_url: str, space: str, task_id: int) -> str:
    return f"{base_url.rstrip('/')}/s/{space}/tasks/{task_id}"


def summary(text: str | None) -> str | None:
    """The first line of an error, shortened: enough to know what broke."""
    if not text:
        return None
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= SUMMARY else first[:SUMMARY - 1] + "…"


def render(event: str, facts: TaskFacts, *, actor: str, reason: str | None,
           base_url: str) -> Message:
    short = (facts.commit_sha or "")[:8]
    verb = VERBS.get(event, event)
    what = "Rollback" if facts.kind == "rollback" else "Deploy"
    headline = (f"[{facts.project}/{facts.environment}] {what} #{facts.task_id} {verb}")
    if event == "rolled_back" and facts.rollback_to:
        headline += f" to {facts.rollback_to}"
    why = reason
    if event == "rejected":
        why = reason or facts.reject_reason
    elif event in ("failed", "interrupted"):
        why = summary(reason or facts.error)
    lines = [f"Task: {facts.title}",
             f"Project: {facts.project}  Environment: {facts.environment}",
             f"Ref: {facts.ref}" + (f"  Commit: {short}" if short else ""),
             f"Submitted by: {facts.submitted_by}"]
    if actor and actor not in ("system", facts.submitted_by):
        lines.append(f"By: {actor}")
    lines.append(f"Result: {facts.state}")
    if why:
        label = {"rejected": "Reason", "failed": "Error"}.get(event, "Why")
        lines.append(f"{label}: {why}")
    if event == "submitted" and facts.approvers:
        lines.append("Can approve: " + ", ".join(f"@{name}" for name in facts.approvers))
    link = task_link(base_url, facts.space, facts.task_id)
    fields = {"event": event, "task_id": facts.task_id, "task_url": link,
              "title": facts.title, "kind": facts.kind, "space": facts.space,
              "project": facts.project, "environment": facts.environment, "ref": facts.ref,
              "commit": facts.commit_sha, "short_commit": short or None,
              "submitted_by": facts.submitted_by, "actor": actor, "result": facts.state,
              "reason": why, "approvers": list(facts.approvers)}
    return Message(event=event, headline=headline, lines=lines, link=link, fields=fields)


def render_test(space: str, channel: str, actor: str, base_url: str) -> Message:
    link = f"{base_url.rstrip('/')}/s/{space}"
    return Message(event="test", headline=f"[{space}] Test message for channel {channel}",
                   lines=[f"Sent by: {actor}", "If you can read this, the channel works."],
                   link=link, fields={"event": "test", "space": space, "channel": channel,
                                      "actor": actor, "task_url": link})
