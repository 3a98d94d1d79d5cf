"""Opening a verified connection to a server: the host key is recorded on first contact
and must match ever after (a changed key is an error, not a warning)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.deploy.plan import HostTarget
from shipyard.deploy.transport import HostSpec, SSHConnection, scan_host_key
from shipyard.errors import InvalidInput
from shipyard.models import Server
from shipyard.models.types import utcnow
from shipyard.vault import Vault


def host_target(vault: Vault, server: Server) -> HostTarget:
    """The runner's view of a server, with its SSH key decrypted in memory."""
    if server.credential is None or server.credential.kind != "ssh_key":
        raise InvalidInput(f"server {server.name} has no SSH key credential", field="credential")
    return HostTarget(
        server_id=server.id,
        name=server.name,
        address=server.host,
        port=server.port,
        user=server.user,
        private_key=vault.decrypt(server.credential.secret),
        host_key=server.host_key,
    )


def record_host_key(sessions: sessionmaker[Session], server_id: int, key: str) -> str:
    """Record the key seen on first contact unless another run recorded one first (then
    that one is the truth, and the connection must match it)."""
    with sessions() as db, db.begin():
        db.execute(
            update(Server)
            .where(Server.id == server_id, Server.host_key.is_(None))
            .values(host_key=key, host_key_recorded_at=utcnow())
        )
        return db.scalar(select(Server.host_key).where(Server.id == server_id)) or key


async def open_host(
    sessions: sessionmaker[Session],
    host: HostTarget,
    *,
    note: Callable[[str], None] | None = None,
    timeout: float = 10.0,
) -> SSHConnection:
    known = host.host_key
    if known is None:
        seen = await scan_host_key(host.address, host.port, timeout=timeout)
        known = await asyncio.to_thread(record_host_key, sessions, host.server_id, seen)
        if note:
            note(f"recorded host key {known.split()[0]} on first contact")
    conn = SSHConnection(
        HostSpec(
            name=host.name,
            address=host.address,
            port=host.port,
            user=host.user,
            private_key=host.private_key,
            known_host_key=known,
        ),
        connect_timeout=timeout,
    )
    await conn.open()
    return conn
