"""Releases on hosts, and the per-target deploy lock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.models.base import Base
from shipyard.models.types import UTCDateTime, utcnow


class HostRelease(Base):
    """A release directory Shipyard created on a host: which commit, by which task. The
    host itself is the truth for what exists and what is live; this adds the story."""

    __tablename__ = "host_releases"
    __table_args__ = (Index("ix_host_releases_target_release", "target_id", "release"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"),
                                           index=True)
    release: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("deploy_tasks.id",
                                                           ondelete="SET NULL"), index=True)
    commit_sha: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TargetLock(Base):
    """At most one deploy per target: held by a task, with a lease the runner renews.
    An expired lease means the holder died; the next claimant may take it."""

    __tablename__ = "target_locks"

    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"),
                                           primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("deploy_tasks.id", ondelete="CASCADE"),
                                         index=True)
    holder: Mapped[str] = mapped_column(String(128))
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)
