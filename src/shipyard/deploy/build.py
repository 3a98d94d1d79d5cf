"""Building a release artifact once per (commit, build config), on the build host.

A build is: ``git archive`` of the pinned commit into a fresh workspace, the project's
``prev_deploy`` hook and then its ``post_deploy`` hook run there, excludes and includes
applied, and the workspace published atomically (a rename) as ``<root>/builds/<key>``. The
key hashes everything that shapes the result (:func:`build_key`), so deploying the same
commit to the next environment reuses the artifact without running any hook again.

Order of hooks. walle ran ``prev_deploy`` before its checkout because it checked out in
place; here the workspace is always fresh, so both hooks run after the archive, on the
commit's files: ``prev_deploy`` to prepare (write config, fetch private dependencies),
``post_deploy`` to build (``npm ci && npm run build``). Each hook runs as
``sh -e -c HOOK`` (stop at the first failing command, like walle's lines joined by ``&&``),
with stdin closed, in its own process group, with variables in its environment only.

What a hook must not rely on: the workspace path (the build is renamed when published and
shipped to ``<releases>/<release-id>/`` on each server) or task-specific variables such as
``TASK_ID`` or ``ENV_NAME`` (they describe the task that happened to build it; a cached
artifact serves later tasks and other environments). Environment-specific steps belong in
the target's ``prev_release``/``post_release`` hooks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shipyard.deploy.git import Mirror, file_lock
from shipyard.errors import BuildError, InvalidInput

__all__ = [
    "HOOKS",
    "BuildCache",
    "BuildResult",
    "BuildSpec",
    "HookResult",
    "OnLine",
    "Stream",
    "build_key",
    "default_hook_env",
    "filter_tree",
    "validate_build_spec",
    "validate_patterns",
]

Stream = Literal["stdout", "stderr"]
#: Called with each line of hook output as it arrives, without its line ending.
OnLine = Callable[[Stream, str], None]

#: Build hooks, in the order they run.
HOOKS = ("prev_deploy", "post_deploy")

DEFAULT_TIMEOUT = 3600.0
TAIL_LINES = 100  # lines of output kept for errors and results
MAX_LINE_BYTES = 64 * 1024  # a longer "line" (a progress bar without newlines) is cut
_CHUNK = 64 * 1024
_POLL = 0.2  # how often to look whether a hook exited while its children hold its output
_ORPHAN_GRACE = 2.0  # how long to read on after a hook exited and its group was killed
_KEY_RE = re.compile(r"[0-9a-f]{32}")
_FULL_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Passed from the server's environment to hooks; everything else (database URLs, the secret
# key) stays out of reach of project code.
_PASSED_THROUGH = (
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
)  # fmt: skip


@dataclass(frozen=True)
class BuildSpec:
    """Everything that determines a build's result: the commit and the build config."""

    project_name: str
    sha: str  # the full commit id pinned when the task was created
    prev_deploy: str | None = None
    post_deploy: str | None = None
    excludes: list[str] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HookResult:
    """How one hook ran: exit code, seconds taken and the last lines of its output."""

    name: str
    exit_code: int
    duration: float
    output_tail: str


@dataclass(frozen=True)
class BuildResult:
    """A finished build: where it is, whether it came from the cache, and its hooks' results."""

    key: str
    path: Path
    cached: bool
    duration: float
    hooks: tuple[HookResult, ...] = ()


def validate_build_spec(spec: BuildSpec) -> BuildSpec:
    """Return ``spec`` if it can be built, else raise :class:`InvalidInput` naming the field."""
    if not spec.project_name:
        raise InvalidInput("project_name must not be empty", field="project_name")
    if not _FULL_SHA_RE.fullmatch(spec.sha):
        raise InvalidInput("sha must be a full lowercase commit id", field="sha")
    for name in HOOKS:
        hook = getattr(spec, name)
        if hook is not None and (not isinstance(hook, str) or "\x00" in hook):
            raise InvalidInput(f"{name} must be text", field=name)
    validate_patterns(spec.excludes, field="excludes")
    validate_patterns(spec.includes, field="includes")
    _validate_variables(spec.variables, field="variables")
    return spec


def build_key(spec: BuildSpec) -> str:
    """The cache key of ``spec``: 32 hex digits of a SHA-256 over commit and build config.

    Equal for specs that must produce the same artifact; different when the project, the
    commit, a hook, a pattern or a variable differs. Hooks that are empty or only whitespace
    count as absent. Task variables are deliberately not part of it (see the module doc).
    """
    payload = {
        "v": 1,
        "project": spec.project_name,
        "sha": spec.sha,
        "hooks": [_hook_text(getattr(spec, name)) for name in HOOKS],
        "excludes": list(spec.excludes),
        "includes": list(spec.includes),
        "variables": dict(sorted(spec.variables.items())),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def default_hook_env() -> dict[str, str]:
    """The base environment of hooks: PATH, HOME, locale and proxy settings of the server."""
    env = {k: os.environ[k] for k in _PASSED_THROUGH if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    return env


class BuildCache:
    """Builds under ``root`` (``builds/<key>`` published, ``work/`` in progress, ``locks/``).

    Safe to share between threads and processes: one build per key at a time (a per-key
    ``flock``), and a published build appears by an atomic rename, complete or not at all.
    """

    def __init__(self, root: Path, *, base_env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.builds_dir = self.root / "builds"
        self.work_dir = self.root / "work"
        self.locks_dir = self.root / "locks"
        self.base_env = dict(default_hook_env() if base_env is None else base_env)

    def get(self, key: str) -> Path | None:
        """The published build for ``key``, marked as recently used, or None."""
        path = self._build_path(key)
        if not path.is_dir():
            return None
        with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
            os.utime(path)
            return path
        return None

    @contextlib.contextmanager
    def hold(self, key: str, *, timeout: float = 60.0) -> Iterator[Path | None]:
        """Keep :meth:`prune` away from ``key``'s build while the block runs (a transfer).

        Yields the build's path, or None if there is none. Do not call :meth:`build` for
        the same key inside the block.
        """
        with file_lock(self._lock_path(key), timeout=timeout, shared=True):
            path = self._build_path(key)
            yield path if path.is_dir() else None

    def build(
        self,
        spec: BuildSpec,
        mirror: Mirror,
        *,
        task_vars: Mapping[str, str] | None = None,
        on_line: OnLine | None = None,
        on_hook: Callable[[str], None] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> BuildResult:
        """Return the build for ``spec``, building it from ``mirror`` unless already cached.

        Hooks get ``default_hook_env()`` (or ``base_env``), then ``spec.variables``, then
        ``task_vars`` (built-ins such as TASK_ID, BRANCH, ENV_NAME), then ``WORKSPACE``,
        ``COMMIT_ID`` and ``PROJECT_NAME``, so built-ins cannot be overridden by user
        variables. ``on_hook(name)`` is called as each hook starts and ``on_line`` with each
        output line, in the calling thread. ``timeout`` covers waiting for a concurrent
        build of the same key, the archive and the hooks together; when it runs out the
        running hook's whole process group is killed. Raises :class:`BuildError` (with
        ``hook``, ``exit_code``, ``output`` in its details) when a hook fails or times out;
        the workspace is then removed. An exception raised by a callback aborts the build
        the same way. The mirror must already be fetched.
        """
        validate_build_spec(spec)
        env = self._hook_env(spec, task_vars or {})
        started = time.monotonic()
        deadline = started + timeout
        key = build_key(spec)
        cached = self.get(key)
        if cached is not None:
            return BuildResult(key, cached, True, time.monotonic() - started)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(file_lock(self._lock_path(key), timeout=timeout))
            except TimeoutError as exc:
                raise BuildError(
                    f"timed out waiting for another build of {spec.sha[:12]}", key=key
                ) from exc
            cached = self.get(key)  # the build we waited for
            if cached is not None:
                return BuildResult(key, cached, True, time.monotonic() - started)
            path, hooks = self._build_locked(key, spec, mirror, env, on_line, on_hook, deadline)
        return BuildResult(key, path, False, time.monotonic() - started, hooks)

    def prune(self, keep: int) -> list[str]:
        """Remove all but the ``keep`` most recently used builds; return the removed keys.

        Builds in use (being built, or inside :meth:`hold`) are skipped, and so are the
        leftovers in ``work/`` of builds that are still running; leftovers of crashed builds
        are removed.
        """
        if keep < 0:
            raise InvalidInput("keep must not be negative", field="keep")
        removed: list[str] = []
        builds = [p for p in self._listdir(self.builds_dir) if _KEY_RE.fullmatch(p.name)]
        builds.sort(key=_mtime, reverse=True)
        for path in builds[keep:]:
            key = path.name
            with contextlib.suppress(TimeoutError), file_lock(self._lock_path(key), timeout=0):
                # Unpublish by rename first, so nobody finds a half-deleted build.
                trash = self.work_dir / f"{key}-trash-{secrets.token_hex(4)}"
                self.work_dir.mkdir(parents=True, exist_ok=True)
                os.rename(path, trash)
                _rmtree(trash)
                removed.append(key)
        for leftover in self._listdir(self.work_dir):
            key = leftover.name[:32]
            if _KEY_RE.fullmatch(key):
                with contextlib.suppress(TimeoutError), file_lock(self._lock_path(key), timeout=0):
                    _rmtree(leftover)
        return removed

    # -- building ---------------------------------------------------------------------

    def _build_locked(
        self,
        key: str,
        spec: BuildSpec,
        mirror: Mirror,
        env: dict[str, str],
        on_line: OnLine | None,
        on_hook: Callable[[str], None] | None,
        deadline: float,
    ) -> tuple[Path, tuple[HookResult, ...]]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        workspace = self.work_dir / f"{key}-{secrets.token_hex(4)}"
        # 0755, not mkdtemp's 0700: the directory's mode travels with the release to servers.
        workspace.mkdir(mode=0o755)
        try:
            mirror.archive(spec.sha, workspace, timeout=_remaining(deadline))
            env["WORKSPACE"] = str(workspace)
            results = []
            for name in HOOKS:
                script = _hook_text(getattr(spec, name))
                if script:
                    if on_hook is not None:
                        on_hook(name)
                    results.append(_run_hook(name, script, workspace, env, on_line, deadline))
            filter_tree(workspace, excludes=spec.excludes, includes=spec.includes)
            path = self._build_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.rename(workspace, path)  # under the key lock, so nothing is there yet
        except BaseException:
            _rmtree(workspace)
            raise
        return path, tuple(results)

    def _hook_env(self, spec: BuildSpec, task_vars: Mapping[str, str]) -> dict[str, str]:
        _validate_variables(task_vars, field="task_vars")
        env = {**self.base_env, **spec.variables, **task_vars}
        env["COMMIT_ID"] = spec.sha
        env["PROJECT_NAME"] = spec.project_name
        return env

    def _build_path(self, key: str) -> Path:
        if not _KEY_RE.fullmatch(key):
            raise InvalidInput(f"not a build key: {key!r}", field="key")
        return self.builds_dir / key

    def _lock_path(self, key: str) -> Path:
        # Lock files are never deleted: removing one while another task waits on it would
        # let two tasks hold "the" lock at once.
        return self.locks_dir / f"{self._build_path(key).name}.lock"

    @staticmethod
    def _listdir(path: Path) -> list[Path]:
        try:
            return list(path.iterdir())
        except FileNotFoundError:
            return []


# -- running one hook -----------------------------------------------------------------


def _run_hook(
    name: str,
    script: str,
    cwd: Path,
    env: Mapping[str, str],
    on_line: OnLine | None,
    deadline: float,
) -> HookResult:
    """Run ``script`` with ``sh -e -c``, streaming its output; raise BuildError on failure."""
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    def emit(stream: Stream, line: str) -> None:
        tail.append(line)
        if on_line is not None:
            on_line(stream, line)

    proc = subprocess.Popen(
        ["sh", "-e", "-c", script],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so a timeout kills its children too
    )
    timed_out = False
    try:
        with _OutputPump(proc, emit) as pump:
            timed_out = not _pump_until_exit(proc, pump, deadline)
            # The hook is done (or out of time): whatever it left running goes with it.
            _kill_group(proc)
            pump.drain(until=time.monotonic() + _ORPHAN_GRACE)
    finally:
        _kill_group(proc)
        exit_code = proc.wait()
    output = "\n".join(tail)
    duration = time.monotonic() - started
    if timed_out:
        raise BuildError(
            f"{name} timed out after {duration:.0f}s and was killed",
            hook=name, exit_code=None, timed_out=True, output=output,
        )  # fmt: skip
    if exit_code != 0:
        how = f"was killed by signal {-exit_code}" if exit_code < 0 else f"exited {exit_code}"
        raise BuildError(f"{name} {how}", hook=name, exit_code=exit_code, output=output)
    return HookResult(name, exit_code, duration, output)


def _pump_until_exit(proc: subprocess.Popen[bytes], pump: _OutputPump, deadline: float) -> bool:
    """Stream output until the hook exits; False if the deadline came first."""
    while True:
        now = time.monotonic()
        if now >= deadline:
            return False
        if _has_exited(proc):
            return True
        if pump.open:
            pump.pump(timeout=min(deadline - now, _POLL))
        else:  # it closed its output but runs on
            time.sleep(min(deadline - now, 0.05))


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    # WNOWAIT leaves the process unreaped, so its pid (our process group id) cannot be
    # reused before _kill_group has run.
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


class _OutputPump:
    """Reads a process's stdout and stderr as data arrives and emits whole lines.

    One thread and a selector: neither pipe can fill up and block the process, and each
    stream's lines are emitted in order, as soon as they are complete.
    """

    def __init__(self, proc: subprocess.Popen[bytes], emit: Callable[[Stream, str], None]):
        self._emit = emit
        self._selector = selectors.DefaultSelector()
        self._pipes = [pipe for pipe in (proc.stdout, proc.stderr) if pipe is not None]
        for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            self._selector.register(pipe, selectors.EVENT_READ, [stream, bytearray()])

    def __enter__(self) -> _OutputPump:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._selector.close()
        for pipe in self._pipes:
            pipe.close()

    @property
    def open(self) -> bool:
        return bool(self._selector.get_map())

    def pump(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            stream, pending = key.data
            try:
                data = os.read(key.fd, _CHUNK)
            except BlockingIOError:
                continue
            if not data:
                self._selector.unregister(key.fd)
                if pending:
                    self._emit(stream, _decode(pending))
                continue
            pending += data
            *lines, rest = pending.split(b"\n")
            for line in lines:
                self._emit(stream, _decode(line))
            pending[:] = rest
            if len(pending) > MAX_LINE_BYTES:
                self._emit(stream, _decode(pending))
                pending.clear()

    def drain(self, until: float) -> None:
        """Read what is left, giving up at ``until`` (a child that escaped the group)."""
        while self.open and (now := time.monotonic()) < until:
            self.pump(timeout=until - now)


def _decode(line: bytes | bytearray) -> str:
    return bytes(line).decode("utf-8", "replace").removesuffix("\r")


# -- excludes and includes ------------------------------------------------------------


def validate_patterns(patterns: Sequence[str], *, field: str) -> list[str]:
    """Return ``patterns`` as a list if every one is a safe workspace pattern, else raise.

    Patterns are relative to the workspace root: no leading ``/``, no ``.`` or ``..``
    parts, no empty parts, no control characters.
    """
    if isinstance(patterns, str):
        raise InvalidInput(f"{field} must be a list of patterns", field=field)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise InvalidInput(f"{field} must not contain empty patterns", field=field)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in pattern):
            raise InvalidInput(f"{field}: {pattern!r} contains control characters", field=field)
        if pattern.startswith("/"):
            raise InvalidInput(
                f"{field}: {pattern!r} must be relative to the workspace (no leading '/')",
                field=field,
            )
        parts = pattern.rstrip("/").split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise InvalidInput(
                f"{field}: {pattern!r} must not contain '.', '..' or empty parts", field=field
            )
    return list(patterns)


def filter_tree(root: Path, *, excludes: Sequence[str] = (), includes: Sequence[str] = ()) -> None:
    """Delete from the tree at ``root`` what ``excludes`` match and, if ``includes`` is not
    empty, everything that ``includes`` does not match.

    Pattern syntax is rsync's and .gitignore's: a pattern without ``/`` matches a name at
    any depth (``node_modules``, ``*.log``); one with ``/`` matches the path from the root
    (``storage/logs/*``, ``docs/**/*.pdf``); a trailing ``/`` matches directories only
    (``docs/``); ``*`` and ``?`` stay within one path part, ``**`` crosses parts. A matched
    directory is matched with everything in it. Excludes win over includes; directories
    holding included entries are kept. Only entries found by listing ``root`` are ever
    removed, and symbolic links are removed, never followed, so nothing outside the tree
    can be touched whatever the patterns say.
    """
    exclude = [_Pattern.compile(p) for p in validate_patterns(excludes, field="excludes")]
    include = [_Pattern.compile(p) for p in validate_patterns(includes, field="includes")]
    _filter_dir(root, "", exclude, include, included=not include)


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    anchored: bool  # matched against the path from the root, else against the name
    dir_only: bool

    @classmethod
    def compile(cls, pattern: str) -> _Pattern:
        body = pattern.rstrip("/")
        return cls(_glob_regex(body), "/" in body, pattern.endswith("/"))

    def matches(self, path: str, name: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        return self.regex.fullmatch(path if self.anchored else name) is not None


def _glob_regex(glob: str) -> re.Pattern[str]:
    out, i, n = [], 0, len(glob)
    while i < n:
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := _class_end(glob, i)) > 0:
            content = glob[i + 1 : end]
            negate = content[:1] in ("!", "^")
            content = re.sub(r"([\\\[\]^&~|])", r"\\\1", content[1:] if negate else content)
            out.append(f"[^/{content}]" if negate else f"[{content}]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_end(glob: str, start: int) -> int:
    """Index of the ``]`` closing the character class opened at ``start``, or -1."""
    i = start + 1
    if i < len(glob) and glob[i] in "!^":
        i += 1
    if i < len(glob) and glob[i] == "]":
        i += 1  # a leading ] is a literal member
    return glob.find("]", i)


def _filter_dir(
    directory: Path, prefix: str, exclude: list[_Pattern], include: list[_Pattern], included: bool
) -> bool:
    """Filter one directory; return whether anything in it was kept."""
    if included and not exclude:
        return True  # nothing below can be removed
    kept = False
    with os.scandir(directory) as it:
        entries = list(it)
    for entry in entries:
        path = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if any(p.matches(path, entry.name, is_dir) for p in exclude):
            _remove(entry)
            continue
        inside = included or any(p.matches(path, entry.name, is_dir) for p in include)
        if is_dir:
            if _filter_dir(Path(entry.path), path + "/", exclude, include, inside) or inside:
                kept = True
            else:
                os.rmdir(entry.path)  # held nothing that was included
        elif inside:
            kept = True
        else:
            os.unlink(entry.path)
    return kept


def _remove(entry: os.DirEntry[str]) -> None:
    if entry.is_dir(follow_symlinks=False):
        _rmtree(Path(entry.path), strict=True)
    else:
        os.unlink(entry.path)


# -- helpers --------------------------------------------------------------------------


def _hook_text(hook: str | None) -> str:
    return hook if hook and hook.strip() else ""


def _validate_variables(variables: Mapping[str, str], *, field: str) -> None:
    for name, value in variables.items():
        if not isinstance(name, str) or not _VAR_NAME_RE.fullmatch(name):
            raise InvalidInput(
                f"{field}: {name!r} is not a valid variable name (letters, digits, _)",
                field=field,
            )
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidInput(f"{field}: the value of {name} must be text", field=field)


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _rmtree(path: Path, *, strict: bool = False) -> None:
    """Remove ``path`` and everything below it; with ``strict``, raise if anything remains."""

    def make_writable(func: Callable[[str], object], name: str, exc: object) -> None:
        # Builds leave read-only directories behind (Go's module cache does); let the owner
        # remove them anyway.
        try:
            os.chmod(os.path.dirname(name), 0o700)
            func(name)
        except OSError:
            if strict:
                raise

    if path.exists() or path.is_symlink():
        shutil.rmtree(path, onerror=make_writable)
