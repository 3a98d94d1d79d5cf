"""A project's inbound webhook: its secret (shown once), its rules, and the deliveries it
received. Receiving a delivery lives in ``services/webhook_receiver.py``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shipyard.auth import rbac
from shipyard.config import Settings
from shipyard.errors import InvalidInput
from shipyard.integrations.inbound import PROVIDER_NAMES
from shipyard.integrations.rules import check_pattern
from shipyard.models import (
    Environment,
    Project,
    ProjectWebhook,
    Space,
    Target,
    User,
    WebhookDelivery,
    WebhookRule,
)
from shipyard.models.types import utcnow
from shipyard.services import audit
from shipyard.services.context import Context
from shipyard.services.pagination import Page, keyset
from shipyard.services.types import Name, as_value_error

# Where api/integrations.py mounts the receiver (under the /api/v1 prefix).
HOOK_PATH = "/api/v1/hooks"
FIELDS = ("enabled", "rotated_at", "secret")
DELIVERY_STATES = ("received", "rejected", "ignored", "triggered", "failed")
MAX_RULES = 100


class WebhookUpdate(BaseModel):
    enabled: bool = True


class RuleSpec(BaseModel):
    name: Name
    event: Literal["push", "tag", "merge"] = Field(
        description="push: a branch was pushed; tag: a tag was pushed; merge: a merge or "
                    "pull request was merged into a branch")
    pattern: str = Field(description="the branch or tag, or a glob: develop, release/*, v*")
    environment: Name = Field(description="the project's target to deploy to")
    action: Literal["deploy", "submit"] = Field(
        default="deploy", description="deploy: submit, and start at once when the target "
                                      "needs no approval; submit: submit only")
    enabled: bool = True

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        # As a ValueError, so the error names the rule (rules.<i>.pattern) and the other
        # fields' errors are reported too.
        return as_value_error(lambda: check_pattern(value))


class RulesSpec(BaseModel):
    rules: list[RuleSpec] = Field(max_length=MAX_RULES)


@dataclass
class RuleView:
    rule: WebhookRule
    environment: str
    run_as: str | None


@dataclass
class WebhookView:
    """What may be shown of a project's webhook: never the secret."""

    project: Project
    hook: ProjectWebhook | None
    urls: dict[str, str]
    secret: str | None = None  # only right after it was made


def hook_urls(settings: Settings, space: Space, project: Project) -> dict[str, str]:
    base = settings.base_url.rstrip("/")
    return {p: f"{base}{HOOK_PATH}/{p}/{space.name}/{project.name}" for p in PROVIDER_NAMES}


def _hook(ctx: Context, project: Project) -> ProjectWebhook | None:
    return ctx.db.scalar(select(ProjectWebhook).where(ProjectWebhook.project_id == project.id))


def get_webhook(ctx: Context, space: Space, project: Project) -> WebhookView:
    rbac.require(ctx.principal, "webhook.read", space.id, project.id)
    return WebhookView(project, _hook(ctx, project), hook_urls(ctx.runtime.settings, space,
                                                                project))


def _new_secret(ctx: Context, hook: ProjectWebhook) -> str:
    plain = secrets.token_urlsafe(32)
    hook.secret = ctx.runtime.vault.encrypt(plain)
    hook.rotated_at = utcnow()
    return plain


def configure(ctx: Context, space: Space, project: Project,
              update: WebhookUpdate) -> WebhookView:
    """Create the project's webhook (its secret is in the answer, this once) or turn it
    on or off."""
    rbac.require(ctx.principal, "webhook.manage", space.id, project.id)
    hook = _hook(ctx, project)
    view = WebhookView(project, hook, hook_urls(ctx.runtime.settings, space, project))
    if hook is None:
        hook = ProjectWebhook(space_id=space.id, project_id=project.id, enabled=update.enabled)
        view.secret = _new_secret(ctx, hook)
        ctx.db.add(hook)
        ctx.db.flush()
        view.hook = hook
        audit.record(ctx, "webhook.create", "project", project.name, space_id=space.id,
                     after=audit.snapshot(hook, FIELDS))
        return view
    before = audit.snapshot(hook, FIELDS)
    hook.enabled = update.enabled
    ctx.db.flush()
    audit.record(ctx, "webhook.update", "project", project.name, space_id=space.id,
                 before=before, after=audit.snapshot(hook, FIELDS))
    return view


def rotate(ctx: Context, space: Space, project: Project) -> WebhookView:
    """A new secret, in the answer this once; the old one stops working now. A project
    without a webhook gets one."""
    rbac.require(ctx.principal, "webhook.manage", space.id, project.id)
    hook = _hook(ctx, project)
    if hook is None:
        return configure(ctx, space, project, WebhookUpdate())
    view = WebhookView(project, hook, hook_urls(ctx.runtime.settings, space, project))
    view.secret = _new_secret(ctx, hook)
    ctx.db.flush()
    audit.record(ctx, "webhook.rotate", "project", project.name, space_id=space.id,
                 before={"secret": "(old)"}, after={"secret": "(new)",
                                                    "rotated_at": hook.rotated_at.isoformat()})
    return view


def reveal_secret(ctx: Context, hook: ProjectWebhook) -> str:
    """The plaintext secret, for checking deliveries only; never for an interface."""
    return ctx.runtime.vault.decrypt(hook.secret)


# -- rules ------------------------------------------------------------------------------


def list_rules(ctx: Context, space: Space, project: Project) -> list[RuleView]:
    rbac.require(ctx.principal, "webhook.read", space.id, project.id)
    return rule_views(ctx.db, project.id)


def rule_views(db: Session, project_id: int) -> list[RuleView]:
    """A project's rules in order, with their environment and author."""
    rows = db.execute(
        select(WebhookRule, Environment.name, User.username)
        .join(Target, Target.id == WebhookRule.target_id)
        .join(Environment, Environment.id == Target.environment_id)
        .outerjoin(User, User.id == WebhookRule.run_as_id)
        .where(WebhookRule.project_id == project_id)
        .order_by(WebhookRule.position, WebhookRule.id))
    return [RuleView(rule, env, user) for rule, env, user in rows]


def _describe(view: RuleView) -> dict[str, object]:
    r = view.rule
    return {"name": r.name, "event": r.event, "pattern": r.pattern,
            "environment": view.environment, "action": r.action, "enabled": r.enabled}


def replace_rules(ctx: Context, space: Space, project: Project,
                  spec: RulesSpec) -> list[RuleView]:
    """Replace the project's rules with ``spec`` (in order). Rules act as the caller: the
    tasks they create are submitted in the caller's name."""
    who = ctx.principal
    rbac.require(who, "webhook.manage", space.id, project.id)
    names = [r.name for r in spec.rules]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise InvalidInput(f"two rules are named {duplicate!r}", field="rules")
    targets = dict(ctx.db.execute(
        select(Environment.name, Target.id).join(Target, Target.environment_id ==
                                                 Environment.id)
        .where(Target.project_id == project.id)).all())
    for position, rule in enumerate(spec.rules):
        if rule.environment not in targets:
            raise InvalidInput(f"rule {rule.name!r}: {project.name!r} has no target in "
                               f"{rule.environment!r}", field=f"rules.{position}.environment")
    before = [_describe(v) for v in rule_views(ctx.db, project.id)]
    ctx.db.execute(delete(WebhookRule).where(WebhookRule.project_id == project.id))
    for position, rule in enumerate(spec.rules):
        ctx.db.add(WebhookRule(
            space_id=space.id, project_id=project.id, target_id=targets[rule.environment],
            position=position, name=rule.name, event=rule.event, pattern=rule.pattern,
            action=rule.action, enabled=rule.enabled, run_as_id=who.user_id))
    ctx.db.flush()
    views = rule_views(ctx.db, project.id)
    audit.record(ctx, "webhook.rules", "project", project.name, space_id=space.id,
                 before={"rules": before},
                 after={"rules": [_describe(v) for v in views], "run_as": who.username})
    return views


# -- deliveries -------------------------------------------------------------------------


def list_deliveries(ctx: Context, space: Space, project: Project, *,
                    status: str | None = None, cursor: int | None = None,
                    limit: int = 50) -> Page[WebhookDelivery]:
    """Newest first: what each delivery triggered, or why it was ignored or refused."""
    rbac.require(ctx.principal, "webhook.read", space.id, project.id)
    query = select(WebhookDelivery).where(WebhookDelivery.project_id == project.id)
    if status:
        if status not in DELIVERY_STATES:
            raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATES)}",
                               field="status")
        query = query.where(WebhookDelivery.status == status)
    return keyset(ctx.db, query, WebhookDelivery.id, cursor=cursor, limit=limit)
