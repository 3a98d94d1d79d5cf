"""Finding objects, always inside the caller's space: an id or name from another space is
simply not found."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select

from shipyard.errors import NotFound
from shipyard.models import (
    Credential,
    DeployTask,
    Environment,
    Project,
    Server,
    Space,
    Target,
    User,
)
from shipyard.services.context import Context

T = TypeVar("T", Credential, Environment, Project, Server)


def space(ctx: Context, name: str) -> Space:
    """The space named ``name`` if the caller belongs to it; otherwise NotFound, so that
    outsiders cannot tell which spaces exist."""
    found = ctx.db.scalar(select(Space).where(Space.name == name))
    if found is None or not ctx.principal.is_member(found.id):
        raise NotFound(f"no space named {name!r}")
    return found


def named(ctx: Context, model: type[T], space_id: int, name: str) -> T:
    found = ctx.db.scalar(select(model).where(model.space_id == space_id, model.name == name))
    if found is None:
        raise NotFound(f"no {model.__tablename__.rstrip('s')} named {name!r} in this space")
    return found


def user(ctx: Context, username: str) -> User:
    found = ctx.db.scalar(select(User).where(User.username == username))
    if found is None:
        raise NotFound(f"no user named {username!r}")
    return found


def target(ctx: Context, project: Project, environment_name: str) -> Target:
    env = named(ctx, Environment, project.space_id, environment_name)
    found = ctx.db.scalar(select(Target).where(Target.project_id == project.id,
                                               Target.environment_id == env.id))
    if found is None:
        raise NotFound(f"project {project.name!r} has no target in {environment_name!r}")
    return found


def task(ctx: Context, space_id: int, task_id: int) -> DeployTask:
    found = ctx.db.get(DeployTask, task_id)
    if found is None or found.space_id != space_id:
        raise NotFound(f"no task {task_id} in this space")
    return found
