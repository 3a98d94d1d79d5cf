"""The test fleet itself: real sshd hosts, each on its own address with a private /srv."""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fleet.harness import Fleet, FleetHost


def ssh(host: FleetHost, command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Plain OpenSSH, verifying the host key the harness reports."""
    known_hosts = tmp_path / f"known_hosts_{host.name}"
    known_hosts.write_text(f"[{host.address}]:{host.port} {host.host_public_key}\n")
    return subprocess.run(
        [
            "ssh", "-F", "none", "-i", str(host.client_key_path),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "IdentitiesOnly=yes",
            "-p", str(host.port), f"{host.user}@{host.address}", command,
        ],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def accepts_tcp(host: FleetHost) -> bool:
    try:
        with socket.create_connection((host.address, host.port), timeout=2):
            return True
    except OSError:
        return False


def test_hosts_listen_on_their_own_loopback_addresses(fleet: Fleet) -> None:
    assert [h.address for h in fleet] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert len({h.name for h in fleet}) == len(fleet)
    assert all(accepts_tcp(h) for h in fleet)


def test_a_host_is_reached_as_root_with_the_client_key_and_its_recorded_host_key(
    fleet: Fleet, tmp_path: Path
) -> None:
    result = ssh(fleet[0], "id -u", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0\n"
    assert fleet[0].host_public_key.startswith("ssh-ed25519 ")
    assert "PRIVATE KEY" in fleet[0].client_private_key


def test_each_host_has_a_private_srv(fleet: Fleet, tmp_path: Path) -> None:
    name = f"only-on-host1-{uuid.uuid4().hex[:8]}"
    assert ssh(fleet[0], f"touch /srv/{name}", tmp_path).returncode == 0
    assert (fleet[0].host_dir / name).exists()
    assert not (fleet[1].host_dir / name).exists()
    assert ssh(fleet[1], f"test ! -e /srv/{name}", tmp_path).returncode == 0


def test_hosts_do_not_share_their_host_keys(fleet: Fleet) -> None:
    assert len({h.host_public_key for h in fleet}) == len(fleet)


def test_a_stopped_host_is_down_and_comes_back_with_the_same_identity(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    private = make_fleet(2)
    before = private[0]
    (before.host_dir / "kept").write_text("still here")
    private.stop_host(0)
    assert not accepts_tcp(before)
    assert ssh(private[1], "true", tmp_path).returncode == 0  # the others stay up
    after = private.start_host(0)
    assert after == before
    assert ssh(after, "cat /srv/kept", tmp_path).stdout == "still here"


def test_stopping_a_host_ends_its_open_sessions(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    private = make_fleet(1)
    known_hosts = tmp_path / "known_hosts"
    host = private[0]
    known_hosts.write_text(f"[{host.address}]:{host.port} {host.host_public_key}\n")
    with subprocess.Popen(
        [
            "ssh", "-F", "none", "-i", str(host.client_key_path), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-p", str(host.port),
            f"root@{host.address}", "echo up; exec sleep 60",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
    ) as session:  # fmt: skip
        try:
            assert session.stdout is not None and session.stdout.readline() == "up\n"
            private.stop_host(0)
            assert session.wait(timeout=30) != 0
        finally:
            if session.poll() is None:
                session.kill()


def test_make_fleet_refuses_big_fleets(make_fleet: Callable[..., Fleet]) -> None:
    with pytest.raises(ValueError, match="small"):
        make_fleet(5)
