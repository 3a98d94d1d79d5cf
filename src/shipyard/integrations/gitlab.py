"""GitLab: the secret token comes back verbatim in ``X-Gitlab-Token``;
``X-Gitlab-Event`` is ``Push Hook``, ``Tag Push Hook`` or ``Merge Request Hook`` (merged
when ``object_attributes.action`` is ``merge``). ``Idempotency-Key`` stays the same when
GitLab retries a delivery (``X-Gitlab-Event-UUID`` on older versions)."""

from __future__ import annotations

from shipyard.errors import NotAuthenticated, PermissionDenied
from shipyard.integrations.inbound import (
    GitEvent,
    Ignored,
    Request,
    body_digest,
    json_body,
    push_event,
    same,
    split_ref,
    text,
)

TOKEN_HEADER = "X-Gitlab-Token"  # noqa: S105 (a header name)


class GitLab:
    name = "gitlab"
    title = "GitLab"

    def authenticate(self, secret: str, request: Request, max_age: int) -> None:
        given = request.header(TOKEN_HEADER)
        if not given:
            raise NotAuthenticated(f"missing {TOKEN_HEADER}: set the webhook's secret token on "
                                   "GitLab")
        if not same(secret, given):
            raise PermissionDenied(f"{TOKEN_HEADER} is not this project's webhook secret")

    def event_name(self, request: Request) -> str:
        return request.header("X-Gitlab-Event")

    def delivery_id(self, request: Request) -> str:
        return (request.header("Idempotency-Key") or request.header("X-Gitlab-Event-UUID")
                )[:128] or body_digest(request, self.name)

    def replay_key(self, request: Request) -> str:
        return self.delivery_id(request)

    def parse(self, request: Request) -> GitEvent | Ignored:
        event = self.event_name(request)
        data = json_body(request.body)
        sender = (text(data, "user_username") or text(data, "user_name")
                  or text(data, "user", "username") or "")
        if event in ("Push Hook", "Tag Push Hook"):
            kind, name = split_ref(text(data, "ref"))
            sha = text(data, "after")
            if sha and sha != "0" * 40:
                sha = text(data, "checkout_sha") or sha
            return push_event(kind, name, sha, sender, self.title)
        if event == "Merge Request Hook":
            attrs = data.get("object_attributes") or {}
            iid = attrs.get("iid")
            target = text(attrs, "target_branch")
            action = attrs.get("action")
            if action != "merge":
                return Ignored(f"merge request !{iid} {action or 'changed'}: only merged "
                               "merge requests deploy", kind="merge", ref=target,
                               sender=sender)
            if not target:
                return Ignored(f"merge request !{iid} names no target branch", sender=sender)
            sha = text(attrs, "merge_commit_sha") or text(attrs, "squash_commit_sha")
            title = text(attrs, "title") or ""
            return GitEvent(kind="merge", ref=target, sha=sha, sender=sender,
                            summary=f"MR !{iid} merged into {target}: {title}".strip())
        return Ignored(f"GitLab event {event or '(none)'!r} is not one Shipyard acts on "
                       "(Push Hook, Tag Push Hook, Merge Request Hook)", sender=sender)
