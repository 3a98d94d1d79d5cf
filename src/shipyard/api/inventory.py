"""Environments, servers and credentials of a space."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from shipyard.api.deps import guard
from shipyard.api.partial import changes, partial
from shipyard.api.schemas import CredentialOut, EnvironmentOut, PageOut, ServerOut
from shipyard.services import credentials, environments, servers
from shipyard.services.credentials import CredentialSpec, CredentialUpdate
from shipyard.services.environments import EnvironmentSpec, EnvironmentUpdate
from shipyard.services.servers import ServerSpec

router = APIRouter(prefix="/spaces/{space}")
ServerPatch = partial(ServerSpec)


@router.get("/environments", response_model=list[EnvironmentOut], tags=["environments"])
def list_environments(space: str, call: guard("environment.read")) -> list[EnvironmentOut]:
    return [EnvironmentOut.of(e) for e in
            environments.list_environments(call.ctx, call.in_space)]


@router.post("/environments", response_model=EnvironmentOut, status_code=201,
             tags=["environments"])
def create_environment(space: str, body: EnvironmentSpec,
                       call: guard("environment.manage")) -> EnvironmentOut:
    return EnvironmentOut.of(environments.create_environment(call.ctx, call.in_space, body))


@router.patch("/environments/{name}", response_model=EnvironmentOut, tags=["environments"])
def update_environment(space: str, name: str, body: EnvironmentUpdate,
                       call: guard("environment.manage")) -> EnvironmentOut:
    return EnvironmentOut.of(
        environments.update_environment(call.ctx, call.in_space, name, body))


@router.delete("/environments/{name}", status_code=204, tags=["environments"])
def delete_environment(space: str, name: str, call: guard("environment.manage")) -> Response:
    environments.delete_environment(call.ctx, call.in_space, name)
    return Response(status_code=204)


@router.get("/servers", response_model=PageOut[ServerOut], tags=["servers"])
def list_servers(space: str, call: guard("server.read"), label: str | None = None,
                 q: str | None = None, cursor: int | None = None,
                 limit: int = Query(100, ge=1, le=200)) -> PageOut:
    page = servers.list_servers(call.ctx, call.in_space, label=label, q=q, cursor=cursor,
                                limit=limit)
    return PageOut(items=[ServerOut.of(s) for s in page.items], next_cursor=page.next_cursor)


@router.post("/servers", response_model=ServerOut, status_code=201, tags=["servers"])
def create_server(space: str, body: ServerSpec, call: guard("server.manage")) -> ServerOut:
    return ServerOut.of(servers.create_server(call.ctx, call.in_space, body))


@router.get("/servers/{name}", response_model=ServerOut, tags=["servers"])
def get_server(space: str, name: str, call: guard("server.read")) -> ServerOut:
    return ServerOut.of(servers.get_server(call.ctx, call.in_space, name))


@router.patch("/servers/{name}", response_model=ServerOut, tags=["servers"])
def update_server(space: str, name: str, body: ServerPatch,  # type: ignore[valid-type]
                  call: guard("server.manage")) -> ServerOut:
    return ServerOut.of(servers.update_server(call.ctx, call.in_space, name, changes(body)))


@router.post("/servers/{name}/forget-host-key", response_model=ServerOut, tags=["servers"])
def forget_host_key(space: str, name: str, call: guard("server.manage")) -> ServerOut:
    """Forget the recorded host key (after a legitimate re-install); the next contact
    records the new one."""
    return ServerOut.of(servers.forget_host_key(call.ctx, call.in_space, name))


@router.delete("/servers/{name}", status_code=204, tags=["servers"])
def delete_server(space: str, name: str, call: guard("server.manage")) -> Response:
    servers.delete_server(call.ctx, call.in_space, name)
    return Response(status_code=204)


@router.get("/credentials", response_model=list[CredentialOut], tags=["credentials"])
def list_credentials(space: str, call: guard("credential.read")) -> list[CredentialOut]:
    return [CredentialOut.of(c) for c in credentials.list_credentials(call.ctx, call.in_space)]


@router.post("/credentials", response_model=CredentialOut, status_code=201,
             tags=["credentials"])
def create_credential(space: str, body: CredentialSpec,
                      call: guard("credential.manage")) -> CredentialOut:
    """Store a secret; it is encrypted at rest and can never be read back."""
    return CredentialOut.of(credentials.create_credential(call.ctx, call.in_space, body))


@router.get("/credentials/{name}", response_model=CredentialOut, tags=["credentials"])
def get_credential(space: str, name: str, call: guard("credential.read")) -> CredentialOut:
    return CredentialOut.of(credentials.get_credential(call.ctx, call.in_space, name))


@router.patch("/credentials/{name}", response_model=CredentialOut, tags=["credentials"])
def update_credential(space: str, name: str, body: CredentialUpdate,
                      call: guard("credential.manage")) -> CredentialOut:
    return CredentialOut.of(credentials.update_credential(call.ctx, call.in_space, name, body))


@router.delete("/credentials/{name}", status_code=204, tags=["credentials"])
def delete_credential(space: str, name: str, call: guard("credential.manage")) -> Response:
    credentials.delete_credential(call.ctx, call.in_space, name)
    return Response(status_code=204)
