"""Logging in and out, browser sessions, personal API tokens, and loading a caller's
roles."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import select, update

from shipyard.auth import throttle
from shipyard.auth.passwords import verify_password
from shipyard.auth.rbac import Principal
from shipyard.auth.tokens import TOKEN_PREFIX, digest, new_api_token, new_session_secret
from shipyard.errors import InvalidInput, NotAuthenticated, NotFound, PermissionDenied
from shipyard.models import ApiToken, BrowserSession, ProjectMember, Space, SpaceMember, User
from shipyard.models.types import utcnow
from shipyard.services import audit
from shipyard.services.context import Context
from shipyard.services.types import Name


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenSpec(BaseModel):
    name: Name
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


@dataclass
class Login:
    user: User
    principal: Principal


@dataclass
class NewSession:
    cookie: str
    session: BrowserSession


def load_principal(ctx: Context, user: User) -> Principal:
    principal = Principal(user_id=user.id, username=user.username, is_super=user.is_super)
    for space_id, role in ctx.db.execute(select(SpaceMember.space_id, SpaceMember.role)
                                         .where(SpaceMember.user_id == user.id)):
        principal.space_roles[space_id] = role
    for project_id, space_id, role in ctx.db.execute(
            select(ProjectMember.project_id, ProjectMember.space_id, ProjectMember.role)
            .where(ProjectMember.user_id == user.id)):
        principal.project_roles[project_id] = (space_id, role)
    return principal


def authenticate(ctx: Context, creds: Credentials) -> Login:
    """Check a password. Throttled per address and per (account, address); a user who is
    in no space (SUPER aside) is refused with a clear message."""
    now = utcnow()
    keys = throttle.keys(creds.username, ctx.address)
    throttle.check(ctx.db, keys, now)
    user = ctx.db.scalar(select(User).where(User.username == creds.username))
    ok = verify_password(user.password_hash if user else None, creds.password)
    if not ok or user is None or not user.is_active:
        throttle.failed(ctx.db, keys, now)
        audit.record(ctx, "auth.login_failed", "user", creds.username)
        # Commit the failure even though the caller will raise.
        ctx.db.commit()
        raise NotAuthenticated("wrong username or password")
    principal = load_principal(ctx, user)
    if not user.is_super and not principal.space_roles and not principal.project_roles:
        raise PermissionDenied("your account is not a member of any space yet; ask an "
                               "owner to add you")
    throttle.succeeded(ctx.db, creds.username, ctx.address)
    user.last_login_at = now
    ctx.who = principal
    audit.record(ctx, "auth.login", "user", user.username)
    return Login(user, principal)


def open_session(ctx: Context, login: Login) -> NewSession:
    cookie = new_session_secret()
    spaces = sorted(login.principal.space_roles) or sorted(
        sid for sid, _ in login.principal.project_roles.values())
    session = BrowserSession(
        id=digest(cookie), user_id=login.user.id, space_id=spaces[0] if spaces else None,
        csrf_token=secrets.token_urlsafe(24), address=ctx.address,
        expires_at=utcnow() + timedelta(hours=ctx.runtime.settings.session_hours))
    ctx.db.add(session)
    return NewSession(cookie, session)


def session_user(ctx: Context, cookie: str) -> tuple[BrowserSession, User] | None:
    session = ctx.db.get(BrowserSession, digest(cookie))
    if session is None or session.expires_at < utcnow():
        return None
    user = ctx.db.get(User, session.user_id)
    if user is None or not user.is_active:
        return None
    return session, user


def end_session(ctx: Context, session: BrowserSession) -> None:
    ctx.db.delete(session)
    audit.record(ctx, "auth.logout", "user", ctx.actor_name)


def switch_space(ctx: Context, session: BrowserSession, space_name: str) -> Space:
    space = ctx.db.scalar(select(Space).where(Space.name == space_name))
    if space is None or not ctx.principal.is_member(space.id):
        raise NotFound(f"no space named {space_name!r}")
    session.space_id = space.id
    return space


def token_user(ctx: Context, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = ctx.db.scalar(select(ApiToken).where(ApiToken.token_hash == digest(token)))
    now = utcnow()
    if row is None or row.revoked_at or (row.expires_at and row.expires_at < now):
        return None
    user = ctx.db.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
        # Throttled so that a busy CI token does not write on every request.
        ctx.db.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return user


def create_token(ctx: Context, user: User, spec: TokenSpec) -> tuple[ApiToken, str]:
    """A new token for ``user``; the plaintext is returned once and never stored."""
    plain = new_api_token()
    expires: datetime | None = None
    if spec.expires_in_days:
        expires = utcnow() + timedelta(days=spec.expires_in_days)
    token = ApiToken(user_id=user.id, name=spec.name, prefix=plain[:10],
                     token_hash=digest(plain), expires_at=expires)
    ctx.db.add(token)
    ctx.db.flush()
    audit.record(ctx, "token.create", "token", token.id,
                 after={"name": spec.name, "user": user.username,
                        "expires_at": expires.isoformat() if expires else None})
    return token, plain


def list_tokens(ctx: Context, user: User) -> list[ApiToken]:
    return list(ctx.db.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                               .order_by(ApiToken.id)))


def revoke_token(ctx: Context, user: User, token_id: int) -> ApiToken:
    token = ctx.db.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        raise NotFound(f"no token {token_id}")
    if token.revoked_at is not None:
        raise InvalidInput("token is already revoked", field="token_id")
    token.revoked_at = utcnow()
    audit.record(ctx, "token.revoke", "token", token.id, after={"name": token.name})
    return token
