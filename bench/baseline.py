"""Runs ``baseline.sh`` (the hand-written admin script) against the fleet, timed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("baseline.sh")


class Baseline:
    """An ssh config for the fleet (same options as Shipyard's, without multiplexing)."""

    def __init__(self, hosts: list[Any], workdir: Path, *, timeout: float) -> None:
        self.hosts = hosts
        self.timeout = timeout
        workdir.mkdir(parents=True, exist_ok=True)
        known = workdir / "known_hosts"
        known.write_text("".join(f"{h.name} {h.host_public_key}\n" for h in hosts))
        self.config = workdir / "ssh_config"
        self.config.write_text("".join(_host_block(h, known) for h in hosts))

    def deploy(
        self,
        hosts: list[Any],
        source: Path,
        releases: str,
        webroot: str,
        release_id: str,
        previous_id: str | None,
        parallel: int,
    ) -> float:
        """Deploy ``source`` to ``hosts``; return the wall time in seconds."""
        argv = [
            "sh",
            str(SCRIPT),
            str(self.config),
            str(source),
            releases,
            webroot,
            release_id,
            previous_id or "",
            str(parallel),
            *(h.name for h in hosts),
        ]
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # our own session: the script's children
            proc.communicate(timeout=10)
            raise RuntimeError(f"baseline timed out after {self.timeout:.0f}s") from None
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(
                f"baseline failed ({proc.returncode}):\n{out.decode(errors='replace')[-3000:]}"
            )
        return elapsed


def _host_block(host: Any, known_hosts: Path) -> str:
    options = {
        "HostName": host.address, "Port": host.port, "User": host.user,
        "IdentityFile": host.client_key_path, "IdentitiesOnly": "yes",
        "IdentityAgent": "none", "UserKnownHostsFile": known_hosts,
        "GlobalKnownHostsFile": "/dev/null", "StrictHostKeyChecking": "yes",
        "HostKeyAlias": host.name, "CheckHostIP": "no", "UpdateHostKeys": "no",
        "BatchMode": "yes", "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no", "ConnectTimeout": 10,
        "ServerAliveInterval": 15, "ServerAliveCountMax": 3, "LogLevel": "ERROR",
    }  # fmt: skip
    return f"Host {host.name}\n" + "".join(f"  {k} {v}\n" for k, v in options.items())
