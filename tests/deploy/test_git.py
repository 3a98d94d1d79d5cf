"""The project mirror on the build host, against real repositories made in tmp dirs."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shipyard.deploy.git import Mirror, file_lock
from shipyard.errors import GitError, InvalidInput


class Upstream:
    """A real repository playing origin. Its default branch is ``trunk``: never ``master``."""

    def __init__(self, path: Path, default_branch: str = "trunk") -> None:
        self.path = path
        self._clock = datetime(2024, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        subprocess.run(
            ["git", "init", "--quiet", f"--initial-branch={default_branch}", str(path)],
            check=True,
        )

    @property
    def url(self) -> str:
        return str(self.path)

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        result = subprocess.run(
            ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
            cwd=self.path,
            env={**os.environ, **(env or {})},
            capture_output=True,
            check=True,
        )
        return result.stdout.decode()

    def commit(
        self,
        files: Mapping[str, str | bytes],
        message: str = "change",
        *,
        author: tuple[str, str] = ("Ada Lovelace", "ada@example.com"),
        date: datetime | None = None,
    ) -> str:
        """Write ``files`` (path -> content), commit them all, return the new commit id."""
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        if date is None:
            self._clock += timedelta(minutes=1)  # distinct dates keep "newest first" stable
            date = self._clock
        stamp = date.isoformat()
        env = {
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": "Committer",
            "GIT_COMMITTER_EMAIL": "committer@example.com",
            "GIT_COMMITTER_DATE": stamp,
        }
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "--cleanup=verbatim", "-m", message, env=env)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", f"{ref}^{{commit}}").strip()

    def tag(self, name: str, ref: str = "HEAD", *, message: str | None = None) -> None:
        if message is None:
            self.git("tag", name, ref)
        else:
            env = {"GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"}
            self.git("tag", "--annotate", "-m", message, name, ref, env=env)


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    repo = Upstream(tmp_path / "upstream")
    repo.commit({"README.md": "# shop\n"}, "initial commit")
    return repo


@pytest.fixture
def mirror(tmp_path: Path, upstream: Upstream) -> Mirror:
    return Mirror(tmp_path / "mirrors" / "shop.git", upstream.url, allow_local=True)


def _git_output(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout


# -- fetching -------------------------------------------------------------------------


def test_first_fetch_creates_the_mirror_and_learns_the_default_branch_from_origin(
    mirror: Mirror, upstream: Upstream
) -> None:
    assert not mirror.exists
    mirror.fetch()
    assert mirror.exists
    assert mirror.default_branch() == "trunk"
    assert [b.name for b in mirror.branches()] == ["trunk"]
    assert mirror.resolve("trunk") == upstream.head()


def test_refetch_picks_up_new_commits_and_forgets_deleted_branches_and_tags(
    mirror: Mirror, upstream: Upstream
) -> None:
    upstream.git("branch", "feature/old")
    upstream.tag("v0.1")
    mirror.fetch()
    assert {b.name for b in mirror.branches()} == {"trunk", "feature/old"}

    new_head = upstream.commit({"app.py": "print('v2')\n"}, "second")
    upstream.git("branch", "--delete", "--force", "feature/old")
    upstream.git("tag", "--delete", "v0.1")
    upstream.git("branch", "feature/new")
    mirror.fetch()

    assert {b.name for b in mirror.branches()} == {"trunk", "feature/new"}
    assert mirror.tags() == []
    assert mirror.resolve("trunk") == new_head


def test_refetch_follows_force_pushes_and_a_changed_default_branch(
    mirror: Mirror, upstream: Upstream
) -> None:
    first = upstream.head()
    upstream.commit({"a.txt": "a"}, "to be rewritten")
    mirror.fetch()
    upstream.git("reset", "--hard", "--quiet", first)
    rewritten = upstream.commit({"b.txt": "b"}, "rewritten")
    upstream.git("checkout", "--quiet", "-b", "main")
    mirror.fetch()
    assert mirror.resolve("trunk") == rewritten
    assert mirror.default_branch() == "main"


def test_concurrent_fetches_of_one_mirror_from_several_threads_all_succeed(
    mirror: Mirror, upstream: Upstream
) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def fetch() -> None:
        start.wait()
        try:
            # Each thread has its own Mirror object, as separate tasks would.
            Mirror(mirror.path, upstream.url, allow_local=True).fetch()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert mirror.resolve("trunk") == upstream.head()
    leftovers = [p.name for p in mirror.path.parent.iterdir()]
    assert sorted(leftovers) == ["shop.git", "shop.git.lock"]


def test_fetch_waits_for_the_mirror_lock_and_gives_up_clearly_when_it_stays_taken(
    mirror: Mirror,
) -> None:
    with file_lock(mirror.lock_path, timeout=1), pytest.raises(GitError, match="lock on mirror"):
        mirror.fetch(timeout=0.2)
    mirror.fetch()  # and works once the lock is free
    assert mirror.exists


def test_a_failed_first_fetch_leaves_no_half_made_mirror(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path / "m.git", str(tmp_path / "no-such-repo"), allow_local=True)
    with pytest.raises(GitError) as caught:
        mirror.fetch()
    assert "no-such-repo" in caught.value.message  # git's own words, from stderr
    assert caught.value.details["exit_code"] != 0
    assert not mirror.exists
    assert [p.name for p in tmp_path.iterdir()] == ["m.git.lock"]


@pytest.mark.parametrize(
    "url", ["ext::sh -c touch% pwned", "ext::sh", "--upload-pack=touch pwned", "-oProxyCommand=x"]
)
def test_a_mirror_refuses_urls_that_could_run_commands(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Mirror(tmp_path / "m.git", url, allow_local=True)
    assert caught.value.field == "repo"


def test_a_mirror_of_a_local_path_needs_allow_local(tmp_path: Path, upstream: Upstream) -> None:
    with pytest.raises(InvalidInput, match="local path"):
        Mirror(tmp_path / "m.git", upstream.url)


def test_reading_before_the_first_fetch_is_a_clear_error(mirror: Mirror) -> None:
    with pytest.raises(GitError, match="not been fetched"):
        mirror.branches()


# -- reading --------------------------------------------------------------------------


def test_branches_list_name_commit_and_date_newest_first(
    mirror: Mirror, upstream: Upstream
) -> None:
    upstream.git("checkout", "--quiet", "-b", "release/1.x")
    release = upstream.commit({"r.txt": "r"}, "release work")
    upstream.git("checkout", "--quiet", "trunk")
    mirror.fetch()
    branches = mirror.branches()
    assert [(b.name, b.sha) for b in branches] == [
        ("release/1.x", release),
        ("trunk", upstream.head("trunk")),
    ]
    assert branches[0].date is not None and branches[0].date.utcoffset() == timedelta(hours=2)


def test_tags_point_at_commits_whether_lightweight_annotated_or_nested(
    mirror: Mirror, upstream: Upstream
) -> None:
    first = upstream.head()
    upstream.tag("v1.0", message="first release")
    upstream.tag("v1.0-signed-off", "v1.0", message="a tag of a tag")
    second = upstream.commit({"x": "x"})
    upstream.tag("nightly")
    upstream.git("tag", "tree-tag", "HEAD^{tree}")  # not deployable: left out
    mirror.fetch()
    tags = {t.name: t.sha for t in mirror.tags()}
    assert tags == {"v1.0": first, "v1.0-signed-off": first, "nightly": second}
    assert mirror.resolve("v1.0") == first
    assert mirror.resolve("v1.0-signed-off") == first


def test_commits_parse_names_and_messages_with_any_characters(
    mirror: Mirror, upstream: Upstream
) -> None:
    odd_subject = "fix: ünïcödé 中文 \x1f\x1e | %H %x00 $(touch pwned) `id` \"q\" 'q' \t tab"
    date = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    sha = upstream.commit(
        {"odd.txt": "odd"},
        f"{odd_subject}\n\nbody line one\nbody line two\n",
        author=('Zoë "Z" O\'Brien-Łukasz', "zoë@exämple.com"),
        date=date,
    )
    mirror.fetch()
    newest, oldest = mirror.commits("trunk")
    assert newest.sha == sha
    assert sha.startswith(newest.short_sha) and len(newest.short_sha) >= 7
    assert newest.author == 'Zoë "Z" O\'Brien-Łukasz'
    assert newest.email == "zoë@exämple.com"
    assert newest.date == date and newest.date.utcoffset() == date.utcoffset()
    assert newest.message == odd_subject
    assert oldest.message == "initial commit"
    assert not (upstream.path / "pwned").exists()


def test_commits_are_newest_first_and_limited(mirror: Mirror, upstream: Upstream) -> None:
    for n in range(5):
        upstream.commit({"n.txt": str(n)}, f"commit {n}")
    mirror.fetch()
    assert [c.message for c in mirror.commits("trunk", limit=3)] == [
        "commit 4",
        "commit 3",
        "commit 2",
    ]
    with pytest.raises(InvalidInput):
        mirror.commits("trunk", limit=0)


def test_resolve_accepts_branches_tags_full_refs_and_short_commit_ids(
    mirror: Mirror, upstream: Upstream
) -> None:
    first = upstream.head()
    upstream.tag("v1", message="annotated")
    second = upstream.commit({"x": "1"})
    mirror.fetch()
    assert mirror.resolve("trunk") == second
    assert mirror.resolve("refs/heads/trunk") == second
    assert mirror.resolve("v1") == first
    assert mirror.resolve("refs/tags/v1") == first
    assert mirror.resolve(first[:7]) == first
    assert mirror.resolve(first) == first


def test_resolve_refuses_unknown_refs_naming_them(mirror: Mirror) -> None:
    mirror.fetch()
    for ref in ["no-such-branch", "deadbeef", "refs/heads/nope"]:
        with pytest.raises(InvalidInput) as caught:
            mirror.resolve(ref)
        assert caught.value.field == "ref"
        assert repr(ref) in caught.value.message


@pytest.mark.parametrize(
    "ref", ["--upload-pack=touch pwned", "--output=pwned", "-h", "--all", "trunk..v1", "HEAD~1"]
)
def test_resolve_never_lets_a_ref_become_an_option_or_an_expression(
    mirror: Mirror, ref: str, tmp_path: Path
) -> None:
    mirror.fetch()
    with pytest.raises(InvalidInput) as caught:
        mirror.resolve(ref)
    assert caught.value.field == "ref"
    assert not any(p.name == "pwned" for p in tmp_path.rglob("*"))


def test_default_branch_is_a_clear_error_for_an_empty_origin(tmp_path: Path) -> None:
    empty = Upstream(tmp_path / "empty", default_branch="main")
    mirror = Mirror(tmp_path / "m.git", empty.url, allow_local=True)
    mirror.fetch()
    with pytest.raises(GitError, match="no default branch"):
        mirror.default_branch()


# -- archive --------------------------------------------------------------------------


def _tree_of(repo: Path, sha: str) -> dict[str, tuple[str, bytes]]:
    """path -> (mode, content) for every file and symlink in commit ``sha``."""
    listing = _git_output(repo, "ls-tree", "-r", "-z", sha).split(b"\0")
    tree = {}
    for entry in filter(None, listing):
        meta, path = entry.split(b"\t", 1)
        mode, _, obj = meta.split(b" ")
        tree[path.decode()] = (mode.decode(), _git_output(repo, "cat-file", "blob", obj.decode()))
    return tree


def _tree_on_disk(root: Path) -> dict[str, tuple[str, bytes]]:
    tree = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            tree[rel] = ("120000", os.readlink(path).encode())
        elif path.is_file():
            mode = "100755" if os.access(path, os.X_OK) else "100644"
            tree[rel] = (mode, path.read_bytes())
    return tree


def test_archive_writes_exactly_the_commits_tree(
    mirror: Mirror, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.commit(
        {
            "src/app.py": "print('hi')\n",
            "bin/run.sh": "#!/bin/sh\necho run\n",
            "assets/logo.bin": bytes(range(256)),
            "docs/ünïcödé name.txt": "x",
            "tests/test_app.py": "assert True\n",
            "version.txt": "$Format:%H$\n",
            # A composer-style .gitattributes must not change what we deploy.
            ".gitattributes": "/tests export-ignore\nversion.txt export-subst\n",
        }
    )
    (upstream.path / "bin/run.sh").chmod(0o755)
    (upstream.path / "current").symlink_to("src/app.py")
    sha = upstream.commit({}, "modes and links")
    upstream.commit({"later.txt": "not in the archive"}, "a later commit")
    mirror.fetch()

    dest = tmp_path / "out"
    mirror.archive(sha, dest)

    assert _tree_on_disk(dest) == _tree_of(upstream.path, sha)
    assert not (dest / ".git").exists()


def test_archive_accepts_only_commit_ids(mirror: Mirror, tmp_path: Path) -> None:
    mirror.fetch()
    with pytest.raises(InvalidInput):
        mirror.archive("--output=pwned", tmp_path / "out")
    with pytest.raises(InvalidInput):
        mirror.archive("trunk", tmp_path / "out")
    with pytest.raises(GitError):
        mirror.archive("0" * 40, tmp_path / "out")
