"""The audit trail of a space (OWNER+): who changed what, when, from where, before and
after; filtered by action prefix, actor and object type, newest first."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from shipyard.services import audit
from shipyard.web.session import Page

router = APIRouter(include_in_schema=False)

# The kinds of object that space events are about (the filter's choices).
OBJECT_TYPES = ("space", "member", "project_member", "environment", "server", "credential",
                "project", "target", "task", "channel")


def compact(value: dict[str, Any] | None) -> str:
    """Before/after as one line of JSON (the template escapes it)."""
    if not value:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "),
                      default=str)


@router.get("/s/{space}/audit")
def audit_list(space: str, page: Page, action: str | None = None, actor: str | None = None,
               object_type: str | None = None, cursor: int | None = None) -> Response:
    filters = {"action": (action or "").strip(), "actor": (actor or "").strip(),
               "object_type": (object_type or "").strip()}
    result = audit.list_events(page.ctx, page.in_space, action=filters["action"] or None,
                               actor=filters["actor"] or None,
                               object_type=filters["object_type"] or None, cursor=cursor,
                               limit=50)
    return page.render("pages/audit.html", events=result.items, filters=filters,
                       object_types=OBJECT_TYPES, compact=compact,
                       next_url=page.next_url(result.next_cursor))
