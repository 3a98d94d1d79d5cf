"""Running one read-only operation on every server of a target at once, collecting a
result or an error per host (for release listings and checks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shipyard.deploy.connect import host_target, open_host
from shipyard.deploy.plan import HostTarget
from shipyard.deploy.transport import SSHConnection
from shipyard.errors import ShipyardError
from shipyard.models import Server
from shipyard.services.context import Context

T = TypeVar("T")
PARALLEL = 20


@dataclass
class HostResult(Generic[T]):
    host: str
    value: T | None = None
    error: str | None = None
    reason: str | None = None  # the error's machine-readable reason, e.g. host_key_mismatch


def on_each_host(ctx: Context, servers: list[Server],
                 work: Callable[[SSHConnection, HostTarget], Awaitable[T]],
                 *, timeout: float = 30.0) -> list[HostResult[T]]:
    targets: list[HostTarget | HostResult[T]] = []
    for server in servers:
        try:
            targets.append(host_target(ctx.runtime.vault, server))
        except ShipyardError as exc:
            targets.append(HostResult(server.name, error=exc.message))
    sessions = ctx.runtime.sessions

    async def one(host: HostTarget, limit: asyncio.Semaphore) -> HostResult[T]:
        async with limit:
            conn = None
            try:
                async with asyncio.timeout(timeout):
                    conn = await open_host(sessions, host)
                    return HostResult(host.name, value=await work(conn, host))
            except ShipyardError as exc:
                return HostResult(host.name, error=exc.message,
                                  reason=exc.details.get("reason"))
            except TimeoutError:
                return HostResult(host.name, error=f"no answer within {timeout:g}s")
            finally:
                if conn is not None:
                    await conn.close()

    async def all_hosts() -> list[HostResult[T]]:
        limit = asyncio.Semaphore(PARALLEL)
        return await asyncio.gather(*(
            one(t, limit) if isinstance(t, HostTarget) else _done(t) for t in targets))

    return asyncio.run(all_hosts())


async def _done(result: HostResult[T]) -> HostResult[T]:
    return result
