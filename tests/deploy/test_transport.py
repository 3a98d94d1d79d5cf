"""The SSH transport against real sshd hosts from the test fleet: no mocks."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shipyard.deploy.transport import (
    HostSpec,
    SSHConnection,
    connect,
    remote_command,
    scan_host_key,
)
from shipyard.errors import InvalidInput, RemoteError
from tests.fleet.harness import Fleet, FleetHost

T = TypeVar("T")

HOSTILE = [
    "$(touch /srv/pwned)",
    "`touch /srv/pwned`",
    "; rm -rf /srv/canary",
    "&& rm -rf /srv/canary",
    "| tee /srv/pwned",
    "it's",
    'say "hi"',
    "back\\slash",
    "two\nlines",
    "  spaced  ",
    "*",
    "$HOME",
    "-n",
    "",
]


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def host(fleet: Fleet) -> FleetHost:
    return fleet[0]


@pytest.fixture
def workspace(host: FleetHost) -> tuple[str, Path]:
    """A fresh directory on the host: (its remote path, the same directory seen locally)."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    (host.host_dir / name).mkdir()
    return f"/srv/{name}", host.host_dir / name


def accepted_handshakes(host: FleetHost) -> int:
    return host.sshd_log.read_text(errors="replace").count("Accepted publickey")


def other_host_key(tmp_path: Path) -> str:
    key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def process_is_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


def wait_until(condition: Any, *, limit: float = 10.0) -> bool:
    """Poll ``condition`` (bounded); for effects that land just after a call returns."""
    import time

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


# -- commands --------------------------------------------------------------------------------


def test_output_lines_arrive_in_order_from_both_streams(host: FleetHost) -> None:
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done"
    lines: list[tuple[str, str]] = []

    async def main() -> Any:
        async with connect(host.spec()) as conn:
            return await conn.run(
                ["sh", "-c", script],
                timeout=30,
                on_line=lambda stream, line: lines.append((stream, line)),
            )

    result = arun(main())
    assert result.ok and result.exit_code == 0 and result.host == host.name
    assert [line for stream, line in lines if stream == "stdout"] == ["out1", "out2", "out3"]
    assert [line for stream, line in lines if stream == "stderr"] == ["err1", "err2", "err3"]
    assert sorted(result.output_tail.splitlines()) == sorted(line for _, line in lines)


def test_output_tail_is_bounded_but_every_line_is_streamed(host: FleetHost) -> None:
    lines: list[str] = []

    async def main() -> Any:
        async with connect(host.spec()) as conn:
            return await conn.run(
                ["seq", "1", "1000"], timeout=30, on_line=lambda _s, line: lines.append(line)
            )

    result = arun(main())
    assert lines == [str(i) for i in range(1, 1001)]
    assert result.output_tail.splitlines() == [str(i) for i in range(801, 1001)]


def test_env_vars_and_cwd_reach_the_command(host: FleetHost, workspace: tuple[str, Path]) -> None:
    remote, _ = workspace

    async def main() -> Any:
        async with connect(host.spec()) as conn:
            return await conn.run(
                ["sh", "-c", 'printf "%s|%s|%s\\n" "$RELEASE" "$TASK_ID" "$(pwd)"'],
                env={"RELEASE": "20261122T101500-42", "TASK_ID": "42"},
                cwd=remote,
                timeout=30,
                capture=True,
            )

    assert arun(main()).stdout == f"20261122T101500-42|42|{remote}\n"


def test_hostile_strings_pass_through_as_literal_arguments_env_and_cwd(
    host: FleetHost, workspace: tuple[str, Path]
) -> None:
    (host.host_dir / "canary").mkdir(exist_ok=True)
    remote, local = workspace
    odd_dir = 'it\'s a "dir" $(touch pwned); rm -rf ..'  # one path component
    (local / odd_dir).mkdir()
    env = {f"V{i}": value for i, value in enumerate(HOSTILE)}

    async def main() -> tuple[str, str, str]:
        async with connect(host.spec()) as conn:
            args = await conn.run(
                ["sh", "-c", 'for a; do printf "%s\\0" "$a"; done', "sh", *HOSTILE],
                timeout=30,
                capture=True,
            )
            values = await conn.run(["printenv", "-0", *env], env=env, timeout=30, capture=True)
            cwd = await conn.run(["pwd"], cwd=f"{remote}/{odd_dir}", timeout=30, capture=True)
            return args.stdout, values.stdout, cwd.stdout

    args, values, cwd = arun(main())
    assert args.split("\0")[:-1] == HOSTILE
    assert values.split("\0")[:-1] == HOSTILE
    assert cwd == f"{remote}/{odd_dir}\n"
    assert not list(host.host_dir.rglob("pwned"))
    assert (host.host_dir / "canary").is_dir()


def test_remote_command_quotes_every_element() -> None:
    line = remote_command(["echo", "$(id)", "a b"], env={"X": "; rm -rf /"}, cwd="/srv/it's")
    assert line == "cd -- '/srv/it'\"'\"'s' && exec env 'X=; rm -rf /' echo '$(id)' 'a b'"


@pytest.mark.parametrize("name", ["A B", "1X", "X;rm", "X=Y", ""])
def test_invalid_env_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        remote_command(["true"], env={name: "v"})


def test_a_failing_command_raises_remote_error_with_exit_code_and_output(host: FleetHost) -> None:
    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.run(["sh", "-c", "echo boom >&2; exit 3"], timeout=30, stage="prev_release")

    with pytest.raises(RemoteError) as caught:
        arun(main())
    details = caught.value.details
    assert (details["host"], details["stage"], details["exit_code"]) == (
        host.name,
        "prev_release",
        3,
    )
    assert "boom" in details["output"] and "boom" in caught.value.message


def test_without_check_a_failing_command_returns_its_result(host: FleetHost) -> None:
    async def main() -> Any:
        async with connect(host.spec()) as conn:
            return await conn.run(["sh", "-c", "exit 7"], timeout=30, check=False)

    result = arun(main())
    assert (result.exit_code, result.ok, result.timed_out) == (7, False, False)


def test_a_missing_cwd_fails_the_command(host: FleetHost) -> None:
    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.run(["true"], cwd="/srv/does-not-exist", timeout=30)

    with pytest.raises(RemoteError):
        arun(main())


def test_timeout_kills_the_remote_command(host: FleetHost, workspace: tuple[str, Path]) -> None:
    remote, local = workspace

    async def main() -> Any:
        async with connect(host.spec()) as conn:
            return await conn.run(
                ["sh", "-c", f"echo $$ > {remote}/pid; sleep 60 & sleep 61; wait"],
                timeout=1,
                check=False,
            )

    result = arun(main())
    assert result.timed_out and result.exit_code is None and not result.ok
    leader = int((local / "pid").read_text())
    assert wait_until(lambda: process_is_gone(leader))
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == leader]
    assert all(process_is_gone(pid) for pid in children)


def test_timeout_with_check_raises_a_timeout_error(host: FleetHost) -> None:
    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.run(["sleep", "60"], timeout=1, stage="post_release")

    with pytest.raises(RemoteError) as caught:
        arun(main())
    assert caught.value.details["reason"] == "timeout"
    assert caught.value.details["stage"] == "post_release"


def test_cancelling_a_run_kills_the_remote_command(
    host: FleetHost, workspace: tuple[str, Path]
) -> None:
    remote, local = workspace

    async def main() -> None:
        async with connect(host.spec()) as conn:
            started = asyncio.Event()
            task = asyncio.create_task(
                conn.run(
                    ["sh", "-c", f"echo $$ > {remote}/pid; echo started; exec sleep 60"],
                    timeout=120,
                    on_line=lambda _s, _l: started.set(),
                )
            )
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    arun(main())
    pid = int((local / "pid").read_text())
    assert wait_until(lambda: process_is_gone(pid))


def _pgid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


# -- connection ------------------------------------------------------------------------------


def test_commands_and_transfer_share_one_ssh_handshake(host: FleetHost, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    before = accepted_handshakes(host)

    async def main() -> None:
        async with connect(host.spec()) as conn:
            for _ in range(3):
                await conn.run(["true"], timeout=30)
            target = f"/srv/t-{uuid.uuid4().hex[:12]}"
            await conn.run(["mkdir", target], timeout=30)
            await conn.push_dir(tmp_path, target, timeout=60)

    arun(main())
    assert wait_until(lambda: accepted_handshakes(host) >= before + 1)
    assert accepted_handshakes(host) == before + 1


def test_scan_host_key_records_the_hosts_key(host: FleetHost) -> None:
    assert arun(scan_host_key(host.address, host.port, timeout=10)) == host.host_public_key


def test_a_host_without_a_recorded_key_must_be_scanned_first(host: FleetHost) -> None:
    with pytest.raises(InvalidInput):
        SSHConnection(host.spec(known_host_key=None))


def test_a_changed_host_key_is_refused(host: FleetHost, tmp_path: Path) -> None:
    spec = host.spec(known_host_key=other_host_key(tmp_path))
    with pytest.raises(RemoteError) as caught:
        arun(SSHConnection(spec).open())
    error = caught.value
    assert error.details["stage"] == "connect"
    assert error.details["reason"] == "host_key_mismatch"
    assert host.name in error.message


def test_a_wrong_client_key_is_an_auth_failure(host: FleetHost, tmp_path: Path) -> None:
    key = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    spec = HostSpec(
        host.name, host.address, host.port, host.user, key.read_text(), host.host_public_key
    )
    with pytest.raises(RemoteError) as caught:
        arun(SSHConnection(spec).open())
    assert caught.value.details["reason"] == "auth_failed"


def test_a_down_host_gives_a_clear_connect_error(make_fleet: Any) -> None:
    private = make_fleet(1)
    private.stop_host(0)
    with pytest.raises(RemoteError) as caught:
        arun(SSHConnection(private[0].spec(), connect_timeout=5).open())
    assert caught.value.details["stage"] == "connect"
    assert caught.value.details["reason"] == "connection_refused"
    assert private[0].name in caught.value.message


def test_a_host_going_down_fails_the_next_command_without_reconnecting(make_fleet: Any) -> None:
    private = make_fleet(1)
    target = private[0]

    async def main() -> None:
        async with connect(target.spec()) as conn:
            await conn.run(["true"], timeout=30)
            private.stop_host(0)
            private.start_host(0)  # back up: a silent reconnect would now succeed
            await conn.run(["true"], timeout=30, stage="post_release")

    with pytest.raises(RemoteError) as caught:
        arun(main())
    assert caught.value.details["reason"] == "connection_lost"
    assert caught.value.details["stage"] == "post_release"


def test_the_private_key_lives_in_a_private_dir_deleted_on_close(host: FleetHost) -> None:
    conn = SSHConnection(host.spec())
    arun(conn.open())
    try:
        directory = conn.private_dir
        assert directory is not None
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        key = Path(directory) / "id"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().strip() == host.client_private_key.strip()
    finally:
        arun(conn.close())
    assert not Path(directory).exists()
    assert conn.private_dir is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("address", "-oProxyCommand=x"), ("address", "a b"), ("user", "root;id"), ("port", 0)],
)
def test_unsafe_host_fields_are_refused(host: FleetHost, field: str, value: Any) -> None:
    spec = HostSpec(**{**host.spec().__dict__, field: value})
    with pytest.raises(InvalidInput):
        SSHConnection(spec)


# -- transfer --------------------------------------------------------------------------------


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_second_push_hard_links_unchanged_files_and_sends_only_the_changed_one(
    host: FleetHost, workspace: tuple[str, Path], tmp_path: Path
) -> None:
    remote, local = workspace
    build = tmp_path / "build"
    _write_tree(build, {"index.html": "v1", "app.js": "same", "lib/util.js": "same too"})
    lines: list[str] = []

    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.push_dir(build, f"{remote}/r1", timeout=60)
            (build / "index.html").write_text("v2")
            for path in build.rglob("*"):  # a rebuild stamps fresh mtimes on every file
                os.utime(path, (1_900_000_000, 1_900_000_000))
            await conn.push_dir(
                build,
                f"{remote}/r2",
                link_dest=f"{remote}/r1",
                timeout=60,
                on_line=lambda _s, line: lines.append(line),
            )

    arun(main())
    r1, r2 = local / "r1", local / "r2"
    for unchanged in ("app.js", "lib/util.js"):
        assert (r1 / unchanged).stat().st_ino == (r2 / unchanged).stat().st_ino
        assert (r2 / unchanged).stat().st_nlink == 2
    assert (r1 / "index.html").stat().st_ino != (r2 / "index.html").stat().st_ino
    assert (r1 / "index.html").read_text() == "v1"  # the old release is untouched
    assert (r2 / "index.html").read_text() == "v2"
    assert "Number of regular files transferred: 1" in lines


def test_push_makes_the_remote_dir_an_exact_copy(
    host: FleetHost, workspace: tuple[str, Path], tmp_path: Path
) -> None:
    remote, local = workspace
    build = tmp_path / "build"
    _write_tree(build, {"keep.txt": "k", "gone.txt": "g", "node_modules/x.js": "x"})

    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.push_dir(build, f"{remote}/r", timeout=60)
            (build / "gone.txt").unlink()
            await conn.push_dir(build, f"{remote}/r", excludes=["node_modules"], timeout=60)

    arun(main())
    assert sorted(p.name for p in (local / "r").iterdir()) == ["keep.txt", "node_modules"]
    # Excluded from the second push, so protected from --delete as well: rsync semantics.


def test_excluded_files_are_not_sent(
    host: FleetHost, workspace: tuple[str, Path], tmp_path: Path
) -> None:
    remote, local = workspace
    build = tmp_path / "build"
    _write_tree(build, {"a.txt": "a", ".git/HEAD": "ref", "node_modules/x.js": "x"})

    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.push_dir(build, f"{remote}/r", excludes=[".git", "node_modules"], timeout=60)

    arun(main())
    assert sorted(p.name for p in (local / "r").iterdir()) == ["a.txt"]


def test_push_to_a_path_with_hostile_characters_lands_there_literally(
    host: FleetHost, workspace: tuple[str, Path], tmp_path: Path
) -> None:
    remote, local = workspace
    odd = 'it\'s a "release" $(touch pwned); rm -rf ..'
    build = tmp_path / "build"
    _write_tree(build, {"a.txt": "a"})

    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.push_dir(build, f"{remote}/{odd}", timeout=60)

    arun(main())
    assert (local / odd / "a.txt").read_text() == "a"
    assert not list(host.host_dir.rglob("pwned"))


@pytest.mark.parametrize("remote_dir", ["relative/dir", "/srv/../etc", "/", "/srv/a\nb"])
def test_push_refuses_unsafe_remote_paths(host: FleetHost, tmp_path: Path, remote_dir: str) -> None:
    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.push_dir(tmp_path, remote_dir, timeout=60)

    with pytest.raises(InvalidInput):
        arun(main())


def test_a_failed_transfer_raises_a_transfer_error(host: FleetHost, tmp_path: Path) -> None:
    async def main() -> None:
        async with connect(host.spec()) as conn:
            await conn.push_dir(tmp_path, "/srv/no-such-parent/deeper/release", timeout=60)

    with pytest.raises(RemoteError) as caught:
        arun(main())
    assert caught.value.details["stage"] == "transfer"
    assert caught.value.details["host"] == host.name
    assert "No such file or directory" in caught.value.message
