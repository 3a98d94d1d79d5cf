"""Integrations: webhooks in from git hosts (per project: a secret, rules, the deliveries
received) and notifications out (per space: channels; per target: which channels; per
event and channel: a notification and each attempt to deliver it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shipyard.models.base import Base, Timestamps
from shipyard.models.types import BigId, JSONValue, UTCDateTime, utcnow


class ProjectWebhook(Timestamps, Base):
    """A project's inbound webhook: the secret git hosts sign (or send) with. The secret
    is encrypted at rest and shown once, when it is made."""

    __tablename__ = "project_webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"),
                                          index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"),
                                            unique=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rotated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookRule(Timestamps, Base):
    """When ``event`` happens to a ref matching ``pattern``: ``action`` on ``target``.
    The task is submitted as ``run_as`` (the MASTER who saved the rules)."""

    __tablename__ = "webhook_rules"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"),
                                          index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"),
                                           index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(16))     # push | tag | merge
    pattern: Mapped[str] = mapped_column(String(255))  # a glob over the branch or tag
    action: Mapped[str] = mapped_column(String(16))    # deploy | submit
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    run_as_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"),
                                                  index=True)


class WebhookDelivery(Base):
    """One request to a project's webhook URL, accepted or not, and what came of it.

    ``delivery_key`` is set only once the request is authenticated; its unique constraint
    is what makes a delivery processed at most once."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("project_id", "delivery_key"),
        Index("ix_webhook_deliveries_project_id_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"),
                                          index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(64), default="")   # as the provider names it
    delivery_id: Mapped[str] = mapped_column(String(128), default="")
    delivery_key: Mapped[str | None] = mapped_column(String(160))
    # received | rejected | ignored | triggered | failed
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int] = mapped_column(Integer, default=200)
    reason: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str | None] = mapped_column(String(16))          # push | tag | merge
    ref: Mapped[str | None] = mapped_column(String(255))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    sender: Mapped[str | None] = mapped_column(String(200))
    # Per matching rule: {"rule", "environment", "action", "task_id", "state"} or "error".
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONValue, default=list)
    body_bytes: Mapped[int] = mapped_column(Integer, default=0)
    address: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Channel(Timestamps, Base):
    """Where a space's notifications go: a chat robot, an email list or a JSON webhook.
    ``secret`` (encrypted) holds the URL and signing secret, which are credentials too;
    ``config`` holds what may be shown."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("space_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSONValue, default=dict)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    events: Mapped[list[str]] = mapped_column(JSONValue, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


target_channels = Table(
    "target_channels",
    Base.metadata,
    Column("target_id", ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True),
    Column("channel_id", ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True,
           index=True),
    # None: the channel's own event list.
    Column("events", JSONValue, nullable=True),
)


class Notification(Base):
    """One message about one event for one channel, delivered in the background."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_space_id_id", "space_id", "id"),
        Index("ix_notifications_status", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL"), index=True)
    channel_name: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("deploy_tasks.id", ondelete="SET NULL"), index=True)
    event: Mapped[str] = mapped_column(String(24))
    message: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    # pending | sending | delivered | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NotificationAttempt(Base):
    """One try at delivering a notification: the outcome, the receiver's answer, the time."""

    __tablename__ = "notification_attempts"
    __table_args__ = (UniqueConstraint("notification_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("notifications.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    http_status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(String(1000), default="")
    error: Mapped[str] = mapped_column(String(1000), default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
