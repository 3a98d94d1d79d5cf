"""Recording per-host, per-stage results of a task as they happen."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.models import HostStep, StepStatus
from shipyard.models.types import utcnow


class StepRecorder:
    def __init__(self, sessions: sessionmaker[Session], task_id: int) -> None:
        self.sessions = sessions
        self.task_id = task_id

    def plan(self, rows: Iterable[tuple[int | None, str, str]]) -> None:
        """Create a pending row for each (server id, host, stage) up front, so a client sees
        the whole matrix from the start."""
        values = [
            {
                "task_id": self.task_id,
                "server_id": sid,
                "host": host,
                "stage": stage,
                "status": StepStatus.PENDING.value,
                "output_tail": "",
            }
            for sid, host, stage in rows
        ]
        if values:
            with self.sessions() as db, db.begin():
                db.execute(insert(HostStep), values)

    def start(self, host: str, stage: str) -> None:
        self._set(host, stage, status=StepStatus.RUNNING.value, started_at=utcnow())

    def finish(
        self,
        host: str,
        stage: str,
        status: StepStatus,
        *,
        exit_code: int | None = None,
        duration: float | None = None,
        output_tail: str = "",
    ) -> None:
        self._set(
            host,
            stage,
            status=status.value,
            exit_code=exit_code,
            duration=duration,
            output_tail=output_tail[-4000:],
            finished_at=utcnow(),
        )

    def skip_pending(self, status: StepStatus = StepStatus.SKIPPED) -> None:
        with self.sessions() as db, db.begin():
            db.execute(
                update(HostStep)
                .where(
                    HostStep.task_id == self.task_id,
                    HostStep.status.in_([StepStatus.PENDING.value, StepStatus.RUNNING.value]),
                )
                .values(status=status.value, finished_at=utcnow())
            )

    def _set(self, host: str, stage: str, **values: object) -> None:
        with self.sessions() as db, db.begin():
            db.execute(
                update(HostStep)
                .where(
                    HostStep.task_id == self.task_id, HostStep.host == host, HostStep.stage == stage
                )
                .values(**values)
            )
