"""SSH transport to target hosts: one OpenSSH connection per host, shared by every step.

A :class:`SSHConnection` starts one OpenSSH master (``ControlMaster``) per host; every remote
command and the rsync transfer then run as sessions multiplexed over it, so a host costs one
handshake per deploy however many steps it has. A lost master is an error, never a silent
reconnect (mux clients are given ``ProxyCommand false``, so they cannot dial on their own).

Host keys are verified strictly: the key recorded on first contact (:func:`scan_host_key`) is
the only one accepted, and a changed key fails with ``RemoteError(stage="connect")``.

Remote command lines are built only from ``shlex.quote``-d argv elements (:func:`remote_command`);
hooks run as ``["sh", "-c", script]`` with their variables in ``env``. The remote login shell
must be POSIX (sh, bash, dash, zsh, ksh).

    async with connect(host_spec) as conn:
        result = await conn.run(["uname", "-a"], timeout=30)
        await conn.push_dir(build_dir, "/data/releases/shop/20261122T101500-42",
                            link_dest="/data/releases/shop/20261121T090000-41", timeout=600)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import secrets
import shlex
import shutil
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shipyard.errors import InvalidInput, RemoteError

__all__ = [
    "CommandResult",
    "HostSpec",
    "OnLine",
    "SSHConnection",
    "connect",
    "remote_command",
    "scan_host_key",
]

Stream = Literal["stdout", "stderr"]
OnLine = Callable[[Stream, str], None]

TAIL_LINES = 200
MAX_LINE = 64 * 1024  # longer lines are split, so one line cannot exhaust memory
MAX_CAPTURE = 4 * 1024 * 1024
KILL_TIMEOUT = 10.0
# Every ssh invocation names this alias; the real address lives in the generated config file.
ALIAS = "shipyard-target"
_SHM = "/dev/shm"  # noqa: S108 - only as the parent of a private mkdtemp directory

_ADDRESS_RE = re.compile(r"[A-Za-z0-9_.:%]+|\[[0-9A-Fa-f:.%]+\]")
_USER_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEY_RE = re.compile(r"(?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+ [A-Za-z0-9+/]+={0,3}")
_KEY_PREFERENCE = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)


@dataclass(frozen=True)
class HostSpec:
    """How to reach one target host. ``known_host_key`` is "type base64" as recorded."""

    name: str
    address: str
    port: int
    user: str
    private_key: str = field(repr=False)
    known_host_key: str | None

    def validated(self) -> HostSpec:
        """Return self if every field is safe to put in an ssh config, else raise InvalidInput."""
        _check_address(self.address, self.port)
        if not _USER_RE.fullmatch(self.user):
            raise InvalidInput(f"not a valid user name: {self.user!r}", field="user")
        if "PRIVATE KEY" not in self.private_key:
            raise InvalidInput("the credential is not an SSH private key", field="credential")
        if self.known_host_key is not None:
            _host_key_line(self.known_host_key)
        return self


@dataclass(frozen=True)
class CommandResult:
    """What a remote command did. ``exit_code`` is None when it was killed on timeout."""

    host: str
    command: str
    exit_code: int | None
    duration: float
    output_tail: str
    timed_out: bool = False
    stdout: str = ""  # the whole stdout (up to 4 MiB), only when run with capture=True

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def remote_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    pid_marker: str | None = None,
) -> str:
    """The command line sent to the remote login shell, every value ``shlex.quote``-d.

    With ``pid_marker`` the shell first prints ``"<marker> <pid>"`` to stderr; the command
    then ``exec``s in that process, the leader of its own session and process group, so the
    whole group can be killed on timeout or cancellation.
    """
    if not argv:
        raise InvalidInput("an empty command cannot run", field="argv")
    parts = []
    if pid_marker is not None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", pid_marker):
            raise ValueError("pid_marker must be a plain token")
        parts.append(f'printf "%s %s\\n" {pid_marker} "$$" >&2 &&')
    if cwd is not None:
        parts.append(f"cd -- {shlex.quote(cwd)} &&")
    parts.append("exec")
    if env:
        parts.append("env")
        for name, value in env.items():
            if not _ENV_NAME_RE.fullmatch(name):
                raise InvalidInput(f"not a valid variable name: {name!r}", field="env")
            parts.append(shlex.quote(f"{name}={value}"))
        # env would take a first word containing "=" for one more variable.
        if "=" in argv[0]:
            raise InvalidInput(f"a command name cannot contain '=': {argv[0]!r}", field="argv")
    parts.extend(shlex.quote(arg) for arg in argv)
    return " ".join(parts)


async def scan_host_key(address: str, port: int = 22, timeout: float = 10.0) -> str:
    """The host's public key as "type base64" (ed25519 preferred), for first contact.

    Raises RemoteError(stage="connect") if the host does not answer with a key.
    """
    _check_address(address, port)
    address = address.strip("[]")
    argv = [
        "ssh-keyscan",
        "-T",
        str(max(1, int(timeout))),
        "-t",
        "ed25519,ecdsa,rsa",
        "-p",
        str(port),
        address,
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout + 5):
            out, err = await proc.communicate()
    except TimeoutError:
        await _kill(proc)
        out, err = b"", b"timed out"
    keys = {}
    for line in out.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            keys[fields[1]] = f"{fields[1]} {fields[2]}"
    for key_type in _KEY_PREFERENCE:
        if key_type in keys:
            return keys[key_type]
    raise RemoteError(
        f"could not read the host key of {address}:{port}: "
        f"{_last_line(err.decode(errors='replace')) or 'no answer'}",
        host=address,
        stage="connect",
        reason="unreachable",
    )


class SSHConnection:
    """One multiplexed OpenSSH connection to one host. Open it before use; close it after."""

    def __init__(
        self,
        spec: HostSpec,
        *,
        connect_timeout: float = 10.0,
        idle_timeout: int = 600,
    ) -> None:
        self.spec = spec.validated()
        if spec.known_host_key is None:
            raise InvalidInput(
                f"no host key recorded for {spec.name}; call scan_host_key first",
                field="known_host_key",
            )
        self.connect_timeout = connect_timeout
        # The master exits by itself after this long without sessions: a crashed deploy
        # leaves no connection behind for long.
        self.idle_timeout = idle_timeout
        self._dir: str | None = None

    @property
    def host(self) -> str:
        return self.spec.name

    @property
    def is_open(self) -> bool:
        return self._dir is not None

    @property
    def private_dir(self) -> str | None:
        """The 0700 directory holding the key, known_hosts and control socket while open."""
        return self._dir

    async def open(self) -> None:
        """Connect and authenticate (one handshake). Raises RemoteError(stage="connect")."""
        if self._dir is not None:
            return
        self._dir = _private_dir()
        try:
            self._write_files(self._dir)
            await self._start_master(self._dir)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            raise

    async def close(self) -> None:
        """Close the connection and delete the private key and every temp file. Idempotent."""
        if self._dir is None:
            return
        directory, self._dir = self._dir, None
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._ssh_argv(directory, "-O", "exit", ALIAS),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                async with asyncio.timeout(KILL_TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                await _kill(proc)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def __aenter__(self) -> SSHConnection:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.close())

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float,
        on_line: OnLine | None = None,
        stage: str = "run",
        check: bool = True,
        capture: bool = False,
    ) -> CommandResult:
        """Run ``argv`` on the host, passing each output line to ``on_line`` as it arrives.

        Lines keep their order within each stream. After ``timeout`` seconds the command's
        whole process group is killed and the result has ``timed_out=True``; cancelling the
        calling task kills it too. With ``check`` (the default) a non-zero exit or a timeout
        raises RemoteError carrying ``result``; a lost connection always raises.
        """
        directory = self._require_open()
        marker = "shipyard-pid-" + secrets.token_hex(8)
        command = remote_command(argv, env=env, cwd=cwd, pid_marker=marker)
        output = _Output(on_line, marker=marker, capture=capture)
        result = await self._execute(
            directory,
            self._ssh_argv(directory, ALIAS, command),
            output,
            command=shlex.join(argv),
            timeout=timeout,
        )
        if result.exit_code == 255 and (
            output.remote_pid is None or not await self._master_alive(directory)
        ):
            # ssh's own failure code: the shell never started, or the master died under it.
            raise _error(
                f"lost the connection to {self.host} ({_last_line(result.output_tail)})",
                self.spec,
                stage,
                result,
                reason="connection_lost",
            )
        return self._checked(result, stage, check)

    async def push_dir(
        self,
        local_dir: str | os.PathLike[str],
        remote_dir: str,
        *,
        link_dest: str | None = None,
        excludes: Sequence[str] = (),
        timeout: float,
        on_line: OnLine | None = None,
        stage: str = "transfer",
    ) -> CommandResult:
        """Make ``remote_dir`` an exact copy of the contents of ``local_dir`` (rsync).

        Files whose content and permissions equal those in ``link_dest`` (the host's previous
        release) are hard-linked from it: neither sent nor stored twice. Contents are compared
        by checksum and modification times are not kept, so a rebuild that only touched
        mtimes (``git archive`` stamps the commit time) still links. Files are replaced by
        rename, never written in place, so hard-linked older releases are never modified.
        Raises RemoteError on failure or timeout.
        """
        directory = self._require_open()
        source = os.path.abspath(local_dir)
        if not os.path.isdir(source):
            raise InvalidInput(f"not a directory: {source}", field="local_dir")
        argv = [
            "rsync",
            "--recursive",
            "--links",
            "--perms",
            "--checksum",
            "--delete",
            "--stats",
            "-s",  # remote paths travel inside the rsync protocol, not on a shell line
            # Only paths we generated go into --rsh: rsync splits that string itself.
            f"--rsh=ssh -F {shlex.quote(os.path.join(directory, 'config'))}",
        ]
        argv += [f"--exclude={pattern}" for pattern in excludes]
        if link_dest is not None:
            argv.append(f"--link-dest={_absolute(link_dest, 'link_dest')}")
        argv += [source.rstrip("/") + "/", f"{ALIAS}:{_absolute(remote_dir, 'remote_dir')}/"]
        output = _Output(on_line)
        result = await self._execute(
            directory, argv, output, command=shlex.join(argv), timeout=timeout
        )
        return self._checked(result, stage, check=True)

    # -- internals -------------------------------------------------------------------------

    def _require_open(self) -> str:
        if self._dir is None:
            raise RuntimeError(f"the connection to {self.host} is not open")
        return self._dir

    def _write_files(self, directory: str) -> None:
        key = self.spec.private_key
        _write_private(os.path.join(directory, "id"), key if key.endswith("\n") else key + "\n")
        known = _host_key_line(self.spec.known_host_key or "")
        _write_private(os.path.join(directory, "known_hosts"), f"{ALIAS} {known}\n")
        _write_private(os.path.join(directory, "config"), self._config(directory))

    def _config(self, directory: str) -> str:
        options = {
            "HostName": self.spec.address.strip("[]"),
            "Port": str(self.spec.port),
            "User": self.spec.user,
            "IdentityFile": os.path.join(directory, "id"),
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "UserKnownHostsFile": os.path.join(directory, "known_hosts"),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            # The recorded key is filed under the alias, whatever the address looks like.
            "HostKeyAlias": ALIAS,
            "CheckHostIP": "no",
            "UpdateHostKeys": "no",
            "BatchMode": "yes",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "ConnectTimeout": str(max(1, round(self.connect_timeout))),
            "ServerAliveInterval": "15",
            "ServerAliveCountMax": "3",
            "ControlPath": os.path.join(directory, "cm"),
            "ControlMaster": "no",
            # Sessions must ride on the master; without it they fail instead of dialing.
            "ProxyCommand": "false",
            "LogLevel": "ERROR",
        }
        body = "".join(f"  {name} {value}\n" for name, value in options.items())
        return f"Host {ALIAS}\n{body}"

    async def _master_alive(self, directory: str) -> bool:
        proc = await asyncio.create_subprocess_exec(
            *self._ssh_argv(directory, "-O", "check", ALIAS),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(KILL_TIMEOUT):
                return await proc.wait() == 0
        except TimeoutError:
            await _kill(proc)
            return False

    def _ssh_argv(self, directory: str, *args: str) -> list[str]:
        return ["ssh", "-F", os.path.join(directory, "config"), *args]

    async def _start_master(self, directory: str) -> None:
        log_path = os.path.join(directory, "master.log")
        argv = self._ssh_argv(
            directory,
            "-f",
            "-N",
            "-o",
            "ControlMaster=yes",
            "-o",
            "ProxyCommand=none",
            "-o",
            f"ControlPersist={self.idle_timeout}",
            ALIAS,
        )
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        try:
            async with asyncio.timeout(self.connect_timeout + 5):
                code = await proc.wait()
        except TimeoutError:
            await _kill(proc)
            raise RemoteError(
                f"connecting to {self.host} ({self.spec.address}:{self.spec.port}) timed out",
                host=self.host,
                stage="connect",
                reason="timeout",
            ) from None
        except BaseException:
            await _kill(proc)
            raise
        if code != 0:
            with open(log_path, errors="replace") as log:
                raise _connect_error(self.spec, log.read())

    async def _execute(
        self, directory: str, argv: list[str], output: _Output, *, command: str, timeout: float
    ) -> CommandResult:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        timed_out = False
        exit_code: int | None = None
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(
                    output.pump(proc.stdout, "stdout"), output.pump(proc.stderr, "stderr")
                )
                exit_code = await proc.wait()
        except TimeoutError:
            timed_out = True
            await self._abort(directory, proc, output.remote_pid)
        except BaseException:
            # Cancelled, or on_line raised: the remote command must not outlive us.
            await asyncio.shield(self._abort(directory, proc, output.remote_pid))
            raise
        return CommandResult(
            host=self.host,
            command=command,
            exit_code=exit_code,
            duration=time.monotonic() - started,
            output_tail=output.tail(),
            timed_out=timed_out,
            stdout=output.captured(),
        )

    async def _abort(
        self, directory: str, proc: asyncio.subprocess.Process, remote_pid: int | None
    ) -> None:
        """Kill the remote process group (TERM, then KILL), then the local ssh client."""
        if remote_pid is not None:
            # A fixed script; the pid is an int we parsed, passed as an argument.
            script = (
                'kill -TERM "-$1" 2>/dev/null || exit 0; i=0; '
                'while [ $i -lt 20 ] && kill -0 "-$1" 2>/dev/null; do sleep 0.1; i=$((i+1)); '
                'done; kill -KILL "-$1" 2>/dev/null; exit 0'
            )
            killer = await asyncio.create_subprocess_exec(
                *self._ssh_argv(
                    directory, ALIAS, remote_command(["sh", "-c", script, "sh", str(remote_pid)])
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                async with asyncio.timeout(KILL_TIMEOUT):
                    await killer.wait()
            except TimeoutError:
                await _kill(killer)
        await _kill(proc)

    def _checked(self, result: CommandResult, stage: str, check: bool) -> CommandResult:
        if not check or result.ok:
            return result
        if result.timed_out:
            message = f"{stage} on {self.host} timed out after {result.duration:.0f}s"
            raise _error(message, self.spec, stage, result, reason="timeout")
        message = f"{stage} on {self.host} failed with exit code {result.exit_code}"
        tail = _summary(result.output_tail)
        if tail:
            message = f"{message}: {tail}"
        raise _error(message, self.spec, stage, result, reason="exit_code")


@contextlib.asynccontextmanager
async def connect(spec: HostSpec, timeout: float = 10.0) -> AsyncIterator[SSHConnection]:
    """``async with connect(spec) as conn:`` an open SSHConnection, closed on exit."""
    conn = SSHConnection(spec, connect_timeout=timeout)
    async with conn:
        yield conn


class _Output:
    """Splits a process's output into lines, streams them, and keeps a bounded tail."""

    def __init__(
        self, on_line: OnLine | None, *, marker: str | None = None, capture: bool = False
    ) -> None:
        self.on_line = on_line
        self.marker = marker
        self.remote_pid: int | None = None
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._capture: list[str] | None = [] if capture else None
        self._captured_size = 0

    async def pump(self, reader: asyncio.StreamReader, stream: Stream) -> None:
        buffer = b""
        while chunk := await reader.read(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._line(stream, line)
            while len(buffer) > MAX_LINE:
                self._line(stream, buffer[:MAX_LINE])
                buffer = buffer[MAX_LINE:]
        if buffer:
            self._line(stream, buffer)

    def _line(self, stream: Stream, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        if self.marker and self.remote_pid is None and stream == "stderr":
            fields = text.split()
            if len(fields) == 2 and fields[0] == self.marker and fields[1].isdigit():
                self.remote_pid = int(fields[1])
                return
        self._tail.append(text)
        if self._capture is not None and stream == "stdout" and self._captured_size < MAX_CAPTURE:
            self._capture.append(text)
            self._captured_size += len(raw) + 1
        if self.on_line is not None:
            self.on_line(stream, text)

    def tail(self) -> str:
        return "\n".join(self._tail)

    def captured(self) -> str:
        return "".join(line + "\n" for line in self._capture or ())


def _private_dir() -> str:
    # tmpfs keeps the private key off disk where there is one; mkdtemp makes it 0700.
    base = _SHM if os.access(_SHM, os.W_OK | os.X_OK) else None
    return tempfile.mkdtemp(prefix="shipyard-ssh-", dir=base)  # mode 0700


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _check_address(address: str, port: int) -> None:
    if not _ADDRESS_RE.fullmatch(address) or address.startswith("-"):
        raise InvalidInput(f"not a host name or IP address: {address!r}", field="host")
    if not 1 <= port <= 65535:
        raise InvalidInput(f"not a TCP port: {port}", field="port")


def _host_key_line(key: str) -> str:
    """ "type base64" from a recorded key (a trailing comment is dropped)."""
    line = " ".join(key.split()[:2])
    if not _KEY_RE.fullmatch(line):
        raise InvalidInput("not an SSH public key ('type base64')", field="known_host_key")
    return line


def _absolute(path: str, name: str) -> str:
    if (
        not path.startswith("/")
        or any(c in path for c in "\0\n\r")
        or posixpath.normpath(path) != path.rstrip("/")
        or path == "/"
    ):
        raise InvalidInput(f"{name} must be a normalized absolute path: {path!r}", field=name)
    return path.rstrip("/")


def _connect_error(spec: HostSpec, log: str) -> RemoteError:
    where = f"{spec.name} ({spec.address}:{spec.port})"
    checks = [
        (
            ("IDENTIFICATION HAS CHANGED", "Host key verification failed", "host key is known"),
            "host_key_mismatch",
            f"the host key of {where} does not match the recorded key; refusing to connect "
            "(if the server was reinstalled, record its new key)",
        ),
        (
            ("Permission denied",),
            "auth_failed",
            f"{where} refused the SSH key for user {spec.user}",
        ),
        (("Connection refused",), "connection_refused", f"{where} refused the connection"),
        (("timed out",), "timeout", f"connecting to {where} timed out"),
        (
            ("No route to host", "Network is unreachable", "Could not resolve"),
            "unreachable",
            f"{where} is unreachable",
        ),
    ]
    for needles, reason, message in checks:
        if any(needle in log for needle in needles):
            return RemoteError(
                message, host=spec.name, stage="connect", reason=reason, output=log.strip()[-2000:]
            )
    return RemoteError(
        f"could not connect to {where}: {_last_line(log) or 'ssh failed'}",
        host=spec.name,
        stage="connect",
        reason="connect_failed",
        output=log.strip()[-2000:],
    )


def _error(
    message: str, spec: HostSpec, stage: str, result: CommandResult, *, reason: str
) -> RemoteError:
    error = RemoteError(
        message,
        host=spec.name,
        stage=stage,
        reason=reason,
        exit_code=result.exit_code,
        output=result.output_tail,
        timed_out=result.timed_out or None,
    )
    error.result = result  # type: ignore[attr-defined]
    return error


def _summary(output: str) -> str:
    """The line that best explains a failure: rsync's own complaint, else the last line."""
    for line in output.splitlines():
        if line.startswith("rsync: "):
            return line.strip()
    return _last_line(output)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


async def _kill(proc: asyncio.subprocess.Process, grace: float = KILL_TIMEOUT) -> None:
    """Kill a local process and wait (bounded) for it to exit.

    Not ``proc.wait()``: that also waits for the output pipes to close, and an ssh client
    hands its pipes to the master, which holds them until the remote session ends.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    deadline = time.monotonic() + grace
    while proc.returncode is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
