"""Checking before deploying. A target: can every server be reached with the recorded key,
is the releases dir writable, is the webroot free to become a symlink, is there disk
space, and can the build host read the repository. Servers on their own: SSH reach, the
host key (recorded on first contact, verified after) and free disk."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.deploy.plan import HostTarget
from shipyard.deploy.transport import SSHConnection
from shipyard.errors import InvalidInput, ShipyardError
from shipyard.models import Project, Server, Space
from shipyard.services import lookup, repos
from shipyard.services.context import Context
from shipyard.services.fleetops import on_each_host
from shipyard.services.targets import resolve_servers

MIN_FREE_KB = 512 * 1024

# Prints one "name ok|fail detail" line per check; values arrive as arguments only.
_CHECK_SCRIPT = r"""
releases=$1 webroot=$2
if mkdir -p -- "$releases" 2>/dev/null && [ -w "$releases" ]; then
  echo "releases_writable ok $releases"
else
  echo "releases_writable fail cannot create or write $releases"
fi
if [ -e "$webroot" ] && [ ! -L "$webroot" ]; then
  echo "webroot_free fail $webroot is a real directory or file, not a symlink"
else
  echo "webroot_free ok $webroot"
fi
free=$(df -Pk -- "$releases" 2>/dev/null | awk 'NR==2 {print $4}')
if [ -n "$free" ]; then echo "free_disk_kb ok $free"; else echo "free_disk_kb fail unknown"; fi
"""

# The login directory's file system: where a server-level check can look without a target.
_SERVER_SCRIPT = r"""
free=$(df -Pk -- "${HOME:-/}" 2>/dev/null | awk 'NR==2 {print $4}')
if [ -n "$free" ]; then echo "free_disk_kb ok $free"; else echo "free_disk_kb fail unknown"; fi
"""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class HostReport:
    host: str
    ok: bool
    checks: list[Check] = field(default_factory=list)


@dataclass
class CheckReport:
    ok: bool
    git: Check
    hosts: list[HostReport]


def check_target(ctx: Context, project: Project, environment: str) -> CheckReport:
    rbac.require(ctx.principal, "target.check", project.space_id, project.id)
    target = lookup.target(ctx, project, environment)
    try:
        with repos.mirror(ctx, project) as mirror:
            mirror.fetch(timeout=60)
            git = Check("git_access", True, f"fetched {project.repo_url}")
    except ShipyardError as exc:
        git = Check("git_access", False, exc.message)

    async def inspect(conn: SSHConnection, host: HostTarget) -> list[Check]:
        result = await conn.run(["sh", "-c", _CHECK_SCRIPT, "sh", target.releases_dir,
                                 target.webroot], timeout=20, stage="check", capture=True)
        return _parse(result.stdout)

    hosts = []
    for result in on_each_host(ctx, resolve_servers(ctx, target), inspect):
        if result.error is not None:
            checks = [Check("ssh", False, result.error)]
        else:
            checks = [Check("ssh", True, "connected; host key verified"), *(result.value or [])]
        hosts.append(HostReport(result.host, all(c.ok for c in checks), checks))
    return CheckReport(git.ok and all(h.ok for h in hosts), git, hosts)


def _parse(output: str) -> list[Check]:
    checks = []
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        status, _, detail = rest.partition(" ")
        if name == "free_disk_kb":
            free = int(detail) if detail.strip().isdigit() else 0
            checks.append(Check("free_disk", status == "ok" and free >= MIN_FREE_KB,
                                f"{free // 1024} MB free" if free else detail))
        elif name:
            checks.append(Check(name, status == "ok", detail))
    return checks


def check_servers(ctx: Context, space: Space, names: list[str] | None = None) -> list[HostReport]:
    """Per server (the named ones, or all of the space's): can it be reached over SSH, does
    its host key match the recorded one (recorded now on first contact), is there free
    disk in the login directory. Read-only apart from recording a first host key."""
    rbac.require(ctx.principal, "server.manage", space.id)
    query = select(Server).where(Server.space_id == space.id).order_by(Server.name)
    if names:
        query = query.where(Server.name.in_(set(names)))
    servers = list(ctx.db.scalars(query))
    missing = sorted(set(names or ()) - {s.name for s in servers})
    if missing:
        raise InvalidInput(f"no server named {', '.join(map(repr, missing))} in this space",
                           field="servers")
    known = {s.name: s.host_key for s in servers}

    async def inspect(conn: SSHConnection, host: HostTarget) -> list[Check]:
        result = await conn.run(["sh", "-c", _SERVER_SCRIPT], timeout=20, stage="check",
                                capture=True)
        return _parse(result.stdout)

    reports = []
    for result in on_each_host(ctx, servers, inspect):
        if result.reason == "host_key_mismatch":
            checks = [Check("ssh", False, "not attempted: the host key does not match"),
                      Check("host_key", False, result.error or "")]
        elif result.error is not None:
            checks = [Check("ssh", False, result.error)]
        else:
            checks = [Check("ssh", True, "connected"),
                      _host_key_check(ctx, space, result.host, known.get(result.host)),
                      *(result.value or [])]
        reports.append(HostReport(result.host, all(c.ok for c in checks), checks))
    return reports


def _host_key_check(ctx: Context, space: Space, name: str, known: str | None) -> Check:
    if known:
        return Check("host_key", True, f"matches the recorded key {fingerprint(known)}")
    # Recorded during this check through its own connection: read what was stored.
    now = ctx.db.scalar(select(Server.host_key).where(Server.space_id == space.id,
                                                      Server.name == name)
                        .execution_options(populate_existing=True))
    return Check("host_key", True, "recorded on first contact"
                 + (f": {fingerprint(now)}" if now else ""))


def fingerprint(host_key: str) -> str:
    """The key type and SHA256 fingerprint of a "type base64" public key line (as
    ``ssh-keygen -l`` shows them)."""
    parts = host_key.split()
    if len(parts) < 2:
        return host_key
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return parts[0]
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"{parts[0]} SHA256:{digest}"
