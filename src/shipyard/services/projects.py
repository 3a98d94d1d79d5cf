"""Projects: a git repository, how to build it, and with which variables."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.deploy import refs
from shipyard.models import Project, Space
from shipyard.services import audit, lookup, validation
from shipyard.services.context import Context
from shipyard.services.credentials import credential_id
from shipyard.services.errors_db import integrity
from shipyard.services.types import Description, Name, Variables, as_value_error

FIELDS = ("name", "description", "repo_url", "credential_id", "default_branch", "hooks",
          "excludes", "includes", "variables")


class BuildHooks(BaseModel):
    prev_deploy: str | None = Field(default=None, description="runs in the workspace first")
    post_deploy: str | None = Field(default=None, description="runs after, e.g. the build")

    @field_validator("prev_deploy", "post_deploy")
    @classmethod
    def _hook(cls, value: str | None, info: object) -> str | None:
        return as_value_error(lambda: validation.hook(value, getattr(info, "field_name",
                                                                     "hook")))


class ProjectSpec(BaseModel):
    name: Name
    repo: str = Field(description="git URL: https://, ssh://, git@host:path")
    default_branch: str = Field(description="the branch deploys default to; never assumed")
    description: Description = ""
    credential: Name | None = Field(default=None, description="credential for the repo")
    hooks: BuildHooks = Field(default_factory=BuildHooks)
    excludes: list[str] = Field(default_factory=list)
    includes: list[str] = Field(default_factory=list)
    variables: Variables = Field(default_factory=dict)

    @field_validator("default_branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        return as_value_error(lambda: refs.validate_branch_name(value, field="default_branch"))

    @field_validator("excludes", "includes")
    @classmethod
    def _patterns(cls, value: list[str], info: object) -> list[str]:
        return as_value_error(lambda: validation.patterns(
            value, getattr(info, "field_name", "excludes")))


def _check_repo(ctx: Context, url: str) -> str:
    return refs.validate_repo_url(url, allow_local=ctx.runtime.settings.allow_local_repos,
                                  field="repo")


def list_projects(ctx: Context, space: Space) -> list[Project]:
    who = ctx.principal
    rbac.require(who, "project.read", space.id)
    projects = ctx.db.scalars(select(Project).where(Project.space_id == space.id)
                              .order_by(Project.name))
    return [p for p in projects if rbac.allowed(who, "project.read", space.id, p.id)]


def get_project(ctx: Context, space: Space, name: str) -> Project:
    project = lookup.named(ctx, Project, space.id, name)
    rbac.require(ctx.principal, "project.read", space.id, project.id)
    return project


def create_project(ctx: Context, space: Space, spec: ProjectSpec) -> Project:
    rbac.require(ctx.principal, "project.create", space.id)
    project = Project(space_id=space.id)
    _assign(ctx, space, project, spec)
    with integrity(f"project {spec.name!r}"):
        ctx.db.add(project)
        ctx.db.flush()
    audit.record(ctx, "project.create", "project", project.name, space_id=space.id,
                 after=audit.snapshot(project, FIELDS))
    return project


def update_project(ctx: Context, space: Space, name: str,
                   changes: dict[str, object]) -> Project:
    project = lookup.named(ctx, Project, space.id, name)
    rbac.require(ctx.principal, "project.manage", space.id, project.id)
    current = spec_of(project).model_dump()
    merged = {**current, **changes}
    hooks = changes.get("hooks")
    if isinstance(hooks, dict):  # a patch of one hook keeps the other (null removes one)
        merged["hooks"] = {**current["hooks"], **hooks}
    spec = ProjectSpec.model_validate(merged)
    before = audit.snapshot(project, FIELDS)
    _assign(ctx, space, project, spec)
    with integrity(f"project {spec.name!r}"):
        ctx.db.flush()
    audit.record(ctx, "project.update", "project", project.name, space_id=space.id,
                 before=before, after=audit.snapshot(project, FIELDS))
    return project


def delete_project(ctx: Context, space: Space, name: str) -> None:
    project = lookup.named(ctx, Project, space.id, name)
    rbac.require(ctx.principal, "project.manage", space.id, project.id)
    audit.record(ctx, "project.delete", "project", project.name, space_id=space.id,
                 before=audit.snapshot(project, FIELDS))
    with integrity(f"project {name!r}"):
        ctx.db.delete(project)
        ctx.db.flush()


def _assign(ctx: Context, space: Space, project: Project, spec: ProjectSpec) -> None:
    project.name = spec.name
    project.description = spec.description
    project.repo_url = _check_repo(ctx, spec.repo)
    project.default_branch = spec.default_branch
    project.credential_id = credential_id(ctx, space, spec.credential, "credential")
    project.hooks = spec.hooks.model_dump(exclude_none=True)
    project.excludes = list(spec.excludes)
    project.includes = list(spec.includes)
    project.variables = dict(spec.variables)


def spec_of(project: Project) -> ProjectSpec:
    return ProjectSpec.model_construct(
        name=project.name, repo=project.repo_url, default_branch=project.default_branch,
        description=project.description,
        credential=project.credential.name if project.credential else None,
        hooks=BuildHooks.model_validate(project.hooks or {}),
        excludes=list(project.excludes or []), includes=list(project.includes or []),
        variables=dict(project.variables or {}))
