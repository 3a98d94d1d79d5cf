"""What the API returns. Secrets never appear here: credentials show ``has_secret``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from shipyard.models import (
    ApiToken,
    AuditEvent,
    Credential,
    DeployTask,
    Environment,
    Project,
    Server,
    Space,
    Target,
    User,
)
from shipyard.services.tasks import TaskView

T = TypeVar("T")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: int | None = None


class UserOut(BaseModel):
    username: str
    email: str | None
    display_name: str
    is_super: bool
    is_active: bool
    timezone: str
    last_login_at: datetime | None

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(username=u.username, email=u.email, display_name=u.display_name,
                   is_super=u.is_super, is_active=u.is_active, timezone=u.timezone,
                   last_login_at=u.last_login_at)


class SpaceOut(BaseModel):
    name: str
    display_name: str
    role: str | None = None

    @classmethod
    def of(cls, s: Space, role: str | None = None) -> SpaceOut:
        return cls(name=s.name, display_name=s.display_name, role=role)


class MemberOut(BaseModel):
    username: str
    display_name: str
    role: str


class MeOut(BaseModel):
    user: UserOut
    spaces: list[SpaceOut]
    current_space: str | None = None
    csrf_token: str | None = None


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: ApiToken) -> TokenOut:
        return cls(id=t.id, name=t.name, prefix=t.prefix, created_at=t.created_at,
                   last_used_at=t.last_used_at, expires_at=t.expires_at,
                   revoked_at=t.revoked_at)


class NewTokenOut(TokenOut):
    token: str


class EnvironmentOut(BaseModel):
    name: str
    position: int

    @classmethod
    def of(cls, e: Environment) -> EnvironmentOut:
        return cls(name=e.name, position=e.position)


class CredentialOut(BaseModel):
    name: str
    kind: str
    username: str | None
    public_key: str | None
    fingerprint: str
    has_secret: bool
    updated_at: datetime

    @classmethod
    def of(cls, c: Credential) -> CredentialOut:
        return cls(name=c.name, kind=c.kind, username=c.username,
                   public_key=c.public if c.kind == "ssh_key" else None,
                   fingerprint=c.fingerprint, has_secret=bool(c.secret),
                   updated_at=c.updated_at)


class ServerOut(BaseModel):
    name: str
    host: str
    port: int
    user: str
    labels: list[str]
    credential: str | None
    host_key: str | None
    host_key_recorded_at: datetime | None

    @classmethod
    def of(cls, s: Server) -> ServerOut:
        return cls(name=s.name, host=s.host, port=s.port, user=s.user,
                   labels=list(s.labels or []),
                   credential=s.credential.name if s.credential else None,
                   host_key=s.host_key, host_key_recorded_at=s.host_key_recorded_at)


class ProjectOut(BaseModel):
    name: str
    description: str
    repo: str
    default_branch: str
    credential: str | None
    hooks: dict[str, str]
    excludes: list[str]
    includes: list[str]
    variables: dict[str, str]

    @classmethod
    def of(cls, p: Project) -> ProjectOut:
        return cls(name=p.name, description=p.description, repo=p.repo_url,
                   default_branch=p.default_branch,
                   credential=p.credential.name if p.credential else None,
                   hooks=dict(p.hooks or {}), excludes=list(p.excludes or []),
                   includes=list(p.includes or []), variables=dict(p.variables or {}))


class TargetOut(BaseModel):
    project: str
    environment: str
    servers: list[str]
    labels: list[str]
    webroot: str
    releases: str
    keep: int
    hooks: dict[str, str]
    strategy: dict[str, Any]
    approval: dict[str, Any]
    developers_can_rollback: bool
    zone: str

    @classmethod
    def of(cls, t: Target) -> TargetOut:
        return cls(project=t.project.name, environment=t.environment.name,
                   servers=[s.name for s in t.servers], labels=list(t.server_labels or []),
                   webroot=t.webroot, releases=t.releases_dir, keep=t.keep,
                   hooks=dict(t.hooks or {}), strategy=dict(t.strategy or {}),
                   approval={"required": t.approvals_required,
                             "allow_self_approval": t.allow_self_approval},
                   developers_can_rollback=t.developers_can_rollback, zone=t.zone or "")


class ApprovalOut(BaseModel):
    user: str
    decision: str
    comment: str
    at: datetime


class TaskOut(BaseModel):
    id: int
    kind: str
    title: str
    project: str
    environment: str
    ref: str
    commit: str | None
    servers: list[str] | None
    state: str
    submitted_by: str
    reject_reason: str | None
    error: str | None
    rollback_to: str | None
    release: str | None
    parent_task_id: int | None
    cancel_requested: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    approvals: list[ApprovalOut] | None = None

    @classmethod
    def of(cls, v: TaskView, approvals: list[ApprovalOut] | None = None) -> TaskOut:
        t: DeployTask = v.task
        return cls(id=t.id, kind=t.kind.value, title=t.title, project=v.project,
                   environment=v.environment, ref=t.ref, commit=t.commit_sha,
                   servers=v.servers, state=t.state.value, submitted_by=v.submitted_by,
                   reject_reason=t.reject_reason, error=t.error, rollback_to=t.rollback_to,
                   release=t.release, parent_task_id=t.parent_task_id,
                   cancel_requested=t.cancel_requested_at is not None,
                   created_at=t.created_at, updated_at=t.updated_at, started_at=t.started_at,
                   finished_at=t.finished_at, approvals=approvals)


class AuditOut(BaseModel):
    id: int
    actor: str
    action: str
    object_type: str
    object_id: str | None
    address: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, e: AuditEvent) -> AuditOut:
        return cls(id=e.id, actor=e.actor, action=e.action, object_type=e.object_type,
                   object_id=e.object_id, address=e.address, before=e.before, after=e.after,
                   created_at=e.created_at)


class RefOut(BaseModel):
    name: str
    sha: str
    date: datetime | None = None


class CommitOut(BaseModel):
    sha: str
    short_sha: str
    author: str
    email: str
    date: datetime
    message: str
