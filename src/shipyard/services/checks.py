"""Checking a target before deploying: can every server be reached with the recorded key,
is the releases dir writable, is the webroot free to become a symlink, is there disk
space, and can the build host read the repository."""

from __future__ import annotations

from dataclasses import dataclass, field

from shipyard.auth import rbac
from shipyard.deploy.plan import HostTarget
from shipyard.deploy.transport import SSHConnection
from shipyard.errors import ShipyardError
from shipyard.models import Project
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
