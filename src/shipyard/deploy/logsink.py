"""Every output line of a task goes to the database in batches, numbered in order.

Lines are numbered as they arrive (one sequence per task, so order holds per host and
overall) and written by a background thread every ``interval`` seconds or every
``batch`` lines, so a hook printing 100,000 lines fast costs a few hundred inserts, not
100,000, and never blocks the deploy on the database."""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.models import LogLine
from shipyard.models.types import utcnow

MAX_LINE = 8192


class LogSink:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        task_id: int,
        *,
        interval: float = 0.2,
        batch: int = 2000,
    ) -> None:
        self.sessions = sessions
        self.task_id = task_id
        self.interval = interval
        self.batch = batch
        self._lock = threading.Lock()
        self._pending: list[dict[str, object]] = []
        self._wake = threading.Event()
        self._closed = False
        with sessions() as db:
            self._seq = (
                db.scalar(select(func.max(LogLine.seq)).where(LogLine.task_id == task_id)) or 0
            )
        self._thread = threading.Thread(target=self._run, name=f"logsink-{task_id}", daemon=True)
        self._thread.start()

    def emit(
        self, host: str, stage: str, stream: str, line: str, at: datetime | None = None
    ) -> None:
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE] + " …[truncated]"
        with self._lock:
            self._seq += 1
            self._pending.append(
                {
                    "task_id": self.task_id,
                    "seq": self._seq,
                    "host": host,
                    "stage": stage,
                    "stream": stream,
                    "line": line,
                    "at": at or utcnow(),
                }
            )
            if len(self._pending) >= self.batch:
                self._wake.set()

    def system(self, line: str, host: str = "", stage: str = "task") -> None:
        """A line from Shipyard itself (not from a command)."""
        self.emit(host, stage, "system", line)

    def flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        for start in range(0, len(rows), self.batch):
            with self.sessions() as db, db.begin():
                db.execute(insert(LogLine), rows[start : start + self.batch])

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
