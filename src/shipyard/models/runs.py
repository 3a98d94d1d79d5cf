"""What a deploy did: per host and per stage results, and every output line."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.models.base import Base
from shipyard.models.types import BigId, UTCDateTime, utcnow


class Stage(enum.StrEnum):
    BUILD = "build"
    CONNECT = "connect"
    TRANSFER = "transfer"
    PREV_RELEASE = "prev_release"
    SWITCH = "switch"
    POST_RELEASE = "post_release"
    PRUNE = "prune"


HOST_STAGES = (Stage.CONNECT, Stage.TRANSFER, Stage.PREV_RELEASE, Stage.SWITCH,
               Stage.POST_RELEASE, Stage.PRUNE)


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class HostStep(Base):
    """One stage on one host of one task (host ``""`` for the build)."""

    __tablename__ = "host_steps"
    __table_args__ = (UniqueConstraint("task_id", "host", "stage"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("deploy_tasks.id", ondelete="CASCADE"))
    server_id: Mapped[int | None] = mapped_column(ForeignKey("servers.id",
                                                             ondelete="SET NULL"), index=True)
    host: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.PENDING.value)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    output_tail: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LogLine(Base):
    """One line of output. ``seq`` orders a task's lines (and is the SSE event id)."""

    __tablename__ = "log_lines"
    __table_args__ = (Index("ix_log_lines_task_seq", "task_id", "seq", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("deploy_tasks.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(64), default="")
    stage: Mapped[str] = mapped_column(String(16))
    stream: Mapped[str] = mapped_column(String(8))
    line: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
