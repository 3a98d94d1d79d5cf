"""Logging in and out, the caller's own profile, API tokens and current space."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from shipyard.api.deps import SESSION_COOKIE, Public, guard
from shipyard.api.schemas import MeOut, NewTokenOut, SpaceOut, TokenOut, UserOut
from shipyard.services import accounts, spaces, users
from shipyard.services.accounts import Credentials, TokenSpec
from shipyard.services.context import Context

router = APIRouter(tags=["account"])


class TokenLogin(Credentials):
    token_name: str = "cli"  # noqa: S105 - a label


class SpaceChoice(BaseModel):
    space: str


def me_out(ctx: Context, call_user: object, current: int | None,
           csrf: str | None = None) -> MeOut:
    principal = ctx.principal
    out = []
    current_name = None
    for space in spaces.list_spaces(ctx):
        role = principal.role_in(space.id)
        out.append(SpaceOut.of(space, role.label if role else None))
        if space.id == current:
            current_name = space.name
    return MeOut(user=UserOut.of(call_user), spaces=out,  # type: ignore[arg-type]
                 current_space=current_name, csrf_token=csrf)


@router.post("/auth/login", response_model=MeOut)
def login(body: Credentials, response: Response, ctx: Public) -> MeOut:
    """Log in with a password; sets the session cookie (HttpOnly, SameSite=Lax)."""
    result = accounts.authenticate(ctx, body)
    new = accounts.open_session(ctx, result)
    settings = ctx.runtime.settings
    response.set_cookie(SESSION_COOKIE, new.cookie, httponly=True, samesite="lax",
                        secure=settings.cookie_secure,
                        max_age=settings.session_hours * 3600, path="/")
    return me_out(ctx, result.user, new.session.space_id, new.session.csrf_token)


@router.post("/auth/token", response_model=NewTokenOut, status_code=201)
def login_for_token(body: TokenLogin, ctx: Public) -> NewTokenOut:
    """Exchange a password for a new personal API token (what `shipyard login` does)."""
    result = accounts.authenticate(ctx, body)
    token, plain = accounts.create_token(ctx, result.user, TokenSpec(name=body.token_name))
    return NewTokenOut(**TokenOut.of(token).model_dump(), token=plain)


@router.post("/auth/logout", status_code=204)
def logout(call: guard("me"), response: Response) -> Response:
    if call.session is not None:
        accounts.end_session(call.ctx, call.session)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/me", response_model=MeOut)
def get_me(call: guard("me")) -> MeOut:
    session = call.session
    return me_out(call.ctx, call.user, session.space_id if session else None,
                  session.csrf_token if session else None)


@router.patch("/me", response_model=UserOut)
def update_me(body: users.UserUpdate, call: guard("me")) -> UserOut:
    """Change your own email, display name, time zone or password."""
    return UserOut.of(users.update_user(call.ctx, call.user.username, body))


@router.put("/me/space", response_model=MeOut)
def switch_space(body: SpaceChoice, call: guard("me")) -> MeOut:
    """Make another of your spaces the current one (browser sessions)."""
    space = accounts.switch_space(call.ctx, call.session, body.space) if call.session \
        else None
    return me_out(call.ctx, call.user, space.id if space else None,
                  call.session.csrf_token if call.session else None)


@router.get("/me/tokens", response_model=list[TokenOut])
def list_tokens(call: guard("me")) -> list[TokenOut]:
    return [TokenOut.of(t) for t in accounts.list_tokens(call.ctx, call.user)]


@router.post("/me/tokens", response_model=NewTokenOut, status_code=201)
def create_token(body: TokenSpec, call: guard("me")) -> NewTokenOut:
    """A new personal API token. The token is in this response only; store it now."""
    token, plain = accounts.create_token(call.ctx, call.user, body)
    return NewTokenOut(**TokenOut.of(token).model_dump(), token=plain)


@router.delete("/me/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: int, call: guard("me")) -> TokenOut:
    return TokenOut.of(accounts.revoke_token(call.ctx, call.user, token_id))

