"""Users (SUPER), spaces and their members."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from shipyard.api.deps import guard
from shipyard.api.schemas import AuditOut, MemberOut, PageOut, SpaceOut, UserOut
from shipyard.services import audit, spaces, users
from shipyard.services.spaces import MemberSpec, SpaceSpec, SpaceUpdate
from shipyard.services.users import UserSpec, UserUpdate

router = APIRouter()


@router.get("/users", response_model=PageOut[UserOut], tags=["users"])
def list_users(call: guard("user.manage"), q: str | None = None,
               cursor: int | None = None, limit: int = Query(50, ge=1, le=200)) -> PageOut:
    page = users.list_users(call.ctx, q=q, cursor=cursor, limit=limit)
    return PageOut(items=[UserOut.of(u) for u in page.items], next_cursor=page.next_cursor)


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
def create_user(body: UserSpec, call: guard("user.manage")) -> UserOut:
    return UserOut.of(users.create_user(call.ctx, body))


@router.get("/users/{username}", response_model=UserOut, tags=["users"])
def get_user(username: str, call: guard("user.manage")) -> UserOut:
    return UserOut.of(users.get_user(call.ctx, username))


@router.patch("/users/{username}", response_model=UserOut, tags=["users"])
def update_user(username: str, body: UserUpdate, call: guard("user.manage")) -> UserOut:
    return UserOut.of(users.update_user(call.ctx, username, body))


@router.get("/spaces", response_model=list[SpaceOut], tags=["spaces"])
def list_spaces(call: guard("space.list")) -> list[SpaceOut]:
    who = call.ctx.principal
    out = []
    for space in spaces.list_spaces(call.ctx):
        role = who.role_in(space.id)
        out.append(SpaceOut.of(space, role.label if role else None))
    return out


@router.post("/spaces", response_model=SpaceOut, status_code=201, tags=["spaces"])
def create_space(body: SpaceSpec, call: guard("space.create")) -> SpaceOut:
    return SpaceOut.of(spaces.create_space(call.ctx, body))


@router.get("/spaces/{space}", response_model=SpaceOut, tags=["spaces"])
def get_space(space: str, call: guard("space.read")) -> SpaceOut:
    role = call.ctx.principal.role_in(call.in_space.id)
    return SpaceOut.of(call.in_space, role.label if role else None)


@router.patch("/spaces/{space}", response_model=SpaceOut, tags=["spaces"])
def update_space(space: str, body: SpaceUpdate, call: guard("space.update")) -> SpaceOut:
    return SpaceOut.of(spaces.update_space(call.ctx, call.in_space, body))


@router.delete("/spaces/{space}", status_code=204, tags=["spaces"])
def delete_space(space: str, call: guard("space.delete")) -> Response:
    spaces.delete_space(call.ctx, call.in_space)
    return Response(status_code=204)


@router.get("/spaces/{space}/members", response_model=list[MemberOut], tags=["members"])
def list_members(space: str, call: guard("member.read")) -> list[MemberOut]:
    return [MemberOut(username=u.username, display_name=u.display_name, role=m.role.label)
            for m, u in spaces.list_members(call.ctx, call.in_space)]


@router.put("/spaces/{space}/members/{username}", response_model=MemberOut, tags=["members"])
def set_member(space: str, username: str, body: MemberSpec,
               call: guard("member.manage")) -> MemberOut:
    """Add a user to the space, or change their role."""
    member = spaces.set_member(call.ctx, call.in_space, username, body.parsed_role())
    return MemberOut(username=username, display_name="", role=member.role.label)


@router.delete("/spaces/{space}/members/{username}", status_code=204, tags=["members"])
def remove_member(space: str, username: str, call: guard("member.manage")) -> Response:
    spaces.remove_member(call.ctx, call.in_space, username)
    return Response(status_code=204)


@router.get("/audit", response_model=PageOut[AuditOut], tags=["audit"])
def list_global_audit(call: guard("audit.global"), action: str | None = None,
                      actor: str | None = None, object_type: str | None = None,
                      cursor: int | None = None,
                      limit: int = Query(50, ge=1, le=200)) -> PageOut:
    """Events that belong to no space: logins (and failed ones), users, tokens, spaces
    created or deleted. SUPER only; each space's own log is /spaces/{space}/audit."""
    page = audit.list_events(call.ctx, None, action=action, actor=actor,
                             object_type=object_type, cursor=cursor, limit=limit)
    return PageOut(items=[AuditOut.of(e) for e in page.items], next_cursor=page.next_cursor)
