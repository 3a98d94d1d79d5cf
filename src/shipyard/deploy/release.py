"""The release layout on a target host: release directories and the live symlink.

    <releases>/20261121T090000-41/      an older release (kept for rollback)
    <releases>/20261122T101500-42/      the new release
    <webroot> -> <releases>/20261122T101500-42

Each step is a pure function that builds an argv (user values only ever as arguments of a
fixed ``sh -c`` script, never spliced into its text), plus a thin async function that runs
it over an :class:`~shipyard.deploy.transport.SSHConnection`. Which releases to prune is
decided by the pure :func:`plan_prune`.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shipyard.errors import InvalidInput, RemoteError

if TYPE_CHECKING:
    from shipyard.deploy.transport import SSHConnection

__all__ = [
    "ReleaseInfo",
    "current_release",
    "is_release_id",
    "list_releases",
    "make_release_id",
    "parse_live_target",
    "parse_release_listing",
    "plan_prune",
    "prepare_release_dir",
    "prune_releases",
    "release_path",
    "release_sort_key",
    "switch_symlink",
    "validate_remote_path",
]

COMMAND_TIMEOUT = 60.0
RELEASE_ID_RE = re.compile(r"(\d{8}T\d{6})-(\d+)")

# Exit codes of the switch script, mapped to clear errors below.
_NOT_A_SYMLINK = 3
_RELEASE_MISSING = 4

_LIVE_SCRIPT = """
if [ -L "$1" ]; then readlink -- "$1"; fi
"""

_SWITCH_SCRIPT = """
webroot=$1 release=$2 tmp=$3
if [ -e "$webroot" ] && [ ! -L "$webroot" ]; then
    echo "$webroot exists and is not a symlink" >&2; exit 3
fi
if [ ! -d "$release" ]; then echo "$release is not a directory" >&2; exit 4; fi
trap 'rm -f -- "$tmp"' EXIT
mkdir -p -- "$(dirname -- "$webroot")"
if [ -L "$webroot" ]; then readlink -- "$webroot"; fi
ln -s -- "$release" "$tmp"
mv -T -- "$tmp" "$webroot"
"""

_LIST_SCRIPT = """
if [ -n "$2" ] && [ -L "$2" ]; then printf 'live %s\\n' "$(readlink -- "$2")"; fi
cd -- "$1" 2>/dev/null || exit 0
for d in *; do
    if [ -d "$d" ] && [ ! -L "$d" ]; then printf 'release %s\\n' "$d"; fi
done
"""


@dataclass(frozen=True)
class ReleaseInfo:
    """One release directory on a host; ``live`` if the webroot points at it."""

    id: str
    path: str
    live: bool


# -- pure ----------------------------------------------------------------------------------


def make_release_id(task_id: int, now: datetime) -> str:
    """``"20261122T101500-42"``: UTC time of ``now`` and the task id; sorts by time, unique
    per task. A naive ``now`` is taken as UTC."""
    if task_id < 0:
        raise InvalidInput("a task id is not negative", field="task_id")
    when = now.astimezone(UTC) if now.tzinfo else now
    return f"{when:%Y%m%dT%H%M%S}-{task_id}"


def release_sort_key(release_id: str) -> tuple[str, int]:
    """Orders release ids by time, then task id (``-9`` before ``-10`` in the same second)."""
    match = RELEASE_ID_RE.fullmatch(release_id)
    if match is None:
        raise InvalidInput(f"not a release id: {release_id!r}", field="release_id")
    return match.group(1), int(match.group(2))


def is_release_id(name: str) -> bool:
    return RELEASE_ID_RE.fullmatch(name) is not None


def validate_remote_path(path: str, field: str) -> str:
    """Return ``path`` if it is absolute, normalized, not ``/`` and free of control
    characters, else raise InvalidInput naming ``field``."""
    if (
        not path.startswith("/")
        or path == "/"
        or posixpath.normpath(path) != path
        or path.startswith("//")
        or any(ord(c) < 32 or c == "\x7f" for c in path)
    ):
        raise InvalidInput(f"{field} must be a normalized absolute path: {path!r}", field=field)
    return path


def release_path(releases_dir: str, release_id: str) -> str:
    """Where release ``release_id`` lives under ``releases_dir``."""
    release_sort_key(release_id)  # validates: the id becomes a path component
    return posixpath.join(validate_remote_path(releases_dir, "releases"), release_id)


def plan_prune(
    release_ids: Iterable[str],
    *,
    keep: int,
    live_id: str | None,
    previous_id: str | None,
) -> list[str]:
    """The releases to delete, oldest first: all but the newest ``keep``, the live one and
    the previous one (the rollback target). Names that are not release ids are left alone."""
    if keep < 1:
        raise InvalidInput("keep at least one release", field="keep")
    ids = sorted({i for i in release_ids if is_release_id(i)}, key=release_sort_key)
    kept = set(ids[-keep:]) | {live_id, previous_id}
    return [i for i in ids if i not in kept]


def parse_live_target(readlink_output: str, webroot: str) -> str | None:
    """The absolute, normalized path a webroot symlink points at (None if no symlink)."""
    target = readlink_output.rstrip("\n")
    if not target:
        return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(webroot), target))


def parse_release_listing(output: str, releases_dir: str, webroot: str | None) -> list[ReleaseInfo]:
    """Releases from the listing script's output, newest first; other entries are ignored."""
    live_target = None
    names = []
    for line in output.splitlines():
        kind, _, value = line.partition(" ")
        if kind == "live" and webroot is not None:
            live_target = parse_live_target(value, webroot)
        elif kind == "release" and is_release_id(value):
            names.append(value)
    return [
        ReleaseInfo(id=name, path=path, live=path == live_target)
        for name in sorted(set(names), key=release_sort_key, reverse=True)
        for path in [posixpath.join(releases_dir, name)]
    ]


def prepare_command(release_dir: str) -> list[str]:
    return ["mkdir", "-p", "--", validate_remote_path(release_dir, "release_dir")]


def live_command(webroot: str) -> list[str]:
    return ["sh", "-c", _LIVE_SCRIPT, "sh", validate_remote_path(webroot, "webroot")]


def switch_command(webroot: str, release_dir: str, tmp_link: str) -> list[str]:
    return [
        "sh", "-c", "set -e" + _SWITCH_SCRIPT, "sh",
        validate_remote_path(webroot, "webroot"),
        validate_remote_path(release_dir, "release_dir"),
        validate_remote_path(tmp_link, "tmp_link"),
    ]  # fmt: skip


def list_command(releases_dir: str, webroot: str | None) -> list[str]:
    return [
        "sh", "-c", _LIST_SCRIPT, "sh",
        validate_remote_path(releases_dir, "releases"),
        "" if webroot is None else validate_remote_path(webroot, "webroot"),
    ]  # fmt: skip


def remove_command(releases_dir: str, release_ids: Iterable[str]) -> list[str]:
    return ["rm", "-rf", "--", *(release_path(releases_dir, i) for i in release_ids)]


def temp_link_path(webroot: str) -> str:
    """A unique name next to the webroot (same directory, so rename(2) is atomic)."""
    parent, name = posixpath.split(validate_remote_path(webroot, "webroot"))
    return posixpath.join(parent, f".{name}.shipyard-{secrets.token_hex(6)}")


# -- remote --------------------------------------------------------------------------------


async def prepare_release_dir(
    conn: SSHConnection, releases_dir: str, release_id: str, *, timeout: float = COMMAND_TIMEOUT
) -> str:
    """Create ``<releases>/<release_id>`` (and parents) on the host; return its path.
    An existing directory (a retried deploy) is kept: the transfer makes it exact."""
    path = release_path(releases_dir, release_id)
    await conn.run(prepare_command(path), timeout=timeout, stage="prepare")
    return path


async def current_release(
    conn: SSHConnection, webroot: str, *, timeout: float = COMMAND_TIMEOUT
) -> str | None:
    """The path the host's webroot symlink points at (the live release), or None if there
    is no symlink yet. Use it as ``link_dest`` for the next transfer."""
    result = await conn.run(live_command(webroot), timeout=timeout, stage="prepare", capture=True)
    return parse_live_target(result.stdout, webroot)


async def switch_symlink(
    conn: SSHConnection, webroot: str, release_dir: str, *, timeout: float = COMMAND_TIMEOUT
) -> str | None:
    """Point ``webroot`` at ``release_dir`` atomically; return the previous target, if any.

    A new symlink is made next to the webroot and renamed over it (``mv -T``, rename(2)):
    readers see the old release or the new one, never nothing. Refuses, with RemoteError,
    a webroot that is a real directory or file, and a release dir that does not exist.
    """
    argv = switch_command(webroot, release_dir, temp_link_path(webroot))
    result = await conn.run(argv, timeout=timeout, stage="switch", check=False, capture=True)
    if result.exit_code == _NOT_A_SYMLINK:
        raise RemoteError(
            f"webroot {webroot} on {conn.host} is a real directory or file, not a symlink; "
            "move it away before the first deploy",
            host=conn.host,
            stage="switch",
            reason="webroot_not_symlink",
            exit_code=3,
        )
    if result.exit_code == _RELEASE_MISSING:
        raise RemoteError(
            f"release {release_dir} does not exist on {conn.host}",
            host=conn.host,
            stage="switch",
            reason="release_missing",
            exit_code=4,
        )
    if not result.ok:
        raise RemoteError(
            f"switching {webroot} on {conn.host} failed: {result.output_tail.strip()}",
            host=conn.host,
            stage="switch",
            reason="exit_code",
            exit_code=result.exit_code,
            output=result.output_tail,
            timed_out=result.timed_out or None,
        )
    return parse_live_target(result.stdout, webroot)


async def list_releases(
    conn: SSHConnection,
    releases_dir: str,
    webroot: str | None,
    *,
    timeout: float = COMMAND_TIMEOUT,
) -> list[ReleaseInfo]:
    """The releases on the host, newest first, marking the one ``webroot`` points at."""
    result = await conn.run(
        list_command(releases_dir, webroot), timeout=timeout, stage="list", capture=True
    )
    return parse_release_listing(result.stdout, releases_dir, webroot)


async def prune_releases(
    conn: SSHConnection,
    releases_dir: str,
    keep: int,
    live_id: str | None,
    previous_id: str | None,
    *,
    webroot: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> list[str]:
    """Delete all releases but the newest ``keep``, ``live_id`` and ``previous_id``; return
    the deleted ids, oldest first. With ``webroot``, whatever it points at is kept too."""
    releases = await list_releases(conn, releases_dir, webroot, timeout=timeout)
    plan = plan_prune([r.id for r in releases], keep=keep, live_id=live_id, previous_id=previous_id)
    # The webroot's actual target wins over what the caller believes is live.
    doomed = [i for i in plan if not any(r.live and r.id == i for r in releases)]
    if doomed:
        await conn.run(remove_command(releases_dir, doomed), timeout=timeout, stage="prune")
    return doomed
