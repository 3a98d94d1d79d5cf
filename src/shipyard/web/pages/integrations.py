"""Integrations in the browser: a project's webhook (the URLs to paste into the git host,
its secret shown once, the rules, recent deliveries), a space's notification channels,
which channels each target uses, and the record of notifications with every delivery
attempt. The services check every permission; ``can()`` only hides buttons."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, get_args

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from shipyard.auth import rbac
from shipyard.errors import Conflict, InvalidInput, NotFound, ShipyardError
from shipyard.integrations.inbound import PROVIDER_NAMES
from shipyard.models import Project
from shipyard.models.types import utcnow
from shipyard.services import notifications, targets, webhooks
from shipyard.services.notifications import (
    ChannelSpec,
    ChannelUpdate,
    ChannelView,
    TargetChannels,
)
from shipyard.services.webhooks import RulesSpec, RuleView, WebhookUpdate
from shipyard.web import forms
from shipyard.web.session import Form, Page, PageCall

router = APIRouter(include_in_schema=False)

# Errors a form shows next to its fields; anything else (403, 404) is an error page.
FORM_ERRORS = (ValidationError, InvalidInput, Conflict)
PROJECT = "/s/{space}/projects/{project}"
KINDS = get_args(notifications.Kind)
RULE_TEXT = ("name", "event", "pattern", "environment", "action")
_RULE_ROW = re.compile(r"rule-(\d+)-name$")
DELIVERIES_PER_PAGE = 25
# While a notification this recent is still on its way, its page reloads itself.
FOLLOW_FOR = timedelta(minutes=2)


def _project(page: PageCall) -> Project:
    assert page.project is not None
    return page.project


# -- a project's webhook -------------------------------------------------------------------

def _row_of(view: RuleView) -> dict[str, Any]:
    r = view.rule
    return {"name": r.name, "event": r.event, "pattern": r.pattern,
            "environment": view.environment, "action": r.action, "enabled": r.enabled,
            "run_as": view.run_as}


def _webhook_page(page: PageCall, *, secret: str | None = None,
                  rows: list[dict[str, Any]] | None = None,
                  row_errors: dict[int, dict[str, str]] | None = None,
                  rule_errors: dict[str, str] | None = None, edited: bool = False,
                  status: int = 200, delivery_status: str | None = None,
                  cursor: int | None = None) -> Response:
    project = _project(page)
    view = webhooks.get_webhook(page.ctx, page.in_space, project)
    if rows is None:
        rows = [_row_of(v) for v in webhooks.list_rules(page.ctx, page.in_space, project)]
    deliveries = webhooks.list_deliveries(page.ctx, page.in_space, project,
                                          status=delivery_status, cursor=cursor,
                                          limit=DELIVERIES_PER_PAGE)
    response = page.render(
        "pages/webhook.html", status=status, project=project, view=view, secret=secret,
        providers=PROVIDER_NAMES, rows=rows, row_errors=row_errors or {},
        rule_errors=rule_errors or {}, edited=edited,
        environments=[t.environment.name for t in targets.list_targets(page.ctx, project)],
        deliveries=deliveries.items, delivery_status=delivery_status or "",
        delivery_states=webhooks.DELIVERY_STATES,
        next_url=page.next_url(deliveries.next_cursor))
    if secret:
        response.headers["Cache-Control"] = "no-store"  # shown once: keep it out of caches
    return response


@router.get(PROJECT + "/webhook")
def webhook_show(space: str, project: str, page: Page, status: str | None = None,
                 cursor: int | None = None) -> Response:
    return _webhook_page(page, delivery_status=status or None, cursor=cursor)


@router.post(PROJECT + "/webhook")
def webhook_configure(space: str, project: str, page: Page, form: Form) -> Response:
    """Set the webhook up (the answer shows its secret, this once) or turn it on or off."""
    enabled = forms.text(form, "enabled") != "false"
    view = webhooks.configure(page.ctx, page.in_space, _project(page),
                              WebhookUpdate(enabled=enabled))
    if view.secret:
        return _webhook_page(page, secret=view.secret)
    return page.redirect(f"/s/{space}/projects/{project}/webhook",
                         flash="Webhook turned on." if enabled else "Webhook turned off.")


@router.post(PROJECT + "/webhook/rotate")
def webhook_rotate(space: str, project: str, page: Page) -> Response:
    view = webhooks.rotate(page.ctx, page.in_space, _project(page))
    return _webhook_page(page, secret=view.secret)


def _rule_rows(form: FormData) -> list[dict[str, Any]]:
    """The editor's rows in the order shown (their inputs are named ``rule-<i>-<field>``)."""
    indexes = sorted({int(m.group(1)) for key in form if (m := _RULE_ROW.match(key))})
    return [{**{f: forms.text(form, f"rule-{i}-{f}") for f in RULE_TEXT},
             "enabled": forms.checked(form, f"rule-{i}-enabled")}
            for i in indexes[:webhooks.MAX_RULES + 1]]


def _new_row(rows: list[dict[str, Any]], environments: list[str]) -> dict[str, Any]:
    taken = {r["name"] for r in rows}
    name = next(f"rule-{n}" for n in range(1, len(rows) + 2) if f"rule-{n}" not in taken)
    return {"name": name, "event": "push", "pattern": "",
            "environment": environments[0] if environments else "", "action": "deploy",
            "enabled": True}


def _edit_rows(rows: list[dict[str, Any]], op: str,
               environments: list[str]) -> list[dict[str, Any]]:
    """Add, remove or move a row in the editor (nothing is saved until "Save rules")."""
    verb, _, index = op.partition("-")
    i = int(index) if index.isdigit() else -1
    if verb == "add":
        rows.append(_new_row(rows, environments))
    elif verb == "remove" and 0 <= i < len(rows):
        del rows[i]
    elif verb in ("up", "down"):
        j = i - 1 if verb == "up" else i + 1
        if 0 <= i < len(rows) and 0 <= j < len(rows):
            rows[i], rows[j] = rows[j], rows[i]
    return rows


def _rule_errors(exc: Exception) -> tuple[dict[int, dict[str, str]], dict[str, str]]:
    """A save's error next to the row and field at fault (``rules.<i>.<field>``), else for
    the whole list."""
    located: list[tuple[list[str], str]] = []
    if isinstance(exc, ValidationError):
        located = [([str(p) for p in e.get("loc", ())],
                    str(e.get("msg", "invalid")).removeprefix("Value error, "))
                   for e in exc.errors()]
    elif isinstance(exc, ShipyardError):
        located = [(str(exc.details.get("field") or "").split("."), exc.message)]
    rows: dict[int, dict[str, str]] = {}
    whole: dict[str, str] = {}
    for loc, message in located:
        if len(loc) >= 3 and loc[0] == "rules" and loc[1].isdigit():
            rows.setdefault(int(loc[1]), {}).setdefault(loc[2], message)
        else:
            whole.setdefault("", message)
    return rows, whole


@router.post(PROJECT + "/webhook/rules")
def webhook_rules(space: str, project: str, page: Page, form: Form) -> Response:
    found = _project(page)
    # Editing the list is a step towards saving it: only for those who may save it.
    rbac.require(page.ctx.principal, "webhook.manage", page.in_space.id, found.id)
    rows = _rule_rows(form)
    op = forms.text(form, "op") or "save"
    if op != "save":
        environments = [t.environment.name for t in targets.list_targets(page.ctx, found)]
        return _webhook_page(page, rows=_edit_rows(rows, op, environments), edited=True)
    try:
        with page.ctx.db.begin_nested():
            webhooks.replace_rules(page.ctx, page.in_space, found,
                                   forms.parse(RulesSpec, {"rules": rows}))
    except FORM_ERRORS as exc:
        row_errors, whole = _rule_errors(exc)
        return _webhook_page(page, rows=rows, row_errors=row_errors, rule_errors=whole,
                             edited=True, status=422)
    return page.redirect(f"/s/{space}/projects/{project}/webhook", flash="Rules saved.")


# -- a space's channels --------------------------------------------------------------------

def _channel(page: PageCall, name: str) -> ChannelView:
    found = next((v for v in notifications.list_channels(page.ctx, page.in_space)
                  if v.channel.name == name), None)
    if found is None:
        raise NotFound(f"no channel named {name!r} in this space")
    return found


def _channel_values(form: FormData) -> dict[str, Any]:
    """What may be shown again: never the URL or the signing secret."""
    return {"name": forms.text(form, "name"), "kind": forms.text(form, "kind"),
            "to": forms.text(form, "to"),
            "notify_approvers": forms.checked(form, "notify_approvers"),
            "events": forms.many(form, "events"), "enabled": forms.checked(form, "enabled")}


def _channel_form(page: PageCall, *, channel: ChannelView | None, values: dict[str, Any],
                  errors: dict[str, str], status: int = 200) -> Response:
    rbac.require(page.ctx.principal, "channel.manage", page.in_space.id)
    assert "url" not in values and "secret" not in values  # write-only
    return page.render("pages/channel_form.html", status=status, channel=channel,
                       values=values, errors=errors, kinds=KINDS,
                       events=notifications.EVENTS)


@router.get("/s/{space}/channels")
def channel_list(space: str, page: Page) -> Response:
    return page.render("pages/channels.html",
                       channels=notifications.list_channels(page.ctx, page.in_space))


@router.get("/s/{space}/channels/new")
def channel_new(space: str, page: Page) -> Response:
    return _channel_form(page, channel=None, errors={}, values={
        "kind": "dingtalk", "notify_approvers": True, "events": [], "enabled": True})


@router.post("/s/{space}/channels/new")
def channel_create(space: str, page: Page, form: Form) -> Response:
    values = _channel_values(form)
    try:
        with page.ctx.db.begin_nested():
            notifications.create_channel(page.ctx, page.in_space, forms.parse(ChannelSpec, {
                **values, "url": forms.optional(form, "url"),
                "secret": forms.optional(form, "secret"), "to": forms.items(values["to"]),
                "events": values["events"] or None}))
    except FORM_ERRORS as exc:
        return _channel_form(page, channel=None, values=values,
                             errors=forms.FormErrors.of(exc), status=422)
    return page.redirect(f"/s/{space}/channels", flash="Channel added.")


@router.get("/s/{space}/channels/{name}")
def channel_edit(space: str, name: str, page: Page) -> Response:
    view = _channel(page, name)
    c = view.channel
    config = c.config or {}
    return _channel_form(page, channel=view, errors={}, values={
        "to": "\n".join(config.get("to") or []),
        "notify_approvers": bool(config.get("notify_approvers", True)),
        "events": list(c.events or []), "enabled": c.enabled})


@router.post("/s/{space}/channels/{name}")
def channel_update(space: str, name: str, page: Page, form: Form) -> Response:
    view = _channel(page, name)
    values = _channel_values(form)
    # Empty URL and secret fields keep what is stored; a tick removes the secret.
    changes: dict[str, Any] = {"url": forms.optional(form, "url"),
                               "secret": "" if forms.checked(form, "remove_secret")
                               else forms.optional(form, "secret"),
                               "events": values["events"] or None,
                               "enabled": values["enabled"]}
    if view.channel.kind == "email":
        changes.update(to=forms.items(values["to"]),
                       notify_approvers=values["notify_approvers"])
    try:
        with page.ctx.db.begin_nested():
            notifications.update_channel(page.ctx, page.in_space, name,
                                         forms.parse(ChannelUpdate, changes))
    except FORM_ERRORS as exc:
        return _channel_form(page, channel=view, values=values,
                             errors=forms.FormErrors.of(exc), status=422)
    return page.redirect(f"/s/{space}/channels", flash="Channel saved.")


@router.post("/s/{space}/channels/{name}/delete")
def channel_delete(space: str, name: str, page: Page) -> Response:
    notifications.delete_channel(page.ctx, page.in_space, name)
    return page.redirect(f"/s/{space}/channels", flash="Channel deleted.")


@router.post("/s/{space}/channels/{name}/test")
def channel_test(space: str, name: str, page: Page) -> Response:
    """Queue a test message and follow it on the notifications page."""
    notifications.send_test(page.ctx, page.in_space, name)
    return page.redirect(f"/s/{space}/notifications?channel={name}",
                         flash="Test message queued: its delivery shows below.")


# -- which channels a target uses ----------------------------------------------------------

def _target_channels_page(page: PageCall, environment: str, *,
                          chosen: dict[str, list[str] | None] | None = None,
                          errors: dict[str, str] | None = None, status: int = 200) -> Response:
    project = _project(page)
    if chosen is None:
        chosen = {c.name: events for c, events in
                  notifications.target_channel_list(page.ctx, project, environment)}
    target = targets.get_target(page.ctx, project, environment)
    return page.render("pages/target_channels.html", status=status, project=project,
                       target=target, chosen=chosen, errors=errors or {},
                       channels=notifications.list_channels(page.ctx, page.in_space),
                       events=notifications.EVENTS)


@router.get(PROJECT + "/targets/{environment}/channels")
def target_channels_show(space: str, project: str, environment: str, page: Page) -> Response:
    return _target_channels_page(page, environment)


@router.post(PROJECT + "/targets/{environment}/channels")
def target_channels_save(space: str, project: str, environment: str, page: Page,
                         form: Form) -> Response:
    # No event ticked for a channel: the channel's own events.
    chosen = {name: forms.many(form, f"events-{name}") or None
              for name in forms.many(form, "channel")}
    try:
        with page.ctx.db.begin_nested():
            notifications.set_target_channels(
                page.ctx, page.in_space, _project(page), environment,
                forms.parse(TargetChannels, {"channels": [
                    {"name": name, "events": events} for name, events in chosen.items()]}))
    except FORM_ERRORS as exc:
        return _target_channels_page(page, environment, chosen=chosen,
                                     errors=forms.FormErrors.of(exc), status=422)
    return page.redirect(f"/s/{space}/projects/{project}/targets/{environment}/channels",
                         flash="Notification channels saved.")


# -- the record of notifications (MASTER+) -------------------------------------------------

@router.get("/s/{space}/notifications")
def notification_list(space: str, page: Page, channel: str | None = None,
                      status: str | None = None, task: int | None = None,
                      cursor: int | None = None) -> Response:
    filters = {"channel": (channel or "").strip(), "status": (status or "").strip(),
               "task": str(task) if task is not None else ""}
    result = notifications.list_notifications(
        page.ctx, page.in_space, channel=filters["channel"] or None,
        status=filters["status"] or None, task_id=task, cursor=cursor, limit=30)
    recent = utcnow() - FOLLOW_FOR
    follow = cursor is None and any(
        v.notification.status in ("pending", "sending") and v.notification.created_at > recent
        for v in result.items)
    return page.render("pages/notifications.html", items=result.items, filters=filters,
                       states=notifications.STATES, follow=follow,
                       channels=notifications.list_channels(page.ctx, page.in_space),
                       next_url=page.next_url(result.next_cursor))
