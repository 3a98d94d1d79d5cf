"""The seam between "a task should run" and running it. The API only dispatches; the
same ``run_task`` runs in-process (default) or in a Celery worker (distributed mode)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shipyard.services.context import Runtime

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    def dispatch_task(self, task_id: int, zone: str = "") -> None:
        """Arrange for ``run_task(task_id)`` to run soon, at least once, on a runner that
        serves ``zone`` (the target's network zone; "" for the default)."""

    def shutdown(self) -> None: ...


class InProcessDispatcher:
    """Runs jobs on a small thread pool inside the server process."""

    def __init__(self, runtime: Runtime, workers: int = 8) -> None:
        self.runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shipyard-job")
        self.futures: list[Future[None]] = []

    def dispatch_task(self, task_id: int, zone: str = "") -> None:
        from shipyard.jobs.run import run_task

        future = self._pool.submit(run_task, self.runtime, task_id)
        future.add_done_callback(_log_crash)
        self.futures = [f for f in self.futures if not f.done()] + [future]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


def _log_crash(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("job crashed", exc_info=exc)
