"""Notification channels (per space), which channels each target uses, and the record of
every notification and delivery attempt. Delivery itself runs in the background
(``integrations/notify.py``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import delete, insert, select

from shipyard.auth import rbac
from shipyard.errors import InvalidInput, NotFound
from shipyard.integrations import urls
from shipyard.integrations.channels import Destination, kinds
from shipyard.integrations.messages import render_test
from shipyard.models import (
    Channel,
    Notification,
    NotificationAttempt,
    Project,
    Space,
    target_channels,
)
from shipyard.models.types import utcnow
from shipyard.services import audit, lookup, validation
from shipyard.services.context import Context
from shipyard.services.errors_db import integrity
from shipyard.services.events import TaskEventKind
from shipyard.services.pagination import Page, keyset
from shipyard.services.types import Name
from shipyard.vault import Vault

EVENTS = tuple(k.value for k in TaskEventKind)
FIELDS = ("name", "kind", "config", "events", "enabled", "secret")
STATES = ("pending", "sending", "delivered", "failed")
Kind = Literal["dingtalk", "wecom", "feishu", "slack", "email", "webhook"]


def _events(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = [e for e in value if e not in EVENTS]
    if unknown:
        raise InvalidInput(f"unknown events {', '.join(unknown)}; choose from "
                           + ", ".join(EVENTS), field="events")
    return list(dict.fromkeys(value))


def _addresses(value: list[str]) -> list[str]:
    return [validation.email(v, "to") or "" for v in value if v.strip()]


class ChannelSpec(BaseModel):
    name: Name
    kind: Kind
    url: str | None = Field(default=None, max_length=urls.MAX_URL, description=(
        "write-only: the robot or webhook URL (it carries the robot's token)"),
        json_schema_extra={"writeOnly": True})
    secret: str | None = Field(default=None, max_length=500, description=(
        "write-only: signing secret (DingTalk 加签, Feishu, JSON webhook)"),
        json_schema_extra={"writeOnly": True})
    to: list[str] = Field(default_factory=list, max_length=50, description="email: "
                          "addresses")
    notify_approvers: bool = Field(default=True, description="email: also mail those who "
                                   "can approve a task waiting for approval")
    events: list[str] | None = Field(default=None, description="events to send (default: "
                                     "all): " + ", ".join(EVENTS))
    enabled: bool = True

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str] | None) -> list[str] | None:
        return _events(value)

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: list[str]) -> list[str]:
        return _addresses(value)


class ChannelUpdate(BaseModel):
    url: str | None = Field(default=None, max_length=urls.MAX_URL,
                            json_schema_extra={"writeOnly": True})
    secret: str | None = Field(default=None, max_length=500, description='"" removes it',
                               json_schema_extra={"writeOnly": True})
    to: list[str] | None = Field(default=None, max_length=50)
    notify_approvers: bool | None = None
    events: list[str] | None = None
    enabled: bool | None = None

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str] | None) -> list[str] | None:
        return _events(value)

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _addresses(value)


class TargetChannel(BaseModel):
    name: Name
    events: list[str] | None = Field(default=None, description="default: the channel's")

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str] | None) -> list[str] | None:
        return _events(value)


class TargetChannels(BaseModel):
    channels: list[TargetChannel] = Field(max_length=20)


@dataclass
class ChannelView:
    channel: Channel
    url_host: str
    has_url: bool
    has_signing_secret: bool


def _secrets(vault: Vault, channel: Channel) -> dict[str, str]:
    return json.loads(vault.decrypt(channel.secret)) if channel.secret else {}


def destination(vault: Vault, channel: Channel) -> Destination:
    """The channel decrypted, for the deliverer only; never for an interface."""
    data = _secrets(vault, channel)
    return Destination(name=channel.name, url=data.get("url"),
                       signing_secret=data.get("signing_secret") or None,
                       to=list((channel.config or {}).get("to") or []))


def view(ctx: Context, channel: Channel) -> ChannelView:
    data = _secrets(ctx.runtime.vault, channel)
    return ChannelView(channel, urls.display_host(data.get("url") or ""), bool(data.get("url")),
                       bool(data.get("signing_secret")))


def _apply(ctx: Context, channel: Channel, values: dict[str, Any]) -> None:
    """Validate the merged settings of ``channel`` for its kind and store them."""
    kind = kinds()[channel.kind]
    data = _secrets(ctx.runtime.vault, channel)
    if values.get("url") is not None:
        data["url"] = urls.precheck(values["url"],
                                    allow_private=ctx.runtime.settings.allow_private_webhook_urls)
    if values.get("secret") is not None:
        data["signing_secret"] = values["secret"]
    if not data.get("signing_secret"):
        data.pop("signing_secret", None)
    if kind.needs_url and not data.get("url"):
        raise InvalidInput(f"a {channel.kind} channel needs its url", field="url")
    if not kind.needs_url:
        data.pop("url", None)
    if data.get("signing_secret") and not kind.takes_signing_secret:
        raise InvalidInput(f"a {channel.kind} channel takes no signing secret",
                           field="secret")
    config = dict(channel.config or {})
    for key in ("to", "notify_approvers"):
        if values.get(key) is not None:
            config[key] = values[key]
    if channel.kind == "email":
        config.setdefault("to", [])
        config.setdefault("notify_approvers", True)
        if not config["to"] and not config["notify_approvers"]:
            raise InvalidInput("an email channel needs addresses in 'to' (or "
                               "notify_approvers)", field="to")
    else:
        config = {}
    channel.config = config
    channel.secret = ctx.runtime.vault.encrypt(json.dumps(data)) if data else None
    if "events" in values:
        channel.events = list(values["events"] or [])
    if values.get("enabled") is not None:
        channel.enabled = values["enabled"]


def list_channels(ctx: Context, space: Space) -> list[ChannelView]:
    rbac.require(ctx.principal, "channel.read", space.id)
    return [view(ctx, c) for c in ctx.db.scalars(
        select(Channel).where(Channel.space_id == space.id).order_by(Channel.name))]


def _channel(ctx: Context, space: Space, name: str) -> Channel:
    found = ctx.db.scalar(select(Channel).where(Channel.space_id == space.id,
                                                Channel.name == name))
    if found is None:
        raise NotFound(f"no channel named {name!r} in this space")
    return found


def _snapshot(channel: Channel) -> dict[str, Any]:
    return audit.snapshot(channel, FIELDS)


def create_channel(ctx: Context, space: Space, spec: ChannelSpec) -> ChannelView:
    rbac.require(ctx.principal, "channel.manage", space.id)
    channel = Channel(space_id=space.id, name=spec.name, kind=spec.kind, config={},
                      events=[])
    _apply(ctx, channel, spec.model_dump())
    with integrity(f"channel {spec.name!r}"):
        ctx.db.add(channel)
        ctx.db.flush()
    audit.record(ctx, "channel.create", "channel", channel.name, space_id=space.id,
                 after=_snapshot(channel))
    return view(ctx, channel)


def update_channel(ctx: Context, space: Space, name: str,
                   changes: ChannelUpdate) -> ChannelView:
    rbac.require(ctx.principal, "channel.manage", space.id)
    channel = _channel(ctx, space, name)
    before = _snapshot(channel)
    values = changes.model_dump(exclude_unset=True)
    _apply(ctx, channel, values)
    ctx.db.flush()
    after = _snapshot(channel)
    if values.get("url") is not None or values.get("secret") is not None:
        before["secret"], after["secret"] = "(old)", "(new)"
    audit.record(ctx, "channel.update", "channel", channel.name, space_id=space.id,
                 before=before, after=after)
    return view(ctx, channel)


def delete_channel(ctx: Context, space: Space, name: str) -> None:
    rbac.require(ctx.principal, "channel.manage", space.id)
    channel = _channel(ctx, space, name)
    audit.record(ctx, "channel.delete", "channel", channel.name, space_id=space.id,
                 before=_snapshot(channel))
    ctx.db.delete(channel)
    ctx.db.flush()


def send_test(ctx: Context, space: Space, name: str) -> Notification:
    """Queue a test message to the channel; its attempts show in the notifications."""
    from shipyard.integrations.notify import notifier_of

    rbac.require(ctx.principal, "channel.manage", space.id)
    channel = _channel(ctx, space, name)
    message = render_test(space.name, channel.name, ctx.actor_name,
                          ctx.runtime.settings.base_url)
    notification = Notification(space_id=space.id, channel_id=channel.id,
                                channel_name=channel.name, event="test",
                                message=message.to_dict(), status="pending",
                                next_attempt_at=utcnow())
    ctx.db.add(notification)
    ctx.db.flush()
    audit.record(ctx, "channel.test", "channel", channel.name, space_id=space.id,
                 after={"notification": notification.id})
    notifier = notifier_of(ctx.runtime)
    if notifier is not None:
        ctx.after_commit(lambda: notifier.deliver(notification.id))
    return notification


# -- per target --------------------------------------------------------------------------


def target_channel_list(ctx: Context, project: Project,
                        environment: str) -> list[tuple[Channel, list[str] | None]]:
    rbac.require(ctx.principal, "target.read", project.space_id, project.id)
    target = lookup.target(ctx, project, environment)
    rows = ctx.db.execute(select(Channel, target_channels.c.events)
                          .join(target_channels, target_channels.c.channel_id == Channel.id)
                          .where(target_channels.c.target_id == target.id)
                          .order_by(Channel.name))
    return [(c, e) for c, e in rows]


def set_target_channels(ctx: Context, space: Space, project: Project, environment: str,
                        spec: TargetChannels) -> list[tuple[Channel, list[str] | None]]:
    """Choose the channels that hear about this target's tasks (replacing the choice)."""
    rbac.require(ctx.principal, "target.manage", space.id, project.id)
    target = lookup.target(ctx, project, environment)
    chosen: dict[int, tuple[Channel, list[str] | None]] = {}
    for item in spec.channels:
        found = ctx.db.scalar(select(Channel).where(Channel.space_id == space.id,
                                                    Channel.name == item.name))
        if found is None:
            raise InvalidInput(f"no channel named {item.name!r} in this space",
                               field="channels")
        chosen[found.id] = (found, item.events)
    before = [c.name for c, _ in target_channel_list(ctx, project, environment)]
    ctx.db.execute(delete(target_channels).where(target_channels.c.target_id == target.id))
    for channel_id, (_, events) in chosen.items():
        ctx.db.execute(insert(target_channels).values(target_id=target.id,
                                                      channel_id=channel_id, events=events))
    audit.record(ctx, "target.channels", "target", f"{project.name}/{environment}",
                 space_id=space.id, before={"channels": before},
                 after={"channels": [c.name for c, _ in chosen.values()]})
    return sorted(chosen.values(), key=lambda pair: pair[0].name)


# -- the record --------------------------------------------------------------------------


@dataclass
class NotificationView:
    notification: Notification
    kind: str | None
    attempts: list[NotificationAttempt]


def list_notifications(ctx: Context, space: Space, *, channel: str | None = None,
                       task_id: int | None = None, status: str | None = None,
                       cursor: int | None = None, limit: int = 50) -> Page[NotificationView]:
    """Newest first, each with every delivery attempt."""
    rbac.require(ctx.principal, "delivery.read", space.id)
    query = select(Notification).where(Notification.space_id == space.id)
    if channel:
        query = query.where(Notification.channel_name == channel)
    if task_id is not None:
        query = query.where(Notification.task_id == task_id)
    if status:
        if status not in STATES:
            raise InvalidInput(f"status must be one of {', '.join(STATES)}", field="status")
        query = query.where(Notification.status == status)
    page = keyset(ctx.db, query, Notification.id, cursor=cursor, limit=limit)
    ids = [n.id for n in page.items]
    attempts: dict[int, list[NotificationAttempt]] = {i: [] for i in ids}
    for attempt in ctx.db.scalars(select(NotificationAttempt)
                                  .where(NotificationAttempt.notification_id.in_(ids))
                                  .order_by(NotificationAttempt.number)):
        attempts[attempt.notification_id].append(attempt)
    channel_ids = {n.channel_id for n in page.items if n.channel_id is not None}
    kinds_by_id = dict(ctx.db.execute(select(Channel.id, Channel.kind)
                                      .where(Channel.id.in_(channel_ids))).all())
    return Page([NotificationView(n, kinds_by_id.get(n.channel_id or 0), attempts[n.id])
                 for n in page.items], page.next_cursor)

