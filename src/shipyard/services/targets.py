"""Targets: a project in one environment: which servers, where releases live, how many
to keep, release hooks, rollout strategy and approval policy."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.errors import InvalidInput
from shipyard.models import Environment, Project, Server, Space, Target
from shipyard.services import audit, lookup, validation
from shipyard.services.context import Context
from shipyard.services.errors_db import integrity
from shipyard.services.types import Labels, Name, as_value_error

FIELDS = ("environment_id", "server_labels", "webroot", "releases_dir", "keep", "hooks",
          "strategy", "approvals_required", "allow_self_approval", "developers_can_rollback",
          "zone")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}


def parse_duration(value: float | int | str, field: str = "pause") -> float:
    """Seconds from 10, 2.5, '10s', '500ms', '2m' or '1h'."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise InvalidInput(f"{field} must be a duration like 10s, 2m or 500ms",
                               field=field)
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 <= seconds <= 86_400:
        raise InvalidInput(f"{field} must be between 0 and 24h", field=field)
    return seconds


class ReleaseHooks(BaseModel):
    prev_release: str | None = Field(default=None, description="in the new release dir, "
                                     "before the switch")
    post_release: str | None = Field(default=None, description="after the switch")

    @field_validator("prev_release", "post_release")
    @classmethod
    def _hook(cls, value: str | None, info: object) -> str | None:
        return as_value_error(lambda: validation.hook(value, getattr(info, "field_name",
                                                                     "hook")))


class Strategy(BaseModel):
    batch: int | None = Field(default=None, ge=1, le=10_000,
                              description="hosts per batch; none: all at once")
    pause: float = Field(default=0, description="seconds (or '10s') between batches")
    on_failure: Literal["stop", "continue"] = "stop"
    parallel: int = Field(default=20, ge=1, le=500, description="hosts at once")

    @field_validator("pause", mode="before")
    @classmethod
    def _pause(cls, value: float | str) -> float:
        return as_value_error(lambda: parse_duration(value))


class ApprovalPolicy(BaseModel):
    required: int = Field(default=0, ge=0, le=10, description="approvals from MASTER+")
    allow_self_approval: bool = False


class TargetSpec(BaseModel):
    environment: Name
    servers: list[Name] = Field(default_factory=list, description="server names")
    labels: Labels = Field(default_factory=list, description="and/or servers with a label")
    webroot: str = Field(description="the symlink that points at the live release")
    releases: str = Field(description="the directory that holds release directories")
    keep: int = Field(default=8, ge=2, le=100)
    hooks: ReleaseHooks = Field(default_factory=ReleaseHooks)
    strategy: Strategy = Field(default_factory=Strategy)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    developers_can_rollback: bool = True
    zone: str = Field(default="", max_length=64, pattern=r"^[a-z0-9._-]*$",
                      description="distributed mode: queue of the workers that reach these "
                                  "servers ('' = the default queue)")

    @field_validator("webroot", "releases")
    @classmethod
    def _path(cls, value: str, info: object) -> str:
        return as_value_error(lambda: validation.remote_path(
            value, getattr(info, "field_name", "path")))

    @model_validator(mode="after")
    def _paths(self) -> TargetSpec:
        self.webroot, self.releases = validation.webroot_and_releases(self.webroot,
                                                                      self.releases)
        return self


def list_targets(ctx: Context, project: Project) -> list[Target]:
    rbac.require(ctx.principal, "target.read", project.space_id, project.id)
    return sorted(ctx.db.scalars(select(Target).where(Target.project_id == project.id)),
                  key=lambda t: (t.environment.position, t.environment.name))


def get_target(ctx: Context, project: Project, environment: str) -> Target:
    rbac.require(ctx.principal, "target.read", project.space_id, project.id)
    return lookup.target(ctx, project, environment)


def create_target(ctx: Context, space: Space, project: Project, spec: TargetSpec) -> Target:
    rbac.require(ctx.principal, "target.manage", space.id, project.id)
    target = Target(space_id=space.id, project_id=project.id)
    _assign(ctx, space, target, spec)
    with integrity(f"a target for {project.name!r} in {spec.environment!r}",
                   field="environment"):
        ctx.db.add(target)
        ctx.db.flush()
    audit.record(ctx, "target.create", "target", f"{project.name}/{spec.environment}",
                 space_id=space.id, after=snapshot(target))
    return target


def update_target(ctx: Context, space: Space, project: Project, environment: str,
                  changes: dict[str, object]) -> Target:
    rbac.require(ctx.principal, "target.manage", space.id, project.id)
    target = lookup.target(ctx, project, environment)
    current = spec_of(target).model_dump()
    merged = {**current, **changes}
    for key in ("hooks", "strategy", "approval"):
        # A patch of a sub-object changes the fields it names and keeps the others:
        # {"approval": {"allow_self_approval": true}} must not reset ``required`` to 0.
        patch = changes.get(key)
        if isinstance(patch, dict):
            merged[key] = {**current[key], **patch}
    spec = TargetSpec.model_validate(merged)
    before = snapshot(target)
    _assign(ctx, space, target, spec)
    with integrity(f"a target for {project.name!r} in {spec.environment!r}",
                   field="environment"):
        ctx.db.flush()
    audit.record(ctx, "target.update", "target", f"{project.name}/{spec.environment}",
                 space_id=space.id, before=before, after=snapshot(target))
    return target


def delete_target(ctx: Context, space: Space, project: Project, environment: str) -> None:
    rbac.require(ctx.principal, "target.manage", space.id, project.id)
    target = lookup.target(ctx, project, environment)
    audit.record(ctx, "target.delete", "target", f"{project.name}/{environment}",
                 space_id=space.id, before=snapshot(target))
    ctx.db.delete(target)
    ctx.db.flush()


def resolve_servers(ctx: Context, target: Target) -> list[Server]:
    """The target's servers: those named plus those carrying one of its labels."""
    chosen = {s.id: s for s in target.servers}
    if target.server_labels:
        wanted = set(target.server_labels)
        for server in ctx.db.scalars(select(Server).where(Server.space_id == target.space_id)):
            if wanted & set(server.labels or []):
                chosen[server.id] = server
    return sorted(chosen.values(), key=lambda s: s.name)


def _assign(ctx: Context, space: Space, target: Target, spec: TargetSpec) -> None:
    env = ctx.db.scalar(select(Environment).where(Environment.space_id == space.id,
                                                  Environment.name == spec.environment))
    if env is None:
        raise InvalidInput(f"no environment named {spec.environment!r} in this space",
                           field="environment")
    servers = []
    for name in spec.servers:
        server = ctx.db.scalar(select(Server).where(Server.space_id == space.id,
                                                    Server.name == name))
        if server is None:
            raise InvalidInput(f"no server named {name!r} in this space", field="servers")
        servers.append(server)
    target.environment_id = env.id
    target.environment = env
    target.servers = servers
    target.server_labels = list(spec.labels)
    target.webroot, target.releases_dir, target.keep = spec.webroot, spec.releases, spec.keep
    target.hooks = spec.hooks.model_dump(exclude_none=True)
    target.strategy = spec.strategy.model_dump()
    target.approvals_required = spec.approval.required
    target.allow_self_approval = spec.approval.allow_self_approval
    target.developers_can_rollback = spec.developers_can_rollback
    target.zone = spec.zone


def snapshot(target: Target) -> dict[str, object]:
    out = audit.snapshot(target, FIELDS)
    out["servers"] = [s.name for s in target.servers]
    return out


def spec_of(target: Target) -> TargetSpec:
    return TargetSpec.model_construct(
        environment=target.environment.name, servers=[s.name for s in target.servers],
        labels=list(target.server_labels or []), webroot=target.webroot,
        releases=target.releases_dir, keep=target.keep,
        hooks=ReleaseHooks.model_validate(target.hooks or {}),
        strategy=Strategy.model_validate(target.strategy or {}),
        approval=ApprovalPolicy.model_construct(required=target.approvals_required,
                                                allow_self_approval=target.allow_self_approval),
        developers_can_rollback=target.developers_can_rollback, zone=target.zone or "")
