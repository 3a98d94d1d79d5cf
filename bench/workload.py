"""The synthetic project the benchmark deploys, and checks that a host received it intact.

A git repository of N files of varied sizes (a log-normal spread: many small files, a
few of a megabyte or more) under nested directories, filled with seeded random bytes.
Random bytes are incompressible, which is honest: neither Shipyard nor the baseline asks
rsync or ssh to compress. An incremental change rewrites one file (``CHANGED_FILE``).
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHANGED_FILE = "static/js/app.bundle.js"  # the one file each incremental commit rewrites
_CHANGED_SIZE = 96 * 1024
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}  # fmt: skip
GIT_TIMEOUT = 120


@dataclass(frozen=True)
class Manifest:
    """What a release must contain: every file's size, and the changed file's digest."""

    sizes: dict[str, int]
    changed_sha256: str

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=GIT_TIMEOUT,
    )
    return done.stdout.strip()


def make_repo(path: Path, *, files: int, total_bytes: int, seed: int = 1) -> str:
    """Create the repository with one commit on ``main``; return the commit id."""
    rng = random.Random(seed)
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    dirs = _directories(rng, max(4, files // 25))
    weights = [rng.lognormvariate(8.0, 1.6) for _ in range(files - 1)]
    budget = total_bytes - _CHANGED_SIZE
    sizes = [max(1, int(w / sum(weights) * budget)) for w in weights]
    sizes[sizes.index(max(sizes))] += budget - sum(sizes)
    for i, size in enumerate(sizes):
        folder = rng.choice(dirs)
        name = f"{folder}/f{i:05d}{rng.choice(('.js', '.css', '.png', '.php', '.html', ''))}"
        _write(path / name.lstrip("/"), rng.randbytes(size))
    _write(path / CHANGED_FILE, rng.randbytes(_CHANGED_SIZE))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "synthetic project")
    return git(path, "rev-parse", "HEAD")


def commit_one_change(path: Path, label: str) -> str:
    """Rewrite ``CHANGED_FILE`` (same size, new bytes) and commit; return the commit id."""
    data = hashlib.shake_256(label.encode()).digest(_CHANGED_SIZE)
    _write(path / CHANGED_FILE, data)
    git(path, "commit", "-q", "-am", f"change {label}")
    return git(path, "rev-parse", "HEAD")


def export(repo: Path, sha: str, dest: Path) -> None:
    """``git archive SHA | tar -x`` into ``dest``, the way Shipyard's build does it."""
    dest.mkdir(parents=True)
    dest.chmod(0o755)  # the directory's mode travels with the release, as Shipyard's does
    archive = subprocess.Popen(
        ["git", "-C", str(repo), "archive", "--format=tar", sha], stdout=subprocess.PIPE
    )
    try:
        subprocess.run(
            ["tar", "-x", "--no-same-owner", "-C", str(dest)],
            stdin=archive.stdout,
            check=True,
            timeout=GIT_TIMEOUT,
        )
    finally:
        assert archive.stdout is not None
        archive.stdout.close()
        if archive.wait(timeout=GIT_TIMEOUT) != 0:
            raise RuntimeError(f"git archive {sha} failed")


def carry_mtimes(previous: Path, current: Path) -> int:
    """Give files of ``current`` whose content equals ``previous``'s the old mtime.

    ``git archive`` stamps every file with the commit time, so a fresh export looks
    entirely changed to rsync's quick check (size + mtime). An admin rsyncs from a working
    copy that ``git checkout`` updated, where only changed files get a new mtime; this makes
    the export look like that. Returns how many files kept their old mtime.
    """
    kept = 0
    for rel in _walk(current):
        old = previous / rel
        new = current / rel
        if (
            old.is_file()
            and old.stat().st_size == new.stat().st_size
            and _digest(old) == _digest(new)
        ):
            st = old.stat()
            os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
            kept += 1
    return kept


def manifest(tree: Path) -> Manifest:
    return Manifest(
        sizes={rel: (tree / rel).stat().st_size for rel in _walk(tree)},
        changed_sha256=_digest(tree / CHANGED_FILE),
    )


def check_release(
    host_srv: Path,
    webroot: str,
    expected_release_dir: str | None,
    expected: Manifest,
    *,
    full: Path | None = None,
) -> str | None:
    """Why the host's live release is wrong, or None if it is right.

    ``host_srv`` is where this machine sees the host's ``/srv``. The webroot must be a
    symlink to a directory (``expected_release_dir`` if given) with exactly the expected
    files and sizes and the changed file's new content; with ``full`` (a local source
    tree) every file's content is compared too.
    """
    link = host_srv / webroot.removeprefix("/srv/")
    if not link.is_symlink():
        return f"{webroot} is not a symlink"
    target = os.readlink(link)
    if expected_release_dir is not None and target.rstrip("/") != expected_release_dir:
        return f"{webroot} -> {target}, expected {expected_release_dir}"
    release = host_srv / target.removeprefix("/srv/")
    if not release.is_dir():
        return f"{webroot} -> {target}, which is not a directory"
    got = {rel: (release / rel).stat().st_size for rel in _walk(release)}
    if got != expected.sizes:
        missing = sorted(set(expected.sizes) - set(got))[:3]
        extra = sorted(set(got) - set(expected.sizes))[:3]
        return (
            f"{target}: {len(got)} files, expected {len(expected.sizes)} "
            f"(missing {missing}, extra {extra}, or sizes differ)"
        )
    if _digest(release / CHANGED_FILE) != expected.changed_sha256:
        return f"{target}/{CHANGED_FILE} does not have the new content"
    if full is not None:
        for rel in expected.sizes:
            if _digest(release / rel) != _digest(full / rel):
                return f"{target}/{rel} differs from the source"
    return None


def _directories(rng: random.Random, count: int) -> list[str]:
    tops = ["app", "static/js", "static/css", "static/img", "vendor", "templates", "lib"]
    dirs = ["", *tops]
    while len(dirs) < count:
        parent = rng.choice(dirs[1:])
        dirs.append(f"{parent}/d{len(dirs):03d}")
    return dirs


def _walk(tree: Path) -> list[str]:
    out = []
    for root, _dirs, names in os.walk(tree):
        for name in names:
            out.append(os.path.relpath(os.path.join(root, name), tree))
    return out


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
