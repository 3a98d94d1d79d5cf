"""The per-target deploy lock: one deploy at a time per target, held with a lease in the
database so that it works across processes and survives nobody."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.db.engine import changed
from shipyard.models import DeployTask, TargetLock, TaskState
from shipyard.models.types import utcnow

LEASE = timedelta(seconds=60)
LIVE = (TaskState.QUEUED, TaskState.RUNNING)


@dataclass
class Held:
    """Who holds a target's lock when we could not take it."""

    task_id: int


class TargetLocks:
    def __init__(self, sessions: sessionmaker[Session], holder: str,
                 lease: timedelta = LEASE) -> None:
        self.sessions = sessions
        self.holder = holder
        self.lease = lease

    def acquire(self, target_id: int, task_id: int) -> Held | None:
        """Take the lock for ``task_id``; None on success, else who holds it. A lock whose
        lease expired, or whose task is no longer live, is taken over."""
        now = utcnow()
        try:
            with self.sessions() as db, db.begin():
                db.add(TargetLock(target_id=target_id, task_id=task_id, holder=self.holder,
                                  lease_until=now + self.lease))
            return None
        except IntegrityError:
            pass
        with self.sessions() as db, db.begin():
            lock = db.get(TargetLock, target_id)
            if lock is None:
                return Held(task_id=0)  # released meanwhile: the caller simply retries
            holder_state = db.scalar(select(DeployTask.state)
                                     .where(DeployTask.id == lock.task_id))
            free = (lock.task_id == task_id or lock.lease_until < now
                    or holder_state not in LIVE)
            if not free:
                return Held(task_id=lock.task_id)
            # Compare-and-set on what we read: of two claimants only one wins.
            taken = changed(db.execute(update(TargetLock)
                               .where(TargetLock.target_id == target_id,
                                      TargetLock.task_id == lock.task_id,
                                      TargetLock.lease_until == lock.lease_until)
                               .values(task_id=task_id, holder=self.holder,
                                       lease_until=now + self.lease)))
            return None if taken == 1 else Held(task_id=lock.task_id)

    def renew(self, target_id: int, task_id: int) -> bool:
        with self.sessions() as db, db.begin():
            return bool(changed(db.execute(update(TargetLock)
                                   .where(TargetLock.target_id == target_id,
                                          TargetLock.task_id == task_id)
                                   .values(lease_until=utcnow() + self.lease))))

    def release(self, target_id: int, task_id: int) -> None:
        with self.sessions() as db, db.begin():
            db.execute(delete(TargetLock).where(TargetLock.target_id == target_id,
                                                TargetLock.task_id == task_id))

    @staticmethod
    def release_all_for(db: Session, task_ids: list[int]) -> None:
        if task_ids:
            db.execute(delete(TargetLock).where(TargetLock.task_id.in_(task_ids)))
