"""Which of a project's webhook rules an event matches, and why none did. Pure.

A rule names an event kind (``push`` to a branch, ``tag`` pushed, ``merge`` of a merge
request into a branch), a glob over the branch or tag name (``develop``, ``release/*``,
``v*``; ``*`` matches ``/`` too), a target environment and an action (``deploy``: submit
and start at once when no approval is needed; ``submit``: submit, people do the rest).
Every enabled matching rule fires, in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from shipyard.errors import InvalidInput
from shipyard.integrations.inbound import EVENT_KINDS, GitEvent

ACTIONS = ("deploy", "submit")
_BAD_PATTERN = re.compile(r"[\x00-\x20\x7f~^:\\]")
DESCRIBE = {"push": "push to", "tag": "tag", "merge": "merge into"}


@dataclass(frozen=True)
class Rule:
    name: str
    event: str
    pattern: str
    environment: str
    action: str
    enabled: bool = True

    def describe(self) -> str:
        return f"{self.name} ({DESCRIBE.get(self.event, self.event)} {self.pattern})"


def check_pattern(pattern: str, field: str = "pattern") -> str:
    """A glob that can match a git branch or tag name."""
    if not pattern or len(pattern) > 255 or _BAD_PATTERN.search(pattern):
        raise InvalidInput(f"{field} must be a branch or tag name or glob (like develop, "
                           "release/* or v*) without spaces", field=field)
    return pattern


def check_rule(event: str, action: str, field: str = "rules") -> None:
    if event not in EVENT_KINDS:
        raise InvalidInput(f"event must be one of {', '.join(EVENT_KINDS)}",
                           field=f"{field}.event")
    if action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}",
                           field=f"{field}.action")


def matching(rules: Sequence[Rule], event: GitEvent) -> list[Rule]:
    return [r for r in rules
            if r.enabled and r.event == event.kind and fnmatchcase(event.ref, r.pattern)]


def why_none(rules: Sequence[Rule], event: GitEvent) -> str:
    """The reason a delivery triggered nothing, naming the rules that were considered."""
    what = f"{DESCRIBE[event.kind]} {event.ref!r}"
    enabled = [r for r in rules if r.enabled]
    if not enabled:
        return f"no rule matches {what}: the project has no enabled webhook rules"
    same_kind = [r for r in enabled if r.event == event.kind]
    if not same_kind:
        return (f"no rule matches {what}: no rule is about {event.kind} events (rules: "
                + ", ".join(r.describe() for r in enabled) + ")")
    return (f"no rule matches {what} (rules for {event.kind}: "
            + ", ".join(r.describe() for r in same_kind) + ")")
