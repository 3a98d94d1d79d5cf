"""Distributed mode: jobs go through a broker (Redis or RabbitMQ) to ``shipyard worker``
processes, which run the very same ``run_task``. A target's ``zone`` names the queue, so
only workers that can reach that network zone take its deploys.

Delivery is at-least-once (late acks, requeue on a lost worker); ``run_task`` claims a
task with a compare-and-set, so a second delivery does nothing."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from celery import Celery

from shipyard.config import Settings

if TYPE_CHECKING:
    from shipyard.services.context import Runtime

TASK_NAME = "shipyard.run_task"


def make_celery(settings: Settings) -> Celery:
    app = Celery("shipyard", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.default_queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name=TASK_NAME, ignore_result=True)
    def run_task_job(task_id: int) -> None:
        from shipyard.jobs.run import run_task

        run_task(_worker_runtime(), task_id)

    return app


@cache
def _worker_runtime() -> Runtime:
    """One runtime per worker process, built from the worker's own settings."""
    from shipyard.app import build_runtime

    settings = Settings(dispatcher="inprocess")
    runtime = build_runtime(settings)
    runtime.dispatcher = None  # a worker runs jobs; it does not dispatch them
    return runtime


class CeleryDispatcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = make_celery(settings)

    def dispatch_task(self, task_id: int, zone: str = "") -> None:
        self.app.send_task(TASK_NAME, args=[task_id],
                           queue=zone or self.settings.default_queue)

    def shutdown(self) -> None:
        pass
