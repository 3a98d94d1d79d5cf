"""Webhook deliveries as GitHub, GitLab and Gitee document them: their event headers,
minimal but realistic bodies (the fields their docs show, trimmed), and their signing,
implemented here independently of the code under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

ZERO = "0" * 40
REPO = {"id": 1296269, "name": "shop", "full_name": "acme/shop",
        "html_url": "https://git.example.com/acme/shop",
        "clone_url": "https://git.example.com/acme/shop.git"}


def github(event: str, body: dict[str, Any], secret: str | None,
           delivery: str | None = None) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd",
               "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "X-GitHub-Hook-ID": "292430182"}
    if secret is not None:
        digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return headers, raw


def gitlab(event: str, body: dict[str, Any], token: str | None,
           idempotency_key: str | None = None) -> tuple[dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "User-Agent": "GitLab/17.5.0",
               "X-Gitlab-Event": event, "X-Gitlab-Instance": "https://gitlab.example.com",
               "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
               "X-Gitlab-Event-UUID": str(uuid.uuid4()),
               "Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers, json.dumps(body).encode()


def gitee_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def gitee(event: str, body: dict[str, Any], secret: str | None, *, mode: str = "signature",
          timestamp_ms: int | None = None) -> tuple[dict[str, str], bytes]:
    """``mode``: "signature" (X-Gitee-Token is the signature of X-Gitee-Timestamp) or
    "password" (X-Gitee-Token is the secret itself)."""
    ts = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    headers = {"Content-Type": "application/json", "User-Agent": "git-oschina-hook",
               "X-Gitee-Event": event, "X-Gitee-Timestamp": ts, "X-Gitee-Ping": "false"}
    if secret is not None:
        headers["X-Gitee-Token"] = gitee_sign(secret, ts) if mode == "signature" else secret
    body = {**body, "timestamp": ts}
    return headers, json.dumps(body).encode()


# -- bodies ---------------------------------------------------------------------------------


def github_push(ref: str, after: str, *, deleted: bool = False) -> dict[str, Any]:
    return {"ref": ref, "before": ZERO if ref.startswith("refs/tags/") else "9" * 40,
            "after": ZERO if deleted else after, "created": False, "deleted": deleted,
            "forced": False, "base_ref": None,
            "compare": "https://git.example.com/acme/shop/compare/999...abc",
            "commits": [] if deleted else [{"id": after, "message": "feature",
                                            "author": {"name": "Mona", "email": "m@x.io"}}],
            "head_commit": None if deleted else {"id": after, "message": "feature"},
            "repository": REPO, "pusher": {"name": "mona", "email": "m@x.io"},
            "sender": {"login": "mona", "id": 583231, "type": "User"}}


def github_pull_request(action: str, base: str, merge_sha: str | None,
                        merged: bool) -> dict[str, Any]:
    return {"action": action, "number": 7,
            "pull_request": {"number": 7, "state": "closed" if action == "closed" else "open",
                             "title": "Faster checkout", "merged": merged,
                             "merge_commit_sha": merge_sha,
                             "merged_by": {"login": "hubot"} if merged else None,
                             "head": {"ref": "feature/checkout", "sha": "1" * 40},
                             "base": {"ref": base, "sha": "2" * 40}},
            "repository": REPO, "sender": {"login": "hubot", "id": 1}}


def gitlab_push(ref: str, after: str, *, tag: bool = False,
                deleted: bool = False) -> dict[str, Any]:
    return {"object_kind": "tag_push" if tag else "push",
            "event_name": "tag_push" if tag else "push",
            "before": ZERO if tag else "9" * 40, "after": ZERO if deleted else "a" * 40,
            "ref": ref, "ref_protected": True,
            "checkout_sha": None if deleted else after,
            "user_id": 4, "user_name": "John Smith", "user_username": "jsmith",
            "project_id": 15, "project": {"id": 15, "name": "shop",
                                          "path_with_namespace": "acme/shop",
                                          "default_branch": "main"},
            "commits": [] if deleted else [{"id": after, "message": "feature",
                                            "author": {"name": "John Smith"}}],
            "total_commits_count": 0 if deleted else 1,
            "repository": {"name": "shop", "homepage": "https://gitlab.example.com/acme/shop"}}


def gitlab_merge_request(action: str, target: str, merge_sha: str | None) -> dict[str, Any]:
    return {"object_kind": "merge_request", "event_type": "merge_request",
            "user": {"id": 1, "name": "Administrator", "username": "root"},
            "project": {"id": 15, "name": "shop", "path_with_namespace": "acme/shop"},
            "object_attributes": {
                "id": 99, "iid": 12, "title": "Faster checkout", "action": action,
                "state": "merged" if action == "merge" else "opened",
                "source_branch": "feature/checkout", "target_branch": target,
                "merge_commit_sha": merge_sha, "last_commit": {"id": "1" * 40}},
            "repository": {"name": "shop"}}


def gitee_push(ref: str, after: str, *, deleted: bool = False) -> dict[str, Any]:
    tag = ref.startswith("refs/tags/")
    return {"hook_name": "tag_push_hooks" if tag else "push_hooks", "hook_id": 1,
            "hook_url": "https://gitee.com/acme/shop/hooks/1/edit",
            "ref": ref, "before": "9" * 40, "after": ZERO if deleted else after,
            "created": False, "deleted": deleted,
            "commits": [] if deleted else [{"id": after, "message": "Update README.md"}],
            "head_commit": None if deleted else {"id": after},
            "repository": {"name": "shop", "full_name": "acme/shop"},
            "project": {"name": "shop", "full_name": "acme/shop"},
            "user_name": "Liwen", "user": {"name": "Liwen", "username": "liwen"},
            "pusher": {"name": "liwen"}, "sender": {"login": "liwen", "name": "Liwen"}}


def gitee_pull_request(action: str, target: str, merge_sha: str | None) -> dict[str, Any]:
    return {"hook_name": "merge_request_hooks", "hook_id": 1, "action": action,
            "action_desc": action, "number": 3, "iid": 3, "title": "Faster checkout",
            "state": "merged" if action == "merge" else "open",
            "merge_status": "can_be_merged", "merge_commit_sha": merge_sha,
            "source_branch": "feature/checkout", "target_branch": target,
            "pull_request": {"number": 3, "state": "merged" if action == "merge" else "open",
                             "merged": action == "merge", "merge_commit_sha": merge_sha,
                             "head": {"ref": "feature/checkout"}, "base": {"ref": target}},
            "project": {"name": "shop", "full_name": "acme/shop"},
            "sender": {"login": "liwen", "name": "Liwen"}}


# -- one delivery of a kind, per provider -----------------------------------------------------


def delivery(provider: str, kind: str, name: str, sha: str,
             secret: str | None) -> tuple[dict[str, str], bytes]:
    """A signed delivery: ``kind`` push (branch ``name``), tag (``name``) or merge (into
    branch ``name``, leaving ``sha``)."""
    if provider == "github":
        if kind == "merge":
            return github("pull_request", github_pull_request("closed", name, sha, True),
                          secret)
        prefix = "refs/tags/" if kind == "tag" else "refs/heads/"
        return github("push", github_push(prefix + name, sha), secret)
    if provider == "gitlab":
        if kind == "merge":
            return gitlab("Merge Request Hook", gitlab_merge_request("merge", name, sha),
                          secret)
        if kind == "tag":
            return gitlab("Tag Push Hook", gitlab_push("refs/tags/" + name, sha, tag=True),
                          secret)
        return gitlab("Push Hook", gitlab_push("refs/heads/" + name, sha), secret)
    if kind == "merge":
        return gitee("Merge Request Hook", gitee_pull_request("merge", name, sha), secret)
    if kind == "tag":
        return gitee("Tag Push Hook", gitee_push("refs/tags/" + name, sha), secret)
    return gitee("Push Hook", gitee_push("refs/heads/" + name, sha), secret)
