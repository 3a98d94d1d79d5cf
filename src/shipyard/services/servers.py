"""Servers: where releases land. Host keys are recorded on first contact and verified
after; only MASTER+ may forget one (after a legitimate re-install)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.models import Server, Space
from shipyard.services import audit, lookup
from shipyard.services.context import Context
from shipyard.services.credentials import credential_id
from shipyard.services.errors_db import integrity
from shipyard.services.pagination import Page, keyset
from shipyard.services.types import Host, Labels, Name, Port, UnixUser

FIELDS = ("name", "host", "port", "user", "labels", "credential_id", "host_key")


class ServerSpec(BaseModel):
    name: Name
    host: Host
    port: Port = 22
    user: UnixUser = "root"
    labels: Labels = Field(default_factory=list)
    credential: Name | None = Field(default=None, description="name of an ssh_key credential")


def list_servers(ctx: Context, space: Space, *, label: str | None = None,
                 q: str | None = None, cursor: int | None = None,
                 limit: int = 100) -> Page[Server]:
    rbac.require(ctx.principal, "server.read", space.id)
    query = select(Server).where(Server.space_id == space.id)
    if q:
        query = query.where(Server.name.contains(q) | Server.host.contains(q))
    page = keyset(ctx.db, query, Server.id, cursor=cursor, limit=limit, ascending=True)
    if label:  # labels is JSON; filtering here keeps it portable across backends
        page.items = [s for s in page.items if label in (s.labels or [])]
    return page


def get_server(ctx: Context, space: Space, name: str) -> Server:
    rbac.require(ctx.principal, "server.read", space.id)
    return lookup.named(ctx, Server, space.id, name)


def create_server(ctx: Context, space: Space, spec: ServerSpec) -> Server:
    rbac.require(ctx.principal, "server.manage", space.id)
    server = Server(space_id=space.id, name=spec.name, host=spec.host, port=spec.port,
                    user=spec.user, labels=spec.labels,
                    credential_id=credential_id(ctx, space, spec.credential, "credential"))
    with integrity(f"server {spec.name!r}"):
        ctx.db.add(server)
        ctx.db.flush()
    audit.record(ctx, "server.create", "server", server.name, space_id=space.id,
                 after=audit.snapshot(server, FIELDS))
    return server


def update_server(ctx: Context, space: Space, name: str, changes: dict[str, object]) -> Server:
    """Apply a partial update; the merged result is validated as a whole."""
    rbac.require(ctx.principal, "server.manage", space.id)
    server = lookup.named(ctx, Server, space.id, name)
    current = spec_of(server)
    spec = ServerSpec.model_validate({**current.model_dump(), **changes})
    before = audit.snapshot(server, FIELDS)
    if (spec.host, spec.port) != (server.host, server.port):
        # A different machine: its key must be learned again on first contact.
        server.host_key, server.host_key_recorded_at = None, None
    server.name, server.host, server.port, server.user = spec.name, spec.host, spec.port, \
        spec.user
    server.labels = spec.labels
    server.credential_id = credential_id(ctx, space, spec.credential, "credential")
    with integrity(f"server {spec.name!r}"):
        ctx.db.flush()
    audit.record(ctx, "server.update", "server", server.name, space_id=space.id,
                 before=before, after=audit.snapshot(server, FIELDS))
    return server


def forget_host_key(ctx: Context, space: Space, name: str) -> Server:
    rbac.require(ctx.principal, "server.manage", space.id)
    server = lookup.named(ctx, Server, space.id, name)
    before = audit.snapshot(server, ("host_key",))
    server.host_key, server.host_key_recorded_at = None, None
    audit.record(ctx, "server.forget_host_key", "server", server.name, space_id=space.id,
                 before=before, after={"host_key": None})
    return server


def delete_server(ctx: Context, space: Space, name: str) -> None:
    rbac.require(ctx.principal, "server.manage", space.id)
    server = lookup.named(ctx, Server, space.id, name)
    audit.record(ctx, "server.delete", "server", server.name, space_id=space.id,
                 before=audit.snapshot(server, FIELDS))
    with integrity(f"server {name!r}"):
        ctx.db.delete(server)
        ctx.db.flush()


def spec_of(server: Server) -> ServerSpec:
    return ServerSpec.model_construct(
        name=server.name, host=server.host, port=server.port, user=server.user,
        labels=list(server.labels or []),
        credential=server.credential.name if server.credential else None)
