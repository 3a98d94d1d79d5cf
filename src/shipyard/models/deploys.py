"""Deploy tasks (上线单), their approvals, and the task state machine's vocabulary."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.models.base import Base, Timestamps
from shipyard.models.types import JSONValue, UTCDateTime


class TaskState(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


FINAL_STATES = frozenset({TaskState.REJECTED, TaskState.SUCCEEDED, TaskState.FAILED,
                          TaskState.CANCELLED})


class TaskKind(enum.StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"


def _values(enum_class: type[enum.Enum]) -> list[str]:
    return [member.value for member in enum_class]


class DeployTask(Timestamps, Base):
    __tablename__ = "deploy_tasks"
    __table_args__ = (
        Index("ix_deploy_tasks_space_id_id", "space_id", "id"),
        Index("ix_deploy_tasks_space_state", "space_id", "state", "id"),
        Index("ix_deploy_tasks_project", "project_id", "id"),
        Index("ix_deploy_tasks_target", "target_id", "id"),
        Index("ix_deploy_tasks_submitter", "submitted_by_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True)
    kind: Mapped[TaskKind] = mapped_column(Enum(TaskKind, native_enum=False, length=16,
                                                values_callable=_values),
                                           default=TaskKind.DEPLOY)
    title: Mapped[str] = mapped_column(String(200))
    ref: Mapped[str] = mapped_column(String(255))
    commit_sha: Mapped[str | None] = mapped_column(String(40))
    # None: every server of the target; else the chosen subset (server ids).
    server_ids: Mapped[list[int] | None] = mapped_column(JSONValue)
    rollback_to: Mapped[str | None] = mapped_column(String(64))
    # Foreign keys referring to tasks are indexed: PostgreSQL does not do it by itself,
    # and deleting many tasks would scan the table once per deleted row.
    parent_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("deploy_tasks.id", ondelete="SET NULL"), index=True)
    state: Mapped[TaskState] = mapped_column(Enum(TaskState, native_enum=False, length=24,
                                                   values_callable=_values))
    submitted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    reject_reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id",
                                                                 ondelete="SET NULL"),
                                                      index=True)
    # The runner renews this while it works; a stale heartbeat means the runner died.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    runner: Mapped[str | None] = mapped_column(String(128))
    release: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("task_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("deploy_tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
