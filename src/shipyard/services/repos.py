"""A project's git repository as the build host sees it: a bare mirror per project,
fetched with the project's credential; branches, tags, commits, and pinning refs."""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shipyard.auth import rbac
from shipyard.deploy import refs
from shipyard.deploy.git import Commit, Mirror, Ref
from shipyard.errors import GitError, InvalidInput
from shipyard.models import Credential, Project
from shipyard.services.context import Context


def mirror_path(ctx: Context, project: Project) -> Path:
    return ctx.runtime.settings.home / "mirrors" / f"{project.id}.git"


@contextmanager
def mirror(ctx: Context, project: Project) -> Iterator[Mirror]:
    """The project's mirror, with its credential available to git for the duration."""
    with _git_auth(ctx, project.credential) as env:
        yield Mirror(mirror_path(ctx, project), project.repo_url, env=env,
                     allow_local=ctx.runtime.settings.allow_local_repos)


@contextmanager
def _git_auth(ctx: Context, cred: Credential | None) -> Iterator[dict[str, str]]:
    if cred is None:
        yield {}
        return
    secret = ctx.runtime.vault.decrypt(cred.secret)
    if cred.kind == "ssh_key":
        # The key exists on disk (0600, private dir) only while git runs.
        with tempfile.TemporaryDirectory(prefix="shipyard-git-") as tmp:
            key = Path(tmp) / "key"
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secret)
            yield {"GIT_SSH_COMMAND": f"ssh -o BatchMode=yes -o IdentitiesOnly=yes -i {key}"}
        return
    user = cred.username or "oauth2"
    basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
    yield {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
           "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}


def resolve(ctx: Context, project: Project, ref: str) -> str:
    """Fetch, then pin ``ref`` (branch, tag or commit) to a full commit SHA. An unknown
    ref is refused with a message naming it."""
    ref = refs.validate_ref(ref, field="ref")
    with mirror(ctx, project) as m:
        m.fetch()
        try:
            return m.resolve(ref)
        except GitError as exc:
            raise InvalidInput(f"unknown ref {ref!r} in {project.name}: no such branch, tag "
                               "or commit", field="ref") from exc


@contextmanager
def _fetched(ctx: Context, project: Project, fetch: bool) -> Iterator[Mirror]:
    rbac.require(ctx.principal, "project.read", project.space_id, project.id)
    with mirror(ctx, project) as m:
        if fetch or not m.exists:
            m.fetch()
        yield m


def branches(ctx: Context, project: Project, *, fetch: bool = True) -> list[Ref]:
    with _fetched(ctx, project, fetch) as m:
        return m.branches()


def tags(ctx: Context, project: Project, *, fetch: bool = True) -> list[Ref]:
    with _fetched(ctx, project, fetch) as m:
        return m.tags()


def commits(ctx: Context, project: Project, ref: str | None, *, limit: int = 20,
            fetch: bool = True) -> list[Commit]:
    if not 1 <= limit <= 200:
        raise InvalidInput("limit must be from 1 to 200", field="limit")
    ref = refs.validate_ref(ref or project.default_branch, field="ref")
    with _fetched(ctx, project, fetch) as m:
        try:
            return m.commits(ref, limit=limit)
        except GitError as exc:
            raise InvalidInput(f"unknown ref {ref!r} in {project.name}", field="ref") from exc
