"""Receiving a git host's webhook delivery.

    find the project's webhook -> authenticate (constant time) -> name the delivery and
    claim it (a unique key: a replay is refused, a delivery is processed at most once)
    -> parse -> match the rules -> per rule, submit a task as the rule's author (and start
    it when the rule deploys and no approval is needed) -> record what came of it

Every request for a known project is recorded, refused ones too (the newest
``webhook_keep_rejected`` of those per project are kept), and logged. A request for an
unknown project, or one without a webhook, is answered exactly like a wrong signature,
so the endpoint does not tell which projects exist.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from shipyard.errors import (
    Conflict,
    InvalidInput,
    NotAuthenticated,
    PayloadTooLarge,
    PermissionDenied,
    ShipyardError,
)
from shipyard.integrations import rules as rule_matching
from shipyard.integrations.inbound import GitEvent, Ignored, Provider, Request, provider
from shipyard.models import (
    Project,
    ProjectWebhook,
    Space,
    TaskState,
    User,
    WebhookDelivery,
)
from shipyard.services import accounts, audit, tasks
from shipyard.services.context import Runtime, unit_of_work
from shipyard.services.webhooks import rule_views

log = logging.getLogger(__name__)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Incoming:
    """A request to ``/hooks/{provider}/{space}/{project}`` as the interface saw it."""

    provider: str
    space: str
    project: str
    headers: Mapping[str, str]
    body: bytes
    too_large: bool = False
    address: str | None = None


@dataclass
class Outcome:
    """What came of an accepted delivery."""

    delivery: int
    status: str  # ignored | triggered | failed
    reason: str = ""
    tasks: list[int] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Hook:
    space_id: int
    project_id: int
    project: str
    secret: bytes | None
    enabled: bool


def receive(runtime: Runtime, incoming: Incoming, now: float | None = None) -> Outcome:
    """Authenticate and act on one delivery; refusals raise (NotAuthenticated,
    PermissionDenied, PayloadTooLarge, Conflict for a replay, InvalidInput) after they
    are recorded."""
    host = provider(incoming.provider)
    request = Request({k.lower(): v for k, v in incoming.headers.items()}, incoming.body,
                      time.time() if now is None else now)
    settings = runtime.settings
    found = _find(runtime, incoming.space, incoming.project)
    if found is None or found.secret is None:
        # Fail exactly as a wrong secret would.
        exc = _auth_error(host, secrets.token_urlsafe(32), request,
                          settings.webhook_max_age) or PermissionDenied()
        log.warning("webhook %s for %s/%s refused: no such webhook (%s)", host.name,
                    incoming.space, incoming.project, exc.message)
        if found is not None:
            _reject(runtime, found, host, request, incoming, exc,
                    "no webhook is set up for this project")
        raise exc
    if incoming.too_large:
        too_large = PayloadTooLarge(f"the webhook body is larger than "
                                    f"{settings.webhook_max_body_bytes} bytes")
        _reject(runtime, found, host, request, incoming, too_large)
        raise too_large
    failed = _auth_error(host, runtime.vault.decrypt(found.secret), request,
                         settings.webhook_max_age)
    if failed is None and not found.enabled:
        failed = PermissionDenied("this project's webhook is turned off in Shipyard")
    if failed is not None:
        _reject(runtime, found, host, request, incoming, failed)
        raise failed
    return _accept(runtime, found, host, request, incoming)


def _find(runtime: Runtime, space: str, project: str) -> _Hook | None:
    with runtime.sessions() as db:
        row = db.execute(
            select(Space.id, Project.id, Project.name, ProjectWebhook.secret,
                   ProjectWebhook.enabled)
            .join(Project, Project.space_id == Space.id)
            .outerjoin(ProjectWebhook, ProjectWebhook.project_id == Project.id)
            .where(Space.name == space, Project.name == project)).first()
    if row is None:
        return None
    space_id, project_id, name, secret, enabled = row
    return _Hook(space_id, project_id, name, secret, bool(enabled))


def _auth_error(host: Provider, secret: str, request: Request,
                max_age: int) -> NotAuthenticated | PermissionDenied | None:
    try:
        host.authenticate(secret, request, max_age)
    except (NotAuthenticated, PermissionDenied) as exc:
        return exc
    return None


def _delivery(found: _Hook, host: Provider, request: Request, incoming: Incoming,
              **values: Any) -> WebhookDelivery:
    return WebhookDelivery(
        space_id=found.space_id, project_id=found.project_id, provider=host.name,
        event=host.event_name(request)[:64], delivery_id=host.delivery_id(request)[:128],
        body_bytes=len(request.body), address=incoming.address, **values)


def _reject(runtime: Runtime, found: _Hook, host: Provider, request: Request,
            incoming: Incoming, exc: ShipyardError, reason: str | None = None) -> None:
    log.warning("webhook %s for %s/%s from %s refused (%s): %s", host.name, incoming.space,
                incoming.project, incoming.address, exc.status, reason or exc.message)
    keep = runtime.settings.webhook_keep_rejected
    with runtime.sessions() as db, db.begin():
        db.add(_delivery(found, host, request, incoming, status="rejected",
                         http_status=exc.status, reason=reason or exc.message))
        db.flush()
        cutoff = db.scalar(select(WebhookDelivery.id)
                           .where(WebhookDelivery.project_id == found.project_id,
                                  WebhookDelivery.status == "rejected")
                           .order_by(WebhookDelivery.id.desc()).offset(keep).limit(1))
        if cutoff is not None:
            db.execute(delete(WebhookDelivery)
                       .where(WebhookDelivery.project_id == found.project_id,
                              WebhookDelivery.status == "rejected",
                              WebhookDelivery.id <= cutoff))


def _accept(runtime: Runtime, found: _Hook, host: Provider, request: Request,
            incoming: Incoming) -> Outcome:
    key = f"{host.name}:{host.replay_key(request)}"[:160]
    try:
        parsed: GitEvent | Ignored = host.parse(request)
    except InvalidInput as exc:
        _reject(runtime, found, host, request, incoming, exc)
        raise
    facts = {"kind": parsed.kind, "ref": (parsed.ref or "")[:255] or None,
             "commit_sha": (parsed.sha or "")[:64] or None,
             "sender": (parsed.sender or "")[:200] or None}
    try:
        with runtime.sessions() as db, db.begin():
            delivery = _delivery(found, host, request, incoming, delivery_key=key,
                                 status="received", http_status=200, **facts)
            db.add(delivery)
            db.flush()
            delivery_id = delivery.id
    except IntegrityError:
        duplicate = Conflict(f"delivery {host.delivery_id(request)!r} was received before; "
                             "a delivery is processed only once")
        _reject(runtime, found, host, request, incoming, duplicate,
                "replayed: " + duplicate.message)
        raise duplicate from None
    if isinstance(parsed, Ignored):
        outcome = Outcome(delivery_id, "ignored", parsed.reason)
    else:
        try:
            outcome = _trigger(runtime, found, host, parsed, delivery_id, incoming.address)
        except Exception as exc:  # recorded, so the delivery does not stay "received"
            log.exception("webhook delivery %s failed", delivery_id)
            outcome = Outcome(delivery_id, "failed", f"internal error: {exc}")
    with runtime.sessions() as db, db.begin():
        db.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                   .values(status=outcome.status, reason=outcome.reason,
                           results=outcome.results))
    log.info("webhook %s for %s/%s: %s %s", host.name, incoming.space, incoming.project,
             outcome.status, outcome.reason or outcome.tasks)
    return outcome


def _trigger(runtime: Runtime, found: _Hook, host: Provider, event: GitEvent,
             delivery_id: int, address: str | None) -> Outcome:
    with runtime.sessions() as db:
        views = rule_views(db, found.project_id)
    candidates = [rule_matching.Rule(v.rule.name, v.rule.event, v.rule.pattern,
                                     v.environment, v.rule.action, v.rule.enabled)
                  for v in views]
    chosen = rule_matching.matching(candidates, event)
    if not chosen:
        return Outcome(delivery_id, "ignored", rule_matching.why_none(candidates, event))
    by_name = {v.rule.name: v for v in views}
    results = [_fire(runtime, found, host, event, rule, by_name[rule.name].rule.run_as_id,
                     delivery_id, address) for rule in chosen]
    task_ids = [r["task_id"] for r in results if "task_id" in r]
    errors = [f"{r['rule']}: {r['error']}" for r in results if "error" in r]
    status = "triggered" if task_ids else "failed"
    return Outcome(delivery_id, status, "; ".join(errors), task_ids, results)


def _title(host: Provider, event: GitEvent) -> str:
    text = f"{host.title} {event.summary}" + (f" by {event.sender}" if event.sender else "")
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= 200 else text[:199] + "…"


def _fire(runtime: Runtime, found: _Hook, host: Provider, event: GitEvent,
          rule: rule_matching.Rule, run_as_id: int | None, delivery_id: int,
          address: str | None) -> dict[str, Any]:
    """One rule's task: submitted (and started) through the same path as anyone's."""
    result: dict[str, Any] = {"rule": rule.name, "environment": rule.environment,
                              "action": rule.action}
    try:
        with unit_of_work(runtime, address=address) as ctx:
            user = ctx.db.get(User, run_as_id) if run_as_id is not None else None
            if user is None or not user.is_active:
                raise PermissionDenied("the rule has no active user to act as; a MASTER "
                                       "must save the rules again")
            ctx.who = accounts.load_principal(ctx, user)
            space = ctx.db.get_one(Space, found.space_id)
            try:
                spec = tasks.TaskSpec(project=found.project, environment=rule.environment,
                                      title=_title(host, event), ref=event.ref)
            except ValidationError as exc:
                raise InvalidInput(f"cannot make a task of this event: {exc}") from None
            task = tasks.submit(ctx, space, spec)
            if rule.action == "deploy" and task.state is TaskState.APPROVED:
                tasks.start(ctx, space, task.id)
            result.update(task_id=task.id, state=task.state.value, commit=task.commit_sha,
                          run_as=user.username)
            if event.kind != "tag" and event.sha and task.commit_sha and \
                    task.commit_sha != event.sha:
                result["note"] = (f"{event.ref} had moved on to {task.commit_sha[:8]} when "
                                  f"the task was made (the event named {event.sha[:8]})")
            audit.record(ctx, "webhook.trigger", "task", task.id, space_id=found.space_id,
                         after={"delivery": delivery_id, "provider": host.name,
                                "rule": rule.name, "event": event.kind, "ref": event.ref,
                                "sender": event.sender})
    except PermissionDenied as exc:
        result["error"] = f"acting as the rule's author: {exc.message}"
    except ShipyardError as exc:
        result["error"] = exc.message
    except Exception as exc:  # one rule's crash must not lose the others' tasks
        log.exception("webhook rule %s failed", rule.name)
        result["error"] = f"internal error: {exc}"
    return result
