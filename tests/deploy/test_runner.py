"""The deploy engine end to end: real git repos, real sshd hosts, the real API."""

from __future__ import annotations

import os

from tests.factories import commit


def test_first_deploy_releases_to_every_host_and_switches_the_webroot(factory, fleet):
    world = factory.deploy_world(list(fleet)[:2])
    task = factory.deploy(world)
    for host in world.hosts:
        webroot = world.path_on(host, world.webroot)
        assert webroot.is_symlink()
        live = os.readlink(webroot)
        assert live == f"{world.releases}/{task['release']}"
        assert (world.path_on(host, live) / "index.html").read_text() == "<h1>v1</h1>\n"


def test_incremental_deploy_hard_links_unchanged_files(factory, fleet):
    world = factory.deploy_world(list(fleet)[:1])
    factory.deploy(world)
    host = world.hosts[0]
    first = world.path_on(host, os.readlink(world.path_on(host, world.webroot)))
    commit(world.repo, {"index.html": "<h1>v2</h1>\n"})
    factory.deploy(world)
    second = world.path_on(host, os.readlink(world.path_on(host, world.webroot)))
    assert first != second
    assert (second / "index.html").read_text() == "<h1>v2</h1>\n"
    assert (first / "index.html").read_text() == "<h1>v1</h1>\n"
    assert (first / "static/app.js").stat().st_ino == (second / "static/app.js").stat().st_ino
