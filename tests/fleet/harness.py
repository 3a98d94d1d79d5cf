"""A fleet of real sshd target hosts on loopback addresses, for tests.

Host ``i`` (0-based) is an ``sshd`` listening on ``127.0.0.(i+2):port`` inside its own mount
namespace, where a private directory (``FleetHost.host_dir``) is bind-mounted on ``/srv``.
Every host therefore has the same paths, like real servers, while the test process can
look at each host's ``/srv`` directly through ``host_dir``.

Needs root, ``unshare`` (util-linux) and ``/usr/sbin/sshd`` (openssh-server).

    with Fleet(3, tmp_path) as fleet:
        host = fleet.hosts[0]
        fleet.stop_host(0)    # the host is down: its sshd and every session are killed
        fleet.start_host(0)   # and back, with the same address, port, keys and /srv
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from shipyard.deploy.transport import HostSpec

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 15.0
MAX_HOSTS = 250

# Positional args keep paths out of the script text, whatever characters they hold.
# The login user's ~/.bashrc is blanked inside the host: bash sources it for every ssh
# command, and the developer's dotfiles (pyenv init: 0.3 s a command here) are not part of
# the target host.
_HOST_SCRIPT = """
mount --bind "$1" /srv || exit 1
if [ -f "$5/.bashrc" ]; then mount --bind "$6" "$5/.bashrc" || exit 1; fi
exec "$2" -D -e -f "$3" -o ListenAddress="$4"
"""


class FleetError(RuntimeError):
    """The test fleet could not be started."""


@dataclass(frozen=True)
class FleetHost:
    """One target host of the fleet, as a test (or a HostSpec) needs to reach it."""

    name: str
    address: str
    port: int
    user: str
    host_dir: Path  # what the host sees as /srv
    host_public_key: str  # "ssh-ed25519 AAAA..."
    client_key_path: Path
    client_private_key: str = dataclasses.field(repr=False)
    sshd_log: Path  # sshd -e output; one "Accepted publickey" line per handshake

    def spec(self, *, known_host_key: str | None | bool = True) -> HostSpec:
        """A transport HostSpec for this host; ``known_host_key=True`` uses the real key."""
        from shipyard.deploy.transport import HostSpec

        key = self.host_public_key if known_host_key is True else known_host_key
        return HostSpec(
            name=self.name,
            address=self.address,
            port=self.port,
            user=self.user,
            private_key=self.client_private_key,
            known_host_key=key or None,
        )


def unavailable_reason() -> str | None:
    """Why a fleet cannot run on this machine, or None if it can."""
    if os.geteuid() != 0:
        return "the sshd test fleet needs root (mount namespaces, sshd)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing: apt-get install -y openssh-server"
    for tool in ("unshare", "mount", "ssh", "ssh-keygen", "rsync"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: apt-get install -y openssh-server openssh-client rsync"
    return None


class Fleet:
    """N sshd hosts; a context manager that starts them on enter and kills them on exit."""

    def __init__(self, n: int, workdir: Path | str, *, user: str = "root") -> None:
        if not 1 <= n <= MAX_HOSTS:
            raise ValueError(f"a fleet has 1 to {MAX_HOSTS} hosts, not {n}")
        self.n = n
        self.workdir = Path(workdir)
        self.user = user
        self.port = 0
        self.hosts: list[FleetHost] = []
        self._home = pwd.getpwnam(user).pw_dir
        self._blank = self.workdir / "blank"
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._namespaces: dict[int, str] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> list[FleetHost]:
        """Start every host; return once each one accepts TCP connections."""
        reason = unavailable_reason()
        if reason:
            raise FleetError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation chroot
        os.makedirs("/srv", exist_ok=True)  # the mount point for every host's private /srv
        client_key = self._keygen(self.workdir / "client_key")
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(client_key.with_suffix(".pub").read_text())
        self._blank.write_text("")
        self.hosts = [self._prepare_host(i, client_key) for i in range(self.n)]
        atexit.register(self.stop)
        # Hosts share one port (their addresses differ); retry on another port if a parallel
        # test worker won the race for it.
        for _attempt in range(5):
            self.port = _free_port([h.address for h in self.hosts])
            self.hosts = [_with_port(h, self.port) for h in self.hosts]
            try:
                for i in range(self.n):
                    self.start_host(i)
                return self.hosts
            except _PortTaken:
                self.stop()
        raise FleetError("no free port for the fleet after 5 attempts")

    def stop(self) -> None:
        """Kill every host (sshd and all its sessions)."""
        for i in list(self._procs):
            self.stop_host(i)
        atexit.unregister(self.stop)

    def start_host(self, i: int) -> FleetHost:
        """(Re)start host ``i``; return once it accepts TCP connections."""
        host = self.hosts[i]
        if i in self._procs:
            return host
        config = self.workdir / host.name / "sshd_config"
        self._write_sshd_config(host, config)
        pid_file = self.workdir / host.name / "sshd.pid"
        pid_file.unlink(missing_ok=True)
        log = open(host.sshd_log, "ab")  # noqa: SIM115 - sshd holds it, we close our copy
        try:
            proc = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    _HOST_SCRIPT,
                    "sh",
                    str(host.host_dir),
                    SSHD,
                    str(config),
                    host.address,
                    self._home,
                    str(self._blank),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C in the test run must not reach the hosts
                # A killed test run leaves no hosts behind. Tied to the starting thread, so
                # only from the main thread, whose end is the end of the run.
                preexec_fn=_die_with_parent if _in_main_thread() else None,
            )
        finally:
            log.close()
        self._procs[i] = proc
        try:
            self._wait_until_listening(i, proc, pid_file)
        except BaseException:
            self.stop_host(i)
            raise
        return host

    def stop_host(self, i: int) -> None:
        """Take host ``i`` down: kill its sshd and every process in its mount namespace."""
        proc = self._procs.pop(i, None)
        if proc is None:
            return
        namespace = self._namespaces.pop(i, None)
        if namespace is not None and proc.poll() is None:
            # Sessions outlive a killed listener; a host that is down has none left. The
            # listener is stopped, not killed, until its sessions are gone: alive, it keeps
            # the namespace (and so its id) from being reused by another test's host.
            os.kill(proc.pid, signal.SIGSTOP)
            for _round in range(50):
                others = [p for p in _pids_in_mount_namespace(namespace) if p != proc.pid]
                if not others:
                    break
                for pid in others:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)

    def is_running(self, i: int) -> bool:
        return i in self._procs

    def __enter__(self) -> Fleet:
        if not self._procs:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, i: int) -> FleetHost:
        return self.hosts[i]

    def __iter__(self) -> Iterator[FleetHost]:
        return iter(self.hosts)

    # -- helpers -----------------------------------------------------------------------

    def _prepare_host(self, i: int, client_key: Path) -> FleetHost:
        name = f"host{i + 1}"
        hdir = self.workdir / name
        srv = hdir / "srv"
        srv.mkdir(parents=True, exist_ok=True)
        host_key = self._keygen(hdir / "ssh_host_ed25519_key")
        return FleetHost(
            name=name,
            address=f"127.0.0.{i + 2}",
            port=0,
            user=self.user,
            host_dir=srv,
            host_public_key=_key_line(host_key.with_suffix(".pub")),
            client_key_path=client_key,
            client_private_key=client_key.read_text(),
            sshd_log=hdir / "sshd.log",
        )

    def _write_sshd_config(self, host: FleetHost, path: Path) -> None:
        hdir = path.parent
        path.write_text(
            "\n".join(
                [
                    f"Port {host.port}",
                    f'HostKey "{hdir / "ssh_host_ed25519_key"}"',
                    f'PidFile "{hdir / "sshd.pid"}"',
                    f'AuthorizedKeysFile "{self.workdir / "authorized_keys"}"',
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "MaxStartups 200:30:400",
                    "UseDNS no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "X11Forwarding no",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    @staticmethod
    def _keygen(path: Path) -> Path:
        if not path.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
        return path

    def _wait_until_listening(self, i: int, proc: subprocess.Popen[bytes], pid_file: Path) -> None:
        host = self.hosts[i]
        log = host.sshd_log
        deadline = time.monotonic() + START_TIMEOUT
        # sshd writes its PidFile after binding, so a matching pid means *our* sshd listens
        # (not another test worker's on the same address and port).
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                text = log.read_text(errors="replace")
                if any("Address already in use" in line for line in text.splitlines()[-5:]):
                    raise _PortTaken
                raise FleetError(f"sshd for {host.name} exited ({proc.returncode}):\n{text}")
            if _read_pid(pid_file) == proc.pid and _accepts_tcp(host.address, host.port):
                with contextlib.suppress(OSError):
                    self._namespaces[i] = os.readlink(f"/proc/{proc.pid}/ns/mnt")
                return
            time.sleep(0.02)
        raise FleetError(f"sshd for {host.name} did not listen within {START_TIMEOUT}s")


def _die_with_parent() -> None:
    """In the child: SIGKILL when the parent goes (PR_SET_PDEATHSIG survives exec)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _PortTaken(Exception):
    pass


def _with_port(host: FleetHost, port: int) -> FleetHost:
    return dataclasses.replace(host, port=port)


def _free_port(addresses: list[str]) -> int:
    for _ in range(200):
        port = random.randint(20000, 60000)  # noqa: S311 - not security-relevant
        if all(_can_bind(a, port) for a in addresses):
            return port
    raise FleetError("no free TCP port found for the fleet")


def _can_bind(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _accepts_tcp(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _key_line(pub: Path) -> str:
    """ "ssh-ed25519 AAAA..." without the comment."""
    return " ".join(pub.read_text().split()[:2])


def _pids_in_mount_namespace(namespace: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/mnt") == namespace:
                pids.append(int(entry))
    return pids
