"""What a git host's webhook delivery becomes, whichever host sent it.

A provider (``github``, ``gitlab``, ``gitee``) authenticates a request in constant time
(NotAuthenticated when it carries no token or signature, PermissionDenied when it carries
a wrong or stale one), names the delivery (for replay protection), and parses the body
into a :class:`GitEvent` (a branch push, a tag push, a merged merge request) or an
:class:`Ignored` with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shipyard.errors import InvalidInput, NotFound

ZERO_SHA = "0" * 40
EVENT_KINDS = ("push", "tag", "merge")


@dataclass(frozen=True)
class Request:
    """An inbound delivery: header names lower-cased, the raw body, the time received."""

    headers: Mapping[str, str]
    body: bytes
    now: float

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "").strip()


@dataclass(frozen=True)
class GitEvent:
    """Something that may deploy: ``kind`` happened to ``ref`` (for a merge: the branch
    merged into), leaving ``sha`` (None when the host did not say) there."""

    kind: str
    ref: str
    sha: str | None
    sender: str
    summary: str


@dataclass(frozen=True)
class Ignored:
    """A delivery understood and deliberately not acted on."""

    reason: str
    kind: str | None = None
    ref: str | None = None
    sha: str | None = None
    sender: str | None = None


class Provider(Protocol):
    name: str
    title: str

    def authenticate(self, secret: str, request: Request, max_age: int) -> None: ...

    def event_name(self, request: Request) -> str: ...

    def delivery_id(self, request: Request) -> str: ...

    def replay_key(self, request: Request) -> str: ...

    def parse(self, request: Request) -> GitEvent | Ignored: ...


def providers() -> dict[str, Provider]:
    from shipyard.integrations.gitee import Gitee
    from shipyard.integrations.github import GitHub
    from shipyard.integrations.gitlab import GitLab

    found: list[Provider] = [GitHub(), GitLab(), Gitee()]
    return {p.name: p for p in found}


PROVIDER_NAMES = ("github", "gitlab", "gitee")


def provider(name: str) -> Provider:
    found = providers().get(name)
    if found is None:
        raise NotFound(f"no webhook provider {name!r}; one of {', '.join(PROVIDER_NAMES)}")
    return found


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of two secrets or signatures."""
    return hmac.compare_digest(expected.encode(), given.encode())


def hmac_sha256(key: str | bytes, message: bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    return hmac.new(raw, message, hashlib.sha256).digest()


def body_digest(request: Request, *extra: str) -> str:
    """A delivery id for hosts that send none: identical requests share it."""
    digest = hashlib.sha256()
    for part in extra:
        digest.update(part.encode() + b"\0")
    digest.update(request.body)
    return "sha256:" + digest.hexdigest()[:48]


def json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the webhook body is not JSON", field="body") from exc
    if not isinstance(data, dict):
        raise InvalidInput("the webhook body is not a JSON object", field="body")
    return data


def text(data: Any, *path: str) -> str | None:
    """``data[path[0]][path[1]]...`` if that is a non-empty string, else None."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data if isinstance(data, str) and data else None


def split_ref(ref: str | None) -> tuple[str | None, str | None]:
    """('push', branch) for refs/heads/..., ('tag', name) for refs/tags/..."""
    if not ref:
        return None, None
    if ref.startswith("refs/heads/"):
        return "push", ref.removeprefix("refs/heads/")
    if ref.startswith("refs/tags/"):
        return "tag", ref.removeprefix("refs/tags/")
    return None, ref


def push_event(kind: str | None, name: str | None, sha: str | None, sender: str,
               host: str) -> GitEvent | Ignored:
    """A branch or tag push, or why it is ignored (deletions, odd refs)."""
    if kind is None or not name:
        return Ignored(f"{host} push to {name or 'an unknown ref'} is neither a branch nor "
                       "a tag", ref=name, sender=sender)
    if not sha or sha == ZERO_SHA:
        what = "branch" if kind == "push" else "tag"
        return Ignored(f"{what} {name!r} was deleted", kind=kind, ref=name, sender=sender)
    label = f"push to {name}" if kind == "push" else f"tag {name}"
    return GitEvent(kind=kind, ref=name, sha=sha, sender=sender, summary=label)
