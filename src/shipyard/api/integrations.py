"""Integrations: a project's inbound webhook (secret, rules, deliveries), the public
endpoint git hosts post to, a space's notification channels, which channels each target
uses, and the record of notifications with every delivery attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from shipyard.api.deps import Public, client_address, guard
from shipyard.api.schemas import PageOut
from shipyard.models import Channel, WebhookDelivery
from shipyard.services import notifications, webhook_receiver, webhooks
from shipyard.services.notifications import (
    ChannelSpec,
    ChannelUpdate,
    ChannelView,
    NotificationView,
    TargetChannels,
)
from shipyard.services.webhooks import RulesSpec, RuleView, WebhookUpdate, WebhookView

router = APIRouter()
PROJECT = "/spaces/{space}/projects/{project}"


class WebhookOut(BaseModel):
    project: str
    configured: bool
    enabled: bool
    urls: dict[str, str]
    rotated_at: datetime | None
    secret: str | None = None

    @classmethod
    def of(cls, v: WebhookView) -> WebhookOut:
        return cls(project=v.project.name, configured=v.hook is not None,
                   enabled=bool(v.hook and v.hook.enabled), urls=v.urls,
                   rotated_at=v.hook.rotated_at if v.hook else None, secret=v.secret)


class RuleOut(BaseModel):
    name: str
    event: str
    pattern: str
    environment: str
    action: str
    enabled: bool
    run_as: str | None

    @classmethod
    def of(cls, v: RuleView) -> RuleOut:
        r = v.rule
        return cls(name=r.name, event=r.event, pattern=r.pattern, environment=v.environment,
                   action=r.action, enabled=r.enabled, run_as=v.run_as)


class DeliveryOut(BaseModel):
    id: int
    provider: str
    event: str
    delivery_id: str
    status: str
    http_status: int
    reason: str
    kind: str | None
    ref: str | None
    commit_sha: str | None
    sender: str | None
    results: list[dict[str, Any]]
    tasks: list[int]
    body_bytes: int
    address: str | None
    received_at: datetime

    @classmethod
    def of(cls, d: WebhookDelivery) -> DeliveryOut:
        results = list(d.results or [])
        return cls(id=d.id, provider=d.provider, event=d.event, delivery_id=d.delivery_id,
                   status=d.status, http_status=d.http_status, reason=d.reason, kind=d.kind,
                   ref=d.ref, commit_sha=d.commit_sha, sender=d.sender, results=results,
                   tasks=[r["task_id"] for r in results if "task_id" in r],
                   body_bytes=d.body_bytes, address=d.address, received_at=d.received_at)


class HookAnswer(BaseModel):
    delivery: int
    status: str
    reason: str
    tasks: list[int]


class ChannelOut(BaseModel):
    name: str
    kind: str
    url_host: str
    has_url: bool
    has_signing_secret: bool
    to: list[str]
    notify_approvers: bool
    events: list[str]
    enabled: bool
    updated_at: datetime

    @classmethod
    def of(cls, v: ChannelView) -> ChannelOut:
        c = v.channel
        config = c.config or {}
        return cls(name=c.name, kind=c.kind, url_host=v.url_host, has_url=v.has_url,
                   has_signing_secret=v.has_signing_secret, to=list(config.get("to") or []),
                   notify_approvers=bool(config.get("notify_approvers", False)),
                   events=list(c.events or []), enabled=c.enabled, updated_at=c.updated_at)


class TargetChannelOut(BaseModel):
    name: str
    kind: str
    events: list[str] | None

    @classmethod
    def of(cls, pair: tuple[Channel, list[str] | None]) -> TargetChannelOut:
        return cls(name=pair[0].name, kind=pair[0].kind, events=pair[1])


class AttemptOut(BaseModel):
    number: int
    ok: bool
    http_status: int | None
    response: str
    error: str
    duration_ms: int
    started_at: datetime


class NotificationOut(BaseModel):
    id: int
    channel: str
    kind: str | None
    event: str
    task_id: int | None
    status: str
    headline: str
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    attempts: list[AttemptOut]

    @classmethod
    def of(cls, v: NotificationView) -> NotificationOut:
        n = v.notification
        return cls(id=n.id, channel=n.channel_name, kind=v.kind, event=n.event,
                   task_id=n.task_id, status=n.status,
                   headline=str((n.message or {}).get("headline", "")),
                   created_at=n.created_at, delivered_at=n.delivered_at,
                   next_attempt_at=n.next_attempt_at, last_error=n.last_error,
                   attempts=[AttemptOut(number=a.number, ok=a.ok, http_status=a.http_status,
                                        response=a.response, error=a.error,
                                        duration_ms=a.duration_ms, started_at=a.started_at)
                             for a in v.attempts])


# -- a project's webhook ------------------------------------------------------------------


@router.get(f"{PROJECT}/webhook", response_model=WebhookOut, tags=["webhooks"])
def get_webhook(space: str, project: str, call: guard("webhook.read")) -> WebhookOut:
    """The URLs to give GitHub, GitLab or Gitee; never the secret."""
    return WebhookOut.of(webhooks.get_webhook(call.ctx, call.in_space, call.in_project))


@router.put(f"{PROJECT}/webhook", response_model=WebhookOut, tags=["webhooks"])
def configure_webhook(space: str, project: str, body: WebhookUpdate,
                      call: guard("webhook.manage")) -> WebhookOut:
    """Set up the project's webhook, or turn it on or off. When it is set up, the answer
    carries its ``secret``: this once, never again (rotate to get a new one)."""
    return WebhookOut.of(webhooks.configure(call.ctx, call.in_space, call.in_project, body))


@router.post(f"{PROJECT}/webhook/rotate", response_model=WebhookOut, tags=["webhooks"])
def rotate_webhook_secret(space: str, project: str,
                          call: guard("webhook.manage")) -> WebhookOut:
    """A new ``secret``, shown this once; the old one stops working at once."""
    return WebhookOut.of(webhooks.rotate(call.ctx, call.in_space, call.in_project))


@router.get(f"{PROJECT}/webhook/rules", response_model=list[RuleOut], tags=["webhooks"])
def list_webhook_rules(space: str, project: str,
                       call: guard("webhook.read")) -> list[RuleOut]:
    return [RuleOut.of(v) for v in webhooks.list_rules(call.ctx, call.in_space,
                                                       call.in_project)]


@router.put(f"{PROJECT}/webhook/rules", response_model=list[RuleOut], tags=["webhooks"])
def replace_webhook_rules(space: str, project: str, body: RulesSpec,
                          call: guard("webhook.manage")) -> list[RuleOut]:
    """Replace the rules (in order; every matching rule fires). Tasks they create are
    submitted in the name of whoever saved the rules last."""
    return [RuleOut.of(v) for v in webhooks.replace_rules(call.ctx, call.in_space,
                                                          call.in_project, body)]


@router.get(f"{PROJECT}/webhook/deliveries", response_model=PageOut[DeliveryOut],
            tags=["webhooks"])
def list_webhook_deliveries(space: str, project: str, call: guard("webhook.read"),
                            status: str | None = None, cursor: int | None = None,
                            limit: int = Query(50, ge=1, le=200)) -> PageOut[DeliveryOut]:
    """Newest first: what each delivery triggered, or why it was ignored or refused."""
    page = webhooks.list_deliveries(call.ctx, call.in_space, call.in_project, status=status,
                                    cursor=cursor, limit=limit)
    return PageOut[DeliveryOut](items=[DeliveryOut.of(d) for d in page.items],
                            next_cursor=page.next_cursor)


@router.post("/hooks/{provider}/{space}/{project}", response_model=HookAnswer,
             tags=["webhooks"])
async def receive_webhook(provider: str, space: str, project: str, request: Request,
                          ctx: Public) -> HookAnswer:
    """Where GitHub, GitLab and Gitee post. Authenticated by the provider's signature or
    token (401 without one, 403 with a wrong one); 409 for a delivery seen before; 413
    for a body over ``webhook_max_body_bytes``."""
    runtime = ctx.runtime
    body, too_large = await _read_body(request, runtime.settings.webhook_max_body_bytes)
    incoming = webhook_receiver.Incoming(provider=provider, space=space, project=project,
                                         headers=dict(request.headers), body=body,
                                         too_large=too_large,
                                         address=client_address(request))
    outcome = await run_in_threadpool(webhook_receiver.receive, runtime, incoming)
    return HookAnswer(delivery=outcome.delivery, status=outcome.status,
                      reason=outcome.reason, tasks=outcome.tasks)


async def _read_body(request: Request, limit: int) -> tuple[bytes, bool]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return b"", True
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
    return b"".join(chunks), False


# -- a space's channels --------------------------------------------------------------------


@router.get("/spaces/{space}/channels", response_model=list[ChannelOut], tags=["channels"])
def list_channels(space: str, call: guard("channel.read")) -> list[ChannelOut]:
    """Channels with what may be shown: the URL's host, never the URL or secret."""
    return [ChannelOut.of(v) for v in notifications.list_channels(call.ctx, call.in_space)]


@router.post("/spaces/{space}/channels", response_model=ChannelOut, status_code=201,
             tags=["channels"])
def create_channel(space: str, body: ChannelSpec, call: guard("channel.manage")) -> ChannelOut:
    return ChannelOut.of(notifications.create_channel(call.ctx, call.in_space, body))


@router.patch("/spaces/{space}/channels/{name}", response_model=ChannelOut, tags=["channels"])
def update_channel(space: str, name: str, body: ChannelUpdate,
                   call: guard("channel.manage")) -> ChannelOut:
    return ChannelOut.of(notifications.update_channel(call.ctx, call.in_space, name, body))


@router.delete("/spaces/{space}/channels/{name}", status_code=204, tags=["channels"])
def delete_channel(space: str, name: str, call: guard("channel.manage")) -> Response:
    notifications.delete_channel(call.ctx, call.in_space, name)
    return Response(status_code=204)


@router.post("/spaces/{space}/channels/{name}/test", response_model=NotificationOut,
             status_code=202, tags=["channels"])
def test_channel(space: str, name: str, call: guard("channel.manage")) -> NotificationOut:
    """Queue a test message; follow it in ``GET /spaces/{space}/notifications``."""
    sent = notifications.send_test(call.ctx, call.in_space, name)
    return NotificationOut.of(NotificationView(sent, None, []))


@router.get(PROJECT + "/targets/{environment}/channels", response_model=list[TargetChannelOut],
            tags=["channels"])
def list_target_channels(space: str, project: str, environment: str,
                         call: guard("target.read")) -> list[TargetChannelOut]:
    return [TargetChannelOut.of(p) for p in
            notifications.target_channel_list(call.ctx, call.in_project, environment)]


@router.put(PROJECT + "/targets/{environment}/channels", response_model=list[TargetChannelOut],
            tags=["channels"])
def set_target_channels(space: str, project: str, environment: str, body: TargetChannels,
                        call: guard("target.manage")) -> list[TargetChannelOut]:
    """Choose which channels hear about this target's tasks (replacing the choice);
    ``events`` narrows a channel's events for this target."""
    return [TargetChannelOut.of(p) for p in notifications.set_target_channels(
        call.ctx, call.in_space, call.in_project, environment, body)]


@router.get("/spaces/{space}/notifications", response_model=PageOut[NotificationOut],
            tags=["channels"])
def list_notifications(space: str, call: guard("delivery.read"), channel: str | None = None,
                       task_id: int | None = None, status: str | None = None,
                       cursor: int | None = None,
                       limit: int = Query(50, ge=1, le=200)) -> PageOut[NotificationOut]:
    """Newest first, each with every delivery attempt (MASTER+)."""
    page = notifications.list_notifications(call.ctx, call.in_space, channel=channel,
                                            task_id=task_id, status=status, cursor=cursor,
                                            limit=limit)
    return PageOut[NotificationOut](items=[NotificationOut.of(v) for v in page.items],
                               next_cursor=page.next_cursor)
