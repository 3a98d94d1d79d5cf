"""What every use case receives: the database session, who is asking, and from where."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from shipyard.auth.rbac import Principal
from shipyard.config import Settings
from shipyard.errors import NotAuthenticated
from shipyard.vault import Vault

if TYPE_CHECKING:
    from shipyard.jobs.dispatch import Dispatcher


@dataclass
class Runtime:
    """The long-lived wiring built once at start-up and passed down."""

    settings: Settings
    sessions: sessionmaker[Session]
    vault: Vault
    dispatcher: Dispatcher | None = None
    # Called with each TaskEvent after its change is committed (see services.events).
    listeners: list[Callable[[Any], None]] = field(default_factory=list)


@dataclass
class Context:
    db: Session
    runtime: Runtime
    who: Principal | None = None
    address: str | None = None
    _after_commit: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this unit of work has committed (e.g. dispatch a job
        that must see the committed state)."""
        self._after_commit.append(callback)

    def run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    @property
    def principal(self) -> Principal:
        if self.who is None:
            raise NotAuthenticated()
        return self.who

    @property
    def actor_name(self) -> str:
        return self.who.username if self.who else "system"


@contextmanager
def unit_of_work(runtime: Runtime, who: Principal | None = None,
                 address: str | None = None) -> Iterator[Context]:
    """A context whose changes commit together on success (then after-commit callbacks
    run) and roll back on any error."""
    with runtime.sessions() as db:
        ctx = Context(db=db, runtime=runtime, who=who, address=address)
        try:
            yield ctx
            db.commit()
        except BaseException:
            db.rollback()
            raise
    ctx.run_after_commit()
