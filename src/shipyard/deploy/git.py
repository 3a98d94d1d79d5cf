"""A bare mirror of a project's repository on the build host, driven through the git CLI.

One :class:`Mirror` per project. :meth:`Mirror.fetch` brings it up to date under a file lock,
so two tasks (threads) or two workers (processes) never fight over one mirror; the read
methods (branches, tags, commits, resolve, archive) need no lock, because git updates refs
atomically and writes objects before the refs that point at them.

Every git call is an argv list (never a shell), runs with a timeout in its own process group
(so a timeout also kills ``ssh`` or ``git-remote-https`` children), never prompts for
credentials, and may only use the protocols in :data:`REMOTE_PROTOCOLS` (plus ``file`` for
local repositories when allowed). Failures surface as :class:`GitError` carrying the
command, the exit code and the tail of git's stderr. The methods block: from async code,
call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from shipyard.deploy.refs import looks_like_sha, validate_ref, validate_repo_url
from shipyard.errors import GitError, InvalidInput

__all__ = ["REMOTE_PROTOCOLS", "Commit", "Mirror", "Ref", "file_lock"]

#: Protocols git may use for a mirror; ``ext``, ``fd`` and remote helpers are never allowed.
REMOTE_PROTOCOLS = ("https", "http", "ssh", "git")

DEFAULT_TIMEOUT = 600.0  # network operations: clone, fetch, ls-remote
LOCAL_TIMEOUT = 60.0  # reading the mirror
STDERR_TAIL = 2000  # characters of stderr kept in a GitError

# On every call: never run ext:: commands even if a URL slips through, and let an automatic
# gc finish inside the fetch (under our lock) instead of detaching into the background.
_GIT_CONFIG = ("-c", "protocol.ext.allow=never", "-c", "gc.autoDetach=false")
_FIELD_SEP = "\x00"
_LOG_FIELDS = ("%H", "%h", "%an", "%ae", "%aI", "%s")


@dataclass(frozen=True, slots=True)
class Ref:
    """A branch or tag: its short name, the commit it points at, and when that was made.

    For annotated tags ``sha`` is the tagged commit (peeled) and ``date`` the tagging date.
    """

    name: str
    sha: str
    date: datetime | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit as shown in a list: author identity, author date (aware) and subject line."""

    sha: str
    short_sha: str
    author: str
    email: str
    date: datetime
    message: str


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float, shared: bool = False) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created if missing) for the duration of the block.

    flock locks belong to an open file description, so this excludes other threads of this
    process as well as other processes. Raises :class:`TimeoutError` if the lock is not
    obtained within ``timeout`` seconds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # flock has no timeout of its own; poll with a capped back-off instead.
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path} is locked by another task") from None
                time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
                delay = min(delay * 2, 0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class Mirror:
    """A bare mirror of ``url`` at ``path`` (created by the first :meth:`fetch`).

    ``env`` is added to git's environment: ``GIT_SSH_COMMAND`` for a deploy key, or
    ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n`` for an HTTP token. The
    server's own ``GIT_*`` and ``SHIPYARD_*`` variables are not passed on. ``allow_local``
    permits ``file://`` URLs and absolute paths (tests, or repositories on the build host).
    """

    def __init__(
        self,
        path: Path,
        url: str,
        *,
        env: Mapping[str, str] | None = None,
        allow_local: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.url = validate_repo_url(url, allow_local=allow_local)
        self.timeout = timeout
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._env = _git_env(env or {}, allow_local=allow_local)

    def __repr__(self) -> str:
        return f"Mirror({str(self.path)!r})"

    @property
    def exists(self) -> bool:
        """Whether a first fetch has completed (a mirror only appears once complete)."""
        return (self.path / "HEAD").is_file()

    # -- updating ---------------------------------------------------------------------

    def fetch(self, *, timeout: float | None = None) -> None:
        """Bring the mirror up to date with origin: branches, tags and the default branch.

        The first call creates the mirror in a temporary directory and renames it into place,
        so a crash never leaves a half-made mirror behind. Later calls fetch with ``--prune``:
        deleted branches and tags disappear, force-pushed ones move. Waiting for the lock
        counts against ``timeout`` (default: the mirror's timeout).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(file_lock(self.lock_path, timeout=_remaining(deadline)))
            except TimeoutError as exc:
                raise GitError(f"timed out waiting for the lock on mirror {self.path}") from exc
            if self.exists:
                self._update(self.path, deadline)
            else:
                self._create(deadline)

    def _create(self, deadline: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{secrets.token_hex(4)}")
        try:
            # An empty --template keeps sample hooks out; the mirror never runs hooks anyway.
            self._git(["init", "--quiet", "--bare", "--template=", str(tmp)], deadline=deadline)
            info = tmp / "info"
            info.mkdir(exist_ok=True)
            # git archive would honour export-ignore/export-subst from the project's
            # .gitattributes; a deploy ships the commit's tree exactly as it is.
            (info / "attributes").write_text("* -export-ignore -export-subst\n")
            self._update(tmp, deadline)
            try:
                tmp.rename(self.path)
            except OSError as exc:
                raise GitError(f"cannot create the mirror at {self.path}: {exc}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _update(self, repo: Path, deadline: float) -> None:
        # The URL is set on every fetch so that editing a project's repo takes effect.
        self._git(["config", "remote.origin.url", self.url], repo=repo, deadline=deadline)
        self._git(
            [
                "fetch",
                "--quiet",
                "--prune",
                "--no-write-fetch-head",
                "--end-of-options",
                "origin",
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            repo=repo,
            deadline=deadline,
        )
        head = self._remote_head(repo, deadline)
        if head is not None:
            self._git(["symbolic-ref", "HEAD", head], repo=repo, deadline=deadline)

    def _remote_head(self, repo: Path, deadline: float) -> str | None:
        out = self._git(
            ["ls-remote", "--symref", "--end-of-options", "origin", "HEAD"],
            repo=repo,
            deadline=deadline,
        )
        for line in out.splitlines():
            target, _, name = line.partition("\t")
            if name == "HEAD" and target.startswith("ref: refs/heads/"):
                return target.removeprefix("ref: ")
        return None  # an empty repository, or an origin with a detached HEAD

    # -- reading ----------------------------------------------------------------------

    def default_branch(self) -> str:
        """The branch origin's HEAD points at, as of the last fetch (never assumed).

        Raises :class:`GitError` when origin names no default branch or it does not exist.
        """
        self._require_mirror()
        ref = self._git(["symbolic-ref", "--quiet", "HEAD"], check=False).strip()
        name = ref.removeprefix("refs/heads/")
        if not ref.startswith("refs/heads/") or self._rev_parse(ref) is None:
            raise GitError(f"{self.url} has no default branch (is the repository empty?)")
        return name

    def branches(self) -> list[Ref]:
        """All branches, most recently committed first (ties by name)."""
        return self._refs("refs/heads/", "committerdate")

    def tags(self) -> list[Ref]:
        """All tags pointing (possibly through annotated tags) at commits, newest first."""
        return self._refs("refs/tags/", "creatordate")

    def _refs(self, prefix: str, date_field: str) -> list[Ref]:
        self._require_mirror()
        fmt = "%00".join(
            [
                "%(refname)",
                "%(objectname)",
                "%(objecttype)",
                "%(*objectname)",
                "%(*objecttype)",
                f"%({date_field}:iso-strict)",
            ]
        )
        out = self._git(["for-each-ref", f"--format={fmt}", prefix])
        refs = []
        for line in out.splitlines():
            refname, sha, kind, peeled, peeled_kind, date = line.split(_FIELD_SEP)
            if peeled_kind == "commit":
                sha = peeled
            elif peeled_kind == "tag":  # a tag of a tag: rare, let git peel all the way
                sha = self._rev_parse(refname) or ""
            elif kind != "commit":
                continue  # tags of trees or blobs cannot be deployed
            if sha:
                refs.append(Ref(refname.removeprefix(prefix), sha, _parse_date(date)))
        refs.sort(key=lambda r: r.name)
        refs.sort(key=lambda r: r.date or _EPOCH, reverse=True)
        return refs

    def commits(self, ref: str, limit: int = 20) -> list[Commit]:
        """The newest ``limit`` commits reachable from ``ref`` (any form :meth:`resolve` takes).

        Messages are reduced to their subject line; any characters in names or messages
        parse, because fields are NUL-separated and git refuses NUL in commits.
        """
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000", field="limit")
        sha = self.resolve(ref)
        out = self._git(
            [
                "log",
                f"--max-count={limit}",
                "-z",
                "--format=" + "%x00".join(_LOG_FIELDS),
                "--end-of-options",
                sha,
                "--",
            ]
        )
        fields = out.split(_FIELD_SEP) if out else []
        width = len(_LOG_FIELDS)
        commits = []
        for i in range(0, len(fields) - width + 1, width):
            full, short, author, email, date, subject = fields[i : i + width]
            commits.append(
                Commit(full, short, author, email, datetime.fromisoformat(date), subject)
            )
        return commits

    def resolve(self, ref: str) -> str:
        """The full commit id that ``ref`` names in the mirror.

        ``ref`` is tried as a branch, then as a tag (annotated tags are peeled to their
        commit), then as a full ref name (``refs/...``), then as a commit id or unique
        prefix. Raises :class:`InvalidInput` (field ``ref``) when it is malformed or names
        nothing here.
        """
        validate_ref(ref)
        self._require_mirror()
        candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        if ref.startswith("refs/"):
            candidates.append(ref)
        if looks_like_sha(ref):
            candidates.append(ref)
        for candidate in candidates:
            sha = self._rev_parse(candidate)
            if sha is not None:
                return sha
        raise InvalidInput(f"ref {ref!r} is not a branch, tag or commit of {self.url}", field="ref")

    def _rev_parse(self, name: str) -> str | None:
        out = self._git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"],
            check=False,
        )
        sha = out.strip()
        return sha if looks_like_sha(sha) else None

    def archive(self, sha: str, dest_dir: Path, *, timeout: float | None = None) -> None:
        """Write the tree of commit ``sha`` into ``dest_dir`` (created if missing).

        Exactly the commit's files: ``export-ignore``/``export-subst`` attributes are
        ignored, there is no ``.git``, and submodules are not included. git's tar stream is
        piped straight into ``tar -x``, so nothing is buffered in memory or on disk.
        """
        if not looks_like_sha(sha):
            raise InvalidInput(f"archive needs a commit id, got {sha!r}", field="sha")
        self._require_mirror()
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        git_argv = ["git", *_GIT_CONFIG, "-C", str(self.path), "archive", "--format=tar"]
        git_argv += ["--end-of-options", f"{sha}^{{commit}}"]
        tar_argv = ["tar", "-x", "--no-same-owner", "-C", str(dest)]
        with tempfile.TemporaryFile() as git_err, tempfile.TemporaryFile() as tar_err:
            git = subprocess.Popen(
                git_argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=git_err,
                env=self._env,
                start_new_session=True,
            )
            try:
                tar = subprocess.Popen(tar_argv, stdin=git.stdout, stderr=tar_err)
            finally:
                assert git.stdout is not None
                git.stdout.close()  # tar holds the read end now; git sees EPIPE if tar dies
            try:
                tar.wait(timeout=_remaining(deadline))
                git.wait(timeout=_remaining(deadline))
            except subprocess.TimeoutExpired as exc:
                _kill_group(git)
                tar.kill()
                tar.wait()
                raise GitError(
                    f"git archive {sha} timed out", command=git_argv, timeout=exc.timeout
                ) from exc
            if git.returncode != 0:
                raise GitError(
                    f"git archive {sha} failed: {_tail(git_err)}",
                    command=git_argv,
                    exit_code=git.returncode,
                )
            if tar.returncode != 0:
                raise GitError(
                    f"extracting {sha} into {dest} failed: {_tail(tar_err)}",
                    command=tar_argv,
                    exit_code=tar.returncode,
                )

    # -- plumbing ---------------------------------------------------------------------

    def _require_mirror(self) -> None:
        if not self.exists:
            raise GitError(f"the mirror of {self.url} has not been fetched yet")

    def _git(
        self,
        args: Sequence[str],
        *,
        repo: Path | None = None,
        deadline: float | None = None,
        check: bool = True,
    ) -> str:
        """Run one git command in ``repo`` (default: the mirror) and return its stdout."""
        argv = ["git", *_GIT_CONFIG]
        if args[0] != "init":
            argv += ["-C", str(repo or self.path)]
        argv += args
        timeout = LOCAL_TIMEOUT if deadline is None else _remaining(deadline)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
            start_new_session=True,  # so a timeout can kill ssh/remote helpers too
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            proc.communicate()
            raise GitError(
                f"git {args[0]} timed out after {timeout:.0f}s", command=argv, timeout=timeout
            ) from exc
        if check and proc.returncode != 0:
            stderr = err.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
            raise GitError(
                f"git {args[0]} failed (exit {proc.returncode}): {stderr}",
                command=argv,
                exit_code=proc.returncode,
            )
        return out.decode("utf-8", "replace")


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def _git_env(extra: Mapping[str, str], *, allow_local: bool) -> dict[str, str]:
    # The server's GIT_* variables could point git at another repository (GIT_DIR,
    # GIT_INDEX_FILE...) and SHIPYARD_* hold our own secrets: neither is passed on.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SHIPYARD_"))}
    protocols = [*REMOTE_PROTOCOLS, "file"] if allow_local else list(REMOTE_PROTOCOLS)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",  # fail instead of asking for a password
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            "GIT_ALLOW_PROTOCOL": ":".join(protocols),
            "LC_ALL": "C",  # stable error messages
        }
    )
    env.update(extra)
    env["GIT_TERMINAL_PROMPT"] = "0"  # not even a caller's env may turn prompting back on
    return env


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode("utf-8", "replace").strip()[-STDERR_TAIL:]


def _parse_date(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
