"""The remote release layout: pure planning, then the same steps on real sshd hosts."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.deploy.release import (
    ReleaseInfo,
    current_release,
    list_releases,
    make_release_id,
    parse_live_target,
    plan_prune,
    prepare_release_dir,
    prune_releases,
    release_sort_key,
    switch_command,
    switch_symlink,
    validate_remote_path,
)
from shipyard.deploy.transport import SSHConnection, connect
from shipyard.errors import InvalidInput, RemoteError
from tests.fleet.harness import Fleet, FleetHost

T = TypeVar("T")

release_ids = st.builds(
    make_release_id,
    st.integers(min_value=1, max_value=10**6),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31)),
)


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# -- release ids -----------------------------------------------------------------------------


def test_release_id_is_utc_time_and_task_id() -> None:
    beijing = timezone(timedelta(hours=8))
    assert make_release_id(42, datetime(2026, 11, 22, 18, 15, 0, tzinfo=beijing)) == (
        "20261122T101500-42"
    )
    assert make_release_id(7, datetime(2026, 1, 2, 3, 4, 5)) == "20260102T030405-7"


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2999, 1, 1)),
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3000)),
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=10**9),
)
def test_release_ids_sort_by_time_whatever_the_task_ids(
    earlier: datetime, gap: timedelta, task_a: int, task_b: int
) -> None:
    first = make_release_id(task_a, earlier.replace(tzinfo=UTC))
    later = make_release_id(task_b, (earlier + gap).replace(tzinfo=UTC))
    assert release_sort_key(first) < release_sort_key(later)
    assert first < later  # plain string order agrees, so `ls` lists them in time order


def test_release_ids_in_the_same_second_sort_by_task_id() -> None:
    now = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    ids = [make_release_id(task, now) for task in (100, 9, 42)]
    assert sorted(ids, key=release_sort_key) == [
        "20261122T101500-9",
        "20261122T101500-42",
        "20261122T101500-100",
    ]


@pytest.mark.parametrize(
    "path", ["relative", "/srv/../etc", "/srv/./x", "/srv//x", "/srv/x/", "/", "/a\nb", ""]
)
def test_remote_paths_must_be_normalized_and_absolute(path: str) -> None:
    with pytest.raises(InvalidInput):
        validate_remote_path(path, "webroot")


def test_switch_command_passes_paths_as_arguments_not_script_text() -> None:
    argv = switch_command("/srv/www", "/srv/releases/$(id)", "/srv/.www.tmp")
    assert argv[:2] == ["sh", "-c"] and "$(id)" not in argv[2]
    assert argv[-3:] == ["/srv/www", "/srv/releases/$(id)", "/srv/.www.tmp"]


def test_a_relative_symlink_target_is_resolved_against_the_webroot() -> None:
    assert parse_live_target("../releases/r1\n", "/data/www/shop") == "/data/releases/r1"
    assert parse_live_target("", "/data/www/shop") is None


# -- prune planning --------------------------------------------------------------------------


def test_prune_keeps_the_newest_and_the_live_and_previous_ones() -> None:
    ids = [make_release_id(i, datetime(2026, 1, i, tzinfo=UTC)) for i in range(1, 9)]
    doomed = plan_prune(ids, keep=3, live_id=ids[1], previous_id=ids[0])
    assert doomed == ids[2:5]


def test_prune_leaves_names_that_are_not_release_ids_alone() -> None:
    ids = ["notes", "20260101T000000-1", "20260102T000000-2", "current"]
    assert plan_prune(ids, keep=1, live_id=None, previous_id=None) == ["20260101T000000-1"]


def test_prune_refuses_to_keep_nothing() -> None:
    with pytest.raises(InvalidInput):
        plan_prune(["20260101T000000-1"], keep=0, live_id=None, previous_id=None)


@given(
    ids=st.lists(release_ids, max_size=30, unique=True),
    keep=st.integers(min_value=1, max_value=10),
    data=st.data(),
)
def test_prune_plan_properties(ids: list[str], keep: int, data: st.DataObject) -> None:
    live = data.draw(st.sampled_from(ids) if ids else st.none())
    previous = data.draw(st.sampled_from(ids) if ids else st.none())
    doomed = plan_prune(ids, keep=keep, live_id=live, previous_id=previous)
    kept = set(ids) - set(doomed)
    newest = sorted(ids, key=release_sort_key)[-keep:]
    assert set(doomed) <= set(ids)
    assert live not in doomed and previous not in doomed
    assert set(newest) <= kept
    assert kept == set(newest) | ({live, previous} - {None})
    assert doomed == sorted(doomed, key=release_sort_key)  # oldest first


# -- on a host -------------------------------------------------------------------------------


@pytest.fixture
def host(fleet: Fleet) -> FleetHost:
    return fleet[1]


@pytest.fixture
def layout(host: FleetHost) -> dict[str, Any]:
    """A target's paths on the host, remote and as seen locally through host_dir."""
    base = f"t-{uuid.uuid4().hex[:12]}"
    (host.host_dir / base).mkdir()
    return {
        "releases": f"/srv/{base}/releases",
        "webroot": f"/srv/{base}/www/current",
        "local": host.host_dir / base,
    }


async def _make_releases(conn: SSHConnection, releases: str, count: int) -> list[str]:
    ids = [make_release_id(i, datetime(2026, 1, i, tzinfo=UTC)) for i in range(1, count + 1)]
    for release_id in ids:
        await prepare_release_dir(conn, releases, release_id)
    return ids


def test_prepare_then_switch_makes_the_webroot_a_symlink_to_the_release(
    host: FleetHost, layout: dict[str, Any]
) -> None:
    async def main() -> tuple[str | None, str | None, str | None]:
        async with connect(host.spec()) as conn:
            release = await prepare_release_dir(conn, layout["releases"], "20261122T101500-42")
            before = await current_release(conn, layout["webroot"])
            previous = await switch_symlink(conn, layout["webroot"], release)
            return before, previous, await current_release(conn, layout["webroot"])

    before, previous, live = arun(main())
    assert (before, previous) == (None, None)
    assert live == f"{layout['releases']}/20261122T101500-42"
    webroot = layout["local"] / "www" / "current"
    assert webroot.is_symlink() and os.readlink(webroot) == live


def test_switching_back_to_an_older_release_works_and_reports_the_previous_one(
    host: FleetHost, layout: dict[str, Any]
) -> None:
    async def main() -> list[str | None]:
        async with connect(host.spec()) as conn:
            r1, r2 = [
                await prepare_release_dir(conn, layout["releases"], rid)
                for rid in ("20260101T000000-1", "20260102T000000-2")
            ]
            return [
                await switch_symlink(conn, layout["webroot"], r1),
                await switch_symlink(conn, layout["webroot"], r2),
                await switch_symlink(conn, layout["webroot"], r1),
                await current_release(conn, layout["webroot"]),
            ]

    r1 = f"{layout['releases']}/20260101T000000-1"
    r2 = f"{layout['releases']}/20260102T000000-2"
    assert arun(main()) == [None, r1, r2, r1]
    # No temporary symlink is left next to the webroot.
    assert [p.name for p in (layout["local"] / "www").iterdir()] == ["current"]


def test_the_switch_never_leaves_the_webroot_missing(
    host: FleetHost, layout: dict[str, Any]
) -> None:
    webroot = layout["local"] / "www" / "current"
    seen_missing: list[BaseException] = []
    stop = threading.Event()

    def watch() -> None:  # a reader, like a web server resolving the webroot
        while not stop.is_set():
            try:
                os.readlink(webroot)
            except OSError as exc:
                seen_missing.append(exc)

    async def main() -> None:
        async with connect(host.spec()) as conn:
            ids = await _make_releases(conn, layout["releases"], 2)
            paths = [f"{layout['releases']}/{i}" for i in ids]
            await switch_symlink(conn, layout["webroot"], paths[0])
            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                for n in range(20):
                    await switch_symlink(conn, layout["webroot"], paths[(n + 1) % 2])
            finally:
                stop.set()
                watcher.join()

    arun(main())
    assert seen_missing == []


def test_a_webroot_that_is_a_real_directory_is_refused_and_left_alone(
    host: FleetHost, layout: dict[str, Any]
) -> None:
    legacy = layout["local"] / "www" / "current"
    legacy.mkdir(parents=True)
    (legacy / "index.html").write_text("legacy site")

    async def main() -> None:
        async with connect(host.spec()) as conn:
            release = await prepare_release_dir(conn, layout["releases"], "20260101T000000-1")
            await switch_symlink(conn, layout["webroot"], release)

    with pytest.raises(RemoteError) as caught:
        arun(main())
    assert caught.value.details["reason"] == "webroot_not_symlink"
    assert layout["webroot"] in caught.value.message
    assert (legacy / "index.html").read_text() == "legacy site"


def test_switching_to_a_missing_release_is_refused(host: FleetHost, layout: dict[str, Any]) -> None:
    async def main() -> None:
        async with connect(host.spec()) as conn:
            await switch_symlink(conn, layout["webroot"], f"{layout['releases']}/nope")

    with pytest.raises(RemoteError) as caught:
        arun(main())
    assert caught.value.details["reason"] == "release_missing"
    assert not (layout["local"] / "www" / "current").is_symlink()


def test_list_releases_is_newest_first_marks_the_live_one_and_ignores_strangers(
    host: FleetHost, layout: dict[str, Any]
) -> None:
    async def main() -> list[ReleaseInfo]:
        async with connect(host.spec()) as conn:
            ids = await _make_releases(conn, layout["releases"], 3)
            await switch_symlink(conn, layout["webroot"], f"{layout['releases']}/{ids[1]}")
            (layout["local"] / "releases" / "notes").mkdir()
            (layout["local"] / "releases" / "20260109T000000-9").write_text("a file")
            return await list_releases(conn, layout["releases"], layout["webroot"])

    releases = arun(main())
    assert [(r.id, r.live) for r in releases] == [
        ("20260103T000000-3", False),
        ("20260102T000000-2", True),
        ("20260101T000000-1", False),
    ]
    assert releases[0].path == f"{layout['releases']}/20260103T000000-3"


def test_list_releases_of_a_target_never_deployed_is_empty(
    host: FleetHost, layout: dict[str, Any]
) -> None:
    async def main() -> list[ReleaseInfo]:
        async with connect(host.spec()) as conn:
            return await list_releases(conn, layout["releases"], layout["webroot"])

    assert arun(main()) == []


def test_prune_deletes_old_releases_but_never_the_live_or_previous_one(
    host: FleetHost, layout: dict[str, Any]
) -> None:
    async def main() -> tuple[list[str], list[str]]:
        async with connect(host.spec()) as conn:
            ids = await _make_releases(conn, layout["releases"], 6)
            # A rollback made release 2 live; release 1 was live before it.
            await switch_symlink(conn, layout["webroot"], f"{layout['releases']}/{ids[1]}")
            deleted = await prune_releases(
                conn, layout["releases"], 2, ids[1], ids[0], webroot=layout["webroot"]
            )
            return ids, deleted

    ids, deleted = arun(main())
    assert deleted == [ids[2], ids[3]]
    remaining = sorted(p.name for p in (layout["local"] / "releases").iterdir())
    assert remaining == [ids[0], ids[1], ids[4], ids[5]]


def test_prune_keeps_what_the_webroot_points_at_even_if_told_otherwise(
    host: FleetHost, layout: dict[str, Any]
) -> None:
    async def main() -> tuple[list[str], list[str]]:
        async with connect(host.spec()) as conn:
            ids = await _make_releases(conn, layout["releases"], 4)
            await switch_symlink(conn, layout["webroot"], f"{layout['releases']}/{ids[0]}")
            deleted = await prune_releases(
                conn, layout["releases"], 1, ids[3], None, webroot=layout["webroot"]
            )
            return ids, deleted

    ids, deleted = arun(main())
    assert deleted == [ids[1], ids[2]]
    assert (layout["local"] / "releases" / ids[0]).is_dir()


def test_prune_leaves_hard_linked_files_of_kept_releases_intact(
    host: FleetHost, layout: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "app.js").write_text("shared")

    async def main() -> list[str]:
        async with connect(host.spec()) as conn:
            ids = await _make_releases(conn, layout["releases"], 2)
            old, new = (f"{layout['releases']}/{i}" for i in ids)
            await conn.push_dir(tmp_path, old, timeout=60)
            await conn.push_dir(tmp_path, new, link_dest=old, timeout=60)
            await switch_symlink(conn, layout["webroot"], new)
            await prune_releases(conn, layout["releases"], 1, ids[1], None)
            return ids

    ids = arun(main())
    assert not (layout["local"] / "releases" / ids[0]).exists()
    assert (layout["local"] / "releases" / ids[1] / "app.js").read_text() == "shared"
