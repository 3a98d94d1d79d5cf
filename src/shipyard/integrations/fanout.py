"""From a task event to notifications: which channels of the task's target want it, and
the message each gets (for a task waiting for approval, naming those who can approve,
whose addresses email channels add). The message is rendered once, here."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.integrations.messages import TaskFacts, render
from shipyard.models import (
    Channel,
    DeployTask,
    Environment,
    Notification,
    Project,
    ProjectMember,
    Role,
    Space,
    SpaceMember,
    Target,
    User,
    target_channels,
)
from shipyard.models.types import utcnow

if TYPE_CHECKING:
    from shipyard.services.context import Runtime
    from shipyard.services.events import TaskEvent


def approvers(db: Session, task: DeployTask, allow_self: bool) -> list[tuple[str, str | None]]:
    """(username, email) of the active users whose role lets them approve ``task``: MASTER+
    in the space unless a lower project role overrides it, or MASTER+ on the project; not
    the submitter unless the target allows self-approval."""
    roles: dict[int, Role] = dict(db.execute(
        select(SpaceMember.user_id, SpaceMember.role)
        .where(SpaceMember.space_id == task.space_id)).all())
    roles.update(db.execute(select(ProjectMember.user_id, ProjectMember.role)
                            .where(ProjectMember.project_id == task.project_id)).all())
    ids = [uid for uid, role in roles.items() if role >= Role.MASTER
           and (allow_self or uid != task.submitted_by_id)]
    if not ids:
        return []
    return [(name, email) for name, email in db.execute(
        select(User.username, User.email).where(User.id.in_(ids), User.is_active)
        .order_by(User.username))]


def facts_of(db: Session, task: DeployTask,
             approver_names: list[str] | None = None) -> TaskFacts:
    project, environment, space, submitter = db.execute(
        select(Project.name, Environment.name, Space.name, User.username)
        .select_from(DeployTask)
        .join(Project, Project.id == DeployTask.project_id)
        .join(Environment, Environment.id == DeployTask.environment_id)
        .join(Space, Space.id == DeployTask.space_id)
        .join(User, User.id == DeployTask.submitted_by_id)
        .where(DeployTask.id == task.id)).one()
    return TaskFacts(task_id=task.id, space=space, project=project, environment=environment,
                     title=task.title, kind=task.kind.value, ref=task.ref,
                     commit_sha=task.commit_sha, submitted_by=submitter,
                     state=task.state.value, error=task.error,
                     reject_reason=task.reject_reason, rollback_to=task.rollback_to,
                     approvers=approver_names or [])


def fan_out(runtime: Runtime, event: TaskEvent) -> list[int]:
    """Record one pending notification per interested channel; their ids."""
    kind = event.kind.value
    with runtime.sessions() as db, db.begin():
        task = db.get(DeployTask, event.task_id)
        if task is None:
            return []
        channels = db.execute(
            select(Channel, target_channels.c.events)
            .join(target_channels, target_channels.c.channel_id == Channel.id)
            .where(target_channels.c.target_id == task.target_id, Channel.enabled)
            .order_by(Channel.name)).all()
        wanted = [c for c, events in channels
                  if kind in (events if events is not None else (c.events or [kind]))]
        if not wanted:
            return []
        people: list[tuple[str, str | None]] = []
        if kind == "submitted":
            target = db.get_one(Target, task.target_id)
            people = approvers(db, task, target.allow_self_approval)
        message = render(kind, facts_of(db, task, [name for name, _ in people]),
                         actor=event.actor, reason=event.reason,
                         base_url=runtime.settings.base_url)
        notifications = []
        for channel in wanted:
            own = message
            if channel.kind == "email" and people and \
                    (channel.config or {}).get("notify_approvers", True):
                own = replace(message, to=[email for _, email in people if email])
            notifications.append(Notification(
                space_id=task.space_id, channel_id=channel.id, channel_name=channel.name,
                task_id=task.id, event=kind, message=own.to_dict(), status="pending",
                next_attempt_at=utcnow()))
        db.add_all(notifications)
        db.flush()
        return [n.id for n in notifications]
