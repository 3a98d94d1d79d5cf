"""GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``;
``X-GitHub-Event`` (``push`` for branches and tags, ``pull_request`` closed with
``merged: true`` for a merge, ``ping`` when the hook is created); ``X-GitHub-Delivery``
is a GUID per delivery (kept on redelivery); a delivery counts as seen by its signed
body. Bodies are JSON, or a form whose
``payload`` field is JSON (the hook's content type)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from shipyard.errors import NotAuthenticated, PermissionDenied
from shipyard.integrations.inbound import (
    GitEvent,
    Ignored,
    Request,
    body_digest,
    hmac_sha256,
    json_body,
    push_event,
    same,
    split_ref,
    text,
)

SIGNATURE = "X-Hub-Signature-256"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256(secret, body).hex()


class GitHub:
    name = "github"
    title = "GitHub"

    def authenticate(self, secret: str, request: Request, max_age: int) -> None:
        given = request.header(SIGNATURE)
        if not given:
            raise NotAuthenticated(f"missing {SIGNATURE}: set the webhook's secret on GitHub")
        if not same(signature(secret, request.body), given):
            raise PermissionDenied(f"{SIGNATURE} does not match the body and secret")

    def event_name(self, request: Request) -> str:
        return request.header("X-GitHub-Event")

    def delivery_id(self, request: Request) -> str:
        return request.header("X-GitHub-Delivery")[:128] or body_digest(request, self.name)

    def replay_key(self, request: Request) -> str:
        # The signature covers the body, not the delivery header: a captured delivery
        # resent under a new X-GitHub-Delivery must still count as seen.
        return body_digest(request, self.name)

    def parse(self, request: Request) -> GitEvent | Ignored:
        event = self.event_name(request)
        data = _payload(request)
        sender = text(data, "sender", "login") or text(data, "pusher", "name") or ""
        if event == "ping":
            return Ignored("ping: the webhook is set up", sender=sender)
        if event == "push":
            kind, name = split_ref(text(data, "ref"))
            sha = None if data.get("deleted") else text(data, "after")
            return push_event(kind, name, sha, sender, self.title)
        if event == "pull_request":
            pr = data.get("pull_request") or {}
            number = data.get("number") or pr.get("number")
            base = text(pr, "base", "ref")
            action = data.get("action")
            if action != "closed" or not pr.get("merged"):
                state = "closed without merging" if action == "closed" else action
                return Ignored(f"pull request #{number} {state}: only merged pull requests "
                               "deploy", kind="merge", ref=base, sender=sender)
            if not base:
                return Ignored(f"pull request #{number} names no base branch", sender=sender)
            title = text(pr, "title") or ""
            return GitEvent(kind="merge", ref=base, sha=text(pr, "merge_commit_sha"),
                            sender=text(pr, "merged_by", "login") or sender,
                            summary=f"PR #{number} merged into {base}: {title}".strip())
        return Ignored(f"GitHub event {event or '(none)'!r} is not one Shipyard acts on "
                       "(push, pull_request)", sender=sender)


def _payload(request: Request) -> dict[str, Any]:
    if request.header("Content-Type").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(request.body.decode("utf-8", "replace"))
        return json_body((form.get("payload") or [""])[0].encode())
    return json_body(request.body)
