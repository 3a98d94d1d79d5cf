"""What notifications say, and which rules an event matches: pure functions."""

from __future__ import annotations

import pytest

from shipyard.integrations.inbound import GitEvent
from shipyard.integrations.messages import TaskFacts, render
from shipyard.integrations.rules import Rule, matching, why_none
from shipyard.services.events import TaskEventKind

FACTS = TaskFacts(task_id=42, space="acme", project="shop", environment="prod",
                  title="Ship it", kind="deploy", ref="v1.2.0", commit_sha="0123456789abcdef" * 2
                  + "01234567", submitted_by="dev", state="failed",
                  error="host web-2: exit 1\nlong trace...", reject_reason=None,
                  approvers=["boss", "lead"])


@pytest.mark.parametrize("kind", [k.value for k in TaskEventKind])
def test_every_event_names_the_task_project_environment_commit_and_link(kind: str) -> None:
    message = render(kind, FACTS, actor="boss", reason=None, base_url="https://ship.example/")
    text = message.text()
    for fact in ("#42", "shop", "prod", "01234567", "v1.2.0", "Submitted by: dev",
                 "By: boss", "Result: failed", "https://ship.example/s/acme/tasks/42"):
        assert fact in text, (kind, fact, text)
    assert message.fields["task_url"] == "https://ship.example/s/acme/tasks/42"


def test_a_rejection_says_why_and_a_failure_gives_the_first_line_of_the_error() -> None:
    rejected = render("rejected", FACTS, actor="boss", reason="freeze", base_url="http://x")
    assert "Reason: freeze" in rejected.text()
    failed = render("failed", FACTS, actor="system", reason=None, base_url="http://x")
    assert "Error: host web-2: exit 1" in failed.text()
    assert "long trace" not in failed.text()
    assert "By:" not in failed.text()


def test_a_task_waiting_for_approval_names_who_can_approve() -> None:
    message = render("submitted", FACTS, actor="dev", reason=None, base_url="http://x")
    assert "Can approve: @boss, @lead" in message.text()
    assert message.fields["approvers"] == ["boss", "lead"]


RULES = [Rule("develop", "push", "develop", "test", "deploy"),
         Rule("releases", "push", "release/*", "staging", "deploy"),
         Rule("tags", "tag", "v*", "prod", "submit"),
         Rule("off", "push", "*", "test", "deploy", enabled=False)]


@pytest.mark.parametrize(("kind", "ref", "names"), [
    ("push", "develop", ["develop"]),
    ("push", "release/2.0", ["releases"]),
    ("push", "release/2.0/hotfix", ["releases"]),
    ("tag", "v1.2.0", ["tags"]),
    ("push", "v1.2.0", []),
    ("tag", "nightly", []),
    ("merge", "main", []),
])
def test_rules_match_by_event_and_glob(kind: str, ref: str, names: list[str]) -> None:
    event = GitEvent(kind=kind, ref=ref, sha=None, sender="", summary="")
    assert [r.name for r in matching(RULES, event)] == names


def test_the_reason_nothing_matched_names_the_rules_considered() -> None:
    event = GitEvent(kind="push", ref="feature/x", sha=None, sender="", summary="")
    assert why_none(RULES, event) == ("no rule matches push to 'feature/x' (rules for push: "
                                      "develop (push to develop), releases (push to "
                                      "release/*))")
    merge = GitEvent(kind="merge", ref="main", sha=None, sender="", summary="")
    assert "no rule is about merge events" in why_none(RULES, merge)
    assert "no enabled webhook rules" in why_none([], merge)
