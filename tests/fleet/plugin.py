"""Pytest fixtures for the sshd test fleet; registered with
``pytest_plugins = ["tests.fleet.plugin"]`` in ``tests/conftest.py``.

- ``fleet``: a session-wide :class:`Fleet` of 3 hosts. Shared: use your own paths under
  ``/srv`` (e.g. ``/srv/<test name>``) and never stop its hosts.
- ``make_fleet(n=2)``: a private fleet for this test (stop and restart hosts freely),
  killed at the end of the test. Keep fleets small (at most 4 hosts).

Tests using either fixture get the ``fleet`` marker (deselect with ``-m "not fleet"``).
Where a fleet cannot run (not root, no sshd) they are skipped, or fail when ``CI`` is set,
so that CI never passes by skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.fleet.harness import Fleet, unavailable_reason

FLEET_FIXTURES = frozenset({"fleet", "make_fleet"})
SHARED_FLEET_SIZE = 3
MAX_TEST_FLEET = 4


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fleet: needs the sshd test fleet (root, unshare, sshd)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if FLEET_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.fleet)


def require_fleet() -> None:
    """Skip the test if no fleet can run here, or fail it when running in CI."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI is set: fleet tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three running sshd hosts, shared by the whole session (per xdist worker)."""
    require_fleet()
    with Fleet(SHARED_FLEET_SIZE, tmp_path_factory.mktemp("fleet")) as shared:
        yield shared


@pytest.fixture
def make_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Fleet]]:
    """A factory: ``make_fleet(n)`` starts a private fleet of ``n`` hosts for this test."""
    fleets: list[Fleet] = []

    def make(n: int = 2) -> Fleet:
        require_fleet()
        if not 1 <= n <= MAX_TEST_FLEET:
            raise ValueError(f"keep test fleets small: 1 to {MAX_TEST_FLEET} hosts, not {n}")
        private = Fleet(n, tmp_path_factory.mktemp("fleet"))
        fleets.append(private)
        private.start()
        return private

    yield make
    for private in fleets:
        private.stop()
