"""Gitee: ``X-Gitee-Token`` carries either the webhook password itself, or (signing
mode) the signature base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)) for the
``X-Gitee-Timestamp`` (ms) sent with it; a signed timestamp older than the allowed age
is refused. ``X-Gitee-Event`` is ``Push Hook``, ``Tag Push Hook`` or ``Merge Request
Hook`` (merged when ``action`` is ``merge``). Gitee sends no delivery id: a delivery is
named by its timestamp and body."""

from __future__ import annotations

import base64
from urllib.parse import unquote

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

TOKEN_HEADER = "X-Gitee-Token"  # noqa: S105 (a header name)
TIMESTAMP_HEADER = "X-Gitee-Timestamp"


def signature(secret: str, timestamp: str) -> str:
    return base64.b64encode(hmac_sha256(secret, f"{timestamp}\n{secret}".encode())).decode()


class Gitee:
    name = "gitee"
    title = "Gitee"

    def authenticate(self, secret: str, request: Request, max_age: int) -> None:
        given = request.header(TOKEN_HEADER)
        if not given:
            raise NotAuthenticated(f"missing {TOKEN_HEADER}: set the webhook's password or signing "
                                   "key on Gitee")
        timestamp = request.header(TIMESTAMP_HEADER)
        # Both comparisons always run: the time taken says nothing about which matched.
        as_password = same(secret, given)
        as_signature = bool(timestamp) and same(signature(secret, timestamp), unquote(given))
        if as_signature:
            if not timestamp.isdigit() or abs(request.now - int(timestamp) / 1000) > max_age:
                raise PermissionDenied(f"{TIMESTAMP_HEADER} is more than {max_age}s away from now: "
                                       "a stale or replayed delivery")
            return
        if not as_password:
            raise PermissionDenied(f"{TOKEN_HEADER} is neither this project's webhook password nor "
                                   "its signature")

    def event_name(self, request: Request) -> str:
        return request.header("X-Gitee-Event")

    def delivery_id(self, request: Request) -> str:
        return body_digest(request, self.name, request.header(TIMESTAMP_HEADER))

    def replay_key(self, request: Request) -> str:
        return self.delivery_id(request)

    def parse(self, request: Request) -> GitEvent | Ignored:
        event = self.event_name(request)
        data = json_body(request.body)
        sender = (text(data, "sender", "login") or text(data, "user_name")
                  or text(data, "pusher", "name") or "")
        if event in ("Push Hook", "Tag Push Hook"):
            kind, name = split_ref(text(data, "ref"))
            sha = None if data.get("deleted") else text(data, "after")
            return push_event(kind, name, sha, sender, self.title)
        if event == "Merge Request Hook":
            pr = data.get("pull_request") or {}
            number = data.get("number") or pr.get("number")
            target = text(data, "target_branch") or text(pr, "base", "ref")
            if data.get("action") != "merge":
                return Ignored(f"pull request #{number} {data.get('action') or 'changed'}: "
                               "only merged pull requests deploy", kind="merge", ref=target,
                               sender=sender)
            if not target:
                return Ignored(f"pull request #{number} names no target branch",
                               sender=sender)
            sha = text(data, "merge_commit_sha") or text(pr, "merge_commit_sha")
            title = text(data, "title") or text(pr, "title") or ""
            return GitEvent(kind="merge", ref=target, sha=sha, sender=sender,
                            summary=f"PR #{number} merged into {target}: {title}".strip())
        return Ignored(f"Gitee event {event or '(none)'!r} is not one Shipyard acts on "
                       "(Push Hook, Tag Push Hook, Merge Request Hook)", sender=sender)
