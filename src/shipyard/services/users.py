"""Users: created by SUPER (or the first-run bootstrap), with argon2 passwords."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from shipyard.auth import rbac
from shipyard.auth.passwords import hash_password
from shipyard.errors import AlreadyExists, InvalidInput
from shipyard.models import SpaceMember, User
from shipyard.services import audit, lookup, validation
from shipyard.services.context import Context
from shipyard.services.pagination import Page, keyset
from shipyard.services.types import Username

USER_FIELDS = ("username", "email", "display_name", "is_super", "is_active", "timezone")


class UserSpec(BaseModel):
    username: Username
    password: str = Field(min_length=8, max_length=1024)
    email: str | None = None
    display_name: str = Field(default="", max_length=200)
    is_super: bool = False


class UserUpdate(BaseModel):
    email: str | None = None
    display_name: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    is_super: bool | None = None
    is_active: bool | None = None
    timezone: str | None = Field(default=None, max_length=64)


def create_user(ctx: Context, spec: UserSpec) -> User:
    rbac.require(ctx.principal, "user.manage")
    return _insert_user(ctx, spec)


def _insert_user(ctx: Context, spec: UserSpec) -> User:
    if ctx.db.scalar(select(User.id).where(User.username == spec.username)):
        raise AlreadyExists(f"a user named {spec.username!r} already exists", field="username")
    user = User(username=spec.username, email=validation.email(spec.email),
                display_name=spec.display_name, is_super=spec.is_super,
                password_hash=hash_password(spec.password))
    ctx.db.add(user)
    ctx.db.flush()
    audit.record(ctx, "user.create", "user", user.username,
                 after=audit.snapshot(user, USER_FIELDS))
    return user


def update_user(ctx: Context, username: str, update: UserUpdate) -> User:
    who = ctx.principal
    user = lookup.user(ctx, username)
    changes = update.model_dump(exclude_unset=True)
    if user.id != who.user_id or {"is_super", "is_active"} & changes.keys():
        rbac.require(who, "user.manage")
    if user.id == who.user_id and changes.get("is_active") is False:
        raise InvalidInput("you cannot deactivate yourself", field="is_active")
    before = audit.snapshot(user, USER_FIELDS)
    if "email" in changes:
        user.email = validation.email(changes.pop("email"))
    if "password" in changes:
        user.password_hash = hash_password(changes.pop("password"))
    for key, value in changes.items():
        if value is not None:
            setattr(user, key, value)
    audit.record(ctx, "user.update", "user", user.username, before=before,
                 after=audit.snapshot(user, USER_FIELDS))
    return user


def list_users(ctx: Context, *, q: str | None = None, cursor: int | None = None,
               limit: int = 50) -> Page[User]:
    rbac.require(ctx.principal, "user.manage")
    query = select(User)
    if q:
        query = query.where(User.username.contains(q))
    return keyset(ctx.db, query, User.id, cursor=cursor, limit=limit, ascending=True)


def get_user(ctx: Context, username: str) -> User:
    user = lookup.user(ctx, username)
    if user.id != ctx.principal.user_id:
        rbac.require(ctx.principal, "user.manage")
    return user


def has_any_space(ctx: Context, user: User) -> bool:
    return bool(ctx.db.scalar(select(func.count()).select_from(SpaceMember)
                              .where(SpaceMember.user_id == user.id)))


def bootstrap_admin(ctx: Context, username: str, password: str) -> User | None:
    """Create the first SUPER user if there is no user yet; None if there already is."""
    if ctx.db.scalar(select(func.count()).select_from(User)):
        return None
    return _insert_user(ctx, UserSpec(username=username, password=password, is_super=True))
