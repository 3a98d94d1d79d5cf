"""Planning a deploy is pure: which hosts, in which batches, with which variables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_PARALLEL = 20
DEFAULT_COMMAND_TIMEOUT = 900.0
DEFAULT_TRANSFER_TIMEOUT = 1800.0


@dataclass(frozen=True)
class HostTarget:
    """One server as the runner needs it (the key is decrypted only in memory)."""

    server_id: int
    name: str
    address: str
    port: int
    user: str
    private_key: str = field(repr=False)
    host_key: str | None


@dataclass(frozen=True)
class Rollout:
    batch: int | None = None
    pause: float = 0.0
    stop_on_failure: bool = True
    parallel: int = DEFAULT_PARALLEL
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT

    @classmethod
    def from_strategy(cls, strategy: dict[str, Any]) -> Rollout:
        return cls(
            batch=strategy.get("batch"),
            pause=float(strategy.get("pause") or 0),
            stop_on_failure=strategy.get("on_failure", "stop") != "continue",
            parallel=int(strategy.get("parallel") or DEFAULT_PARALLEL),
            command_timeout=float(strategy.get("timeout") or DEFAULT_COMMAND_TIMEOUT),
        )


def batches(hosts: Sequence[T], size: int | None) -> list[list[T]]:
    """All hosts at once, or consecutive batches of ``size`` in the given order."""
    if not hosts:
        return []
    if not size or size >= len(hosts):
        return [list(hosts)]
    return [list(hosts[i : i + size]) for i in range(0, len(hosts), size)]


def ref_kind(ref: str, branches: set[str], tags: set[str]) -> dict[str, str]:
    """BRANCH or TAG for the hooks, as walle users know them ('' when a commit was given)."""
    if ref in tags:
        return {"BRANCH": "", "TAG": ref}
    if ref in branches:
        return {"BRANCH": ref, "TAG": ""}
    return {"BRANCH": "", "TAG": ""}


def hook_variables(user_vars: dict[str, str], builtins: dict[str, str]) -> dict[str, str]:
    """The environment a hook sees: the project's variables, then the built-ins (which a
    project variable cannot override)."""
    return {**user_vars, **builtins}
