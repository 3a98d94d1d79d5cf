"""Spaces (tenants) and their members, with space- and project-level roles."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.errors import AlreadyExists, InvalidInput, NotFound
from shipyard.models import Project, ProjectMember, Role, Space, SpaceMember, User
from shipyard.services import audit, lookup
from shipyard.services.context import Context
from shipyard.services.types import Name, Username


class SpaceSpec(BaseModel):
    name: Name
    display_name: str = Field(default="", max_length=200)
    owner: Username | None = Field(default=None, description="username made OWNER")


class SpaceUpdate(BaseModel):
    display_name: str = Field(max_length=200)


class MemberSpec(BaseModel):
    role: str = Field(description="owner, master, developer or reporter",
                      examples=["developer"])

    def parsed_role(self) -> Role:
        try:
            return Role.parse(self.role)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="role") from None


def list_spaces(ctx: Context) -> list[Space]:
    who = ctx.principal
    query = select(Space).order_by(Space.name)
    if not who.is_super:
        ids = set(who.space_roles) | {sid for sid, _ in who.project_roles.values()}
        query = query.where(Space.id.in_(ids))
    return list(ctx.db.scalars(query))


def create_space(ctx: Context, spec: SpaceSpec) -> Space:
    rbac.require(ctx.principal, "space.create")
    if ctx.db.scalar(select(Space.id).where(Space.name == spec.name)):
        raise AlreadyExists(f"a space named {spec.name!r} already exists", field="name")
    owner = lookup.user(ctx, spec.owner) if spec.owner else None
    space = Space(name=spec.name, display_name=spec.display_name)
    ctx.db.add(space)
    ctx.db.flush()
    audit.record(ctx, "space.create", "space", space.name, space_id=space.id,
                 after=audit.snapshot(space, ("name", "display_name")))
    if owner:
        set_member(ctx, space, owner.username, Role.OWNER, _checked=True)
    return space


def update_space(ctx: Context, space: Space, update: SpaceUpdate) -> Space:
    rbac.require(ctx.principal, "space.update", space.id)
    before = audit.snapshot(space, ("display_name",))
    space.display_name = update.display_name
    audit.record(ctx, "space.update", "space", space.name, space_id=space.id, before=before,
                 after=audit.snapshot(space, ("display_name",)))
    return space


def delete_space(ctx: Context, space: Space) -> None:
    rbac.require(ctx.principal, "space.delete")
    audit.record(ctx, "space.delete", "space", space.name,
                 before=audit.snapshot(space, ("name", "display_name")))
    ctx.db.delete(space)


def list_members(ctx: Context, space: Space) -> list[tuple[SpaceMember, User]]:
    rbac.require(ctx.principal, "member.read", space.id)
    rows = ctx.db.execute(select(SpaceMember, User).join(User, User.id == SpaceMember.user_id)
                          .where(SpaceMember.space_id == space.id).order_by(User.username))
    return [(m, u) for m, u in rows]


def set_member(ctx: Context, space: Space, username: str, role: Role, *,
               _checked: bool = False) -> SpaceMember:
    """Add ``username`` to the space with ``role``, or change their role."""
    if not _checked:
        rbac.require(ctx.principal, "member.manage", space.id)
    user = lookup.user(ctx, username)
    member = ctx.db.scalar(select(SpaceMember).where(SpaceMember.space_id == space.id,
                                                     SpaceMember.user_id == user.id))
    before = {"role": member.role.label} if member else None
    if member is None:
        member = SpaceMember(space_id=space.id, user_id=user.id, role=role)
        ctx.db.add(member)
    else:
        _keep_an_owner(ctx, space, member, role)
        member.role = role
    ctx.db.flush()
    audit.record(ctx, "member.set", "member", username, space_id=space.id, before=before,
                 after={"role": role.label})
    return member


def remove_member(ctx: Context, space: Space, username: str) -> None:
    rbac.require(ctx.principal, "member.manage", space.id)
    user = lookup.user(ctx, username)
    member = ctx.db.scalar(select(SpaceMember).where(SpaceMember.space_id == space.id,
                                                     SpaceMember.user_id == user.id))
    if member is None:
        raise NotFound(f"{username!r} is not a member of this space")
    _keep_an_owner(ctx, space, member, None)
    for pm in ctx.db.scalars(select(ProjectMember).where(ProjectMember.space_id == space.id,
                                                         ProjectMember.user_id == user.id)):
        ctx.db.delete(pm)
    audit.record(ctx, "member.remove", "member", username, space_id=space.id,
                 before={"role": member.role.label})
    ctx.db.delete(member)


def _keep_an_owner(ctx: Context, space: Space, member: SpaceMember, new: Role | None) -> None:
    if member.role is not Role.OWNER or new is Role.OWNER:
        return
    owners = ctx.db.scalars(select(SpaceMember.id).where(
        SpaceMember.space_id == space.id, SpaceMember.role == Role.OWNER)).all()
    if len(owners) <= 1 and not ctx.principal.is_super:
        raise InvalidInput("a space must keep at least one owner", field="role")


def list_project_members(ctx: Context, project: Project) -> list[tuple[ProjectMember, User]]:
    rbac.require(ctx.principal, "project.read", project.space_id, project.id)
    rows = ctx.db.execute(select(ProjectMember, User)
                          .join(User, User.id == ProjectMember.user_id)
                          .where(ProjectMember.project_id == project.id)
                          .order_by(User.username))
    return [(m, u) for m, u in rows]


def set_project_member(ctx: Context, project: Project, username: str,
                       role: Role) -> ProjectMember:
    """Give ``username`` a role on one project, overriding their space role there. They
    must already be a member of the space."""
    rbac.require(ctx.principal, "project.members", project.space_id)
    user = lookup.user(ctx, username)
    if not ctx.db.scalar(select(SpaceMember.id).where(SpaceMember.space_id == project.space_id,
                                                      SpaceMember.user_id == user.id)):
        raise InvalidInput(f"{username!r} must be a member of the space first",
                           field="username")
    member = ctx.db.scalar(select(ProjectMember).where(ProjectMember.project_id == project.id,
                                                       ProjectMember.user_id == user.id))
    before = {"role": member.role.label} if member else None
    if member is None:
        member = ProjectMember(project_id=project.id, user_id=user.id, role=role,
                               space_id=project.space_id)
        ctx.db.add(member)
    else:
        member.role = role
    ctx.db.flush()
    audit.record(ctx, "project_member.set", "project_member", f"{project.name}/{username}",
                 space_id=project.space_id, before=before, after={"role": role.label})
    return member


def remove_project_member(ctx: Context, project: Project, username: str) -> None:
    rbac.require(ctx.principal, "project.members", project.space_id)
    user = lookup.user(ctx, username)
    member = ctx.db.scalar(select(ProjectMember).where(ProjectMember.project_id == project.id,
                                                       ProjectMember.user_id == user.id))
    if member is None:
        raise NotFound(f"{username!r} has no role on project {project.name!r}")
    audit.record(ctx, "project_member.remove", "project_member",
                 f"{project.name}/{username}", space_id=project.space_id,
                 before={"role": member.role.label})
    ctx.db.delete(member)
