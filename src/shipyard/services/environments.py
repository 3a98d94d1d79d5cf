"""Environments: named, ordered stages of a space (dev < test < staging < prod)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from shipyard.auth import rbac
from shipyard.errors import Conflict, InvalidInput
from shipyard.models import Environment, Project, Space, Target
from shipyard.services import audit, lookup
from shipyard.services.context import Context
from shipyard.services.errors_db import integrity
from shipyard.services.types import Name

FIELDS = ("name", "position")


class EnvironmentSpec(BaseModel):
    name: Name
    position: int | None = Field(default=None, ge=0, le=10_000,
                                 description="order, lowest first; default: after the last")


class EnvironmentUpdate(BaseModel):
    name: Name | None = None
    position: int | None = Field(default=None, ge=0, le=10_000)


def list_environments(ctx: Context, space: Space) -> list[Environment]:
    rbac.require(ctx.principal, "environment.read", space.id)
    return list(ctx.db.scalars(select(Environment).where(Environment.space_id == space.id)
                               .order_by(Environment.position, Environment.id)))


def create_environment(ctx: Context, space: Space, spec: EnvironmentSpec) -> Environment:
    rbac.require(ctx.principal, "environment.manage", space.id)
    position = spec.position
    if position is None:
        last = ctx.db.scalar(select(func.max(Environment.position))
                             .where(Environment.space_id == space.id))
        position = 0 if last is None else last + 10
    env = Environment(space_id=space.id, name=spec.name, position=position)
    with integrity(f"environment {spec.name!r}"):
        ctx.db.add(env)
        ctx.db.flush()
    audit.record(ctx, "environment.create", "environment", env.name, space_id=space.id,
                 after=audit.snapshot(env, FIELDS))
    return env


def update_environment(ctx: Context, space: Space, name: str,
                       update: EnvironmentUpdate) -> Environment:
    rbac.require(ctx.principal, "environment.manage", space.id)
    env = lookup.named(ctx, Environment, space.id, name)
    before = audit.snapshot(env, FIELDS)
    for key, value in update.model_dump(exclude_unset=True).items():
        if value is None:
            raise InvalidInput(f"{key} must not be null", field=key)
        setattr(env, key, value)
    with integrity(f"environment {env.name!r}"):
        ctx.db.flush()
    audit.record(ctx, "environment.update", "environment", env.name, space_id=space.id,
                 before=before, after=audit.snapshot(env, FIELDS))
    return env


def delete_environment(ctx: Context, space: Space, name: str) -> None:
    rbac.require(ctx.principal, "environment.manage", space.id)
    env = lookup.named(ctx, Environment, space.id, name)
    used_by = ctx.db.scalars(select(Project.name).join(Target, Target.project_id == Project.id)
                             .where(Target.environment_id == env.id)
                             .order_by(Project.name)).all()
    if used_by:
        raise Conflict(f"environment {name!r} is still used by the targets of "
                       f"{', '.join(used_by)}; delete those targets first", field="name")
    audit.record(ctx, "environment.delete", "environment", env.name, space_id=space.id,
                 before=audit.snapshot(env, FIELDS))
    with integrity(f"environment {name!r}"):
        ctx.db.delete(env)
        ctx.db.flush()
