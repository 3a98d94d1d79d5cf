"""The releases kept on a target's servers, which one is live where, and their story
(commit, task, who, when) from Shipyard's records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.deploy import release as remote
from shipyard.deploy.plan import HostTarget
from shipyard.deploy.transport import SSHConnection
from shipyard.models import DeployTask, HostRelease, Project, Target, User
from shipyard.services import lookup
from shipyard.services.context import Context
from shipyard.services.fleetops import on_each_host
from shipyard.services.targets import resolve_servers


@dataclass
class KeptRelease:
    id: str
    hosts: list[str] = field(default_factory=list)
    live_on: list[str] = field(default_factory=list)
    commit: str | None = None
    task_id: int | None = None
    deployed_by: str | None = None
    created_at: datetime | None = None


@dataclass
class ReleaseReport:
    releases: list[KeptRelease]
    live: dict[str, str | None]          # host -> live release id
    errors: dict[str, str]               # host -> why it could not be read

    @property
    def hosts_disagree(self) -> bool:
        return len({v for v in self.live.values()}) > 1


def list_releases(ctx: Context, project: Project, environment: str) -> ReleaseReport:
    rbac.require(ctx.principal, "target.read", project.space_id, project.id)
    target = lookup.target(ctx, project, environment)
    return _report(ctx, target)


def _report(ctx: Context, target: Target) -> ReleaseReport:
    servers = resolve_servers(ctx, target)

    async def read(conn: SSHConnection, host: HostTarget) -> list[remote.ReleaseInfo]:
        return await remote.list_releases(conn, target.releases_dir, target.webroot)

    results = on_each_host(ctx, servers, read)
    by_id: dict[str, KeptRelease] = {}
    live: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for result in results:
        if result.error is not None or result.value is None:
            errors[result.host] = result.error or "unknown error"
            continue
        live[result.host] = None
        for info in result.value:
            kept = by_id.setdefault(info.id, KeptRelease(info.id))
            kept.hosts.append(result.host)
            if info.live:
                kept.live_on.append(result.host)
                live[result.host] = info.id
    rows = ctx.db.execute(
        select(HostRelease.release, HostRelease.commit_sha, HostRelease.task_id,
               HostRelease.created_at, User.username)
        .outerjoin(DeployTask, DeployTask.id == HostRelease.task_id)
        .outerjoin(User, User.id == DeployTask.submitted_by_id)
        .where(HostRelease.target_id == target.id, HostRelease.release.in_(list(by_id))))
    for release_id, sha, task_id, created, username in rows:
        kept = by_id[release_id]
        kept.commit, kept.task_id, kept.created_at, kept.deployed_by = sha, task_id, created, \
            username
    ordered = sorted(by_id.values(), key=lambda r: remote.release_sort_key(r.id), reverse=True)
    return ReleaseReport(ordered, live, errors)
