"""The one permission table. Every endpoint names an action from ``PERMISSIONS``; the
server checks it here and nowhere else decides who may do what.

SUPER may do everything. Otherwise a caller's role is their space role, overridden for a
project by a project membership. Some actions add a condition (own task, the target's
rollback rule, no self-approval); the services apply those through the helpers below.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from shipyard.errors import PermissionDenied
from shipyard.models.tenancy import Role


class Scope(enum.Enum):
    GLOBAL = "global"    # SUPER only
    USER = "user"        # any logged-in user, about themselves
    SPACE = "space"      # decided by the space role
    PROJECT = "project"  # decided by the project role (space role unless overridden)


@dataclass(frozen=True)
class Rule:
    scope: Scope
    role: Role | None = None  # the lowest role allowed (None for GLOBAL/USER)


R, D, M, OW = Role.REPORTER, Role.DEVELOPER, Role.MASTER, Role.OWNER

PERMISSIONS: dict[str, Rule] = {
    "me": Rule(Scope.USER),
    "space.list": Rule(Scope.USER),
    "space.create": Rule(Scope.GLOBAL),
    "space.delete": Rule(Scope.GLOBAL),
    "user.manage": Rule(Scope.GLOBAL),
    "audit.global": Rule(Scope.GLOBAL),  # events outside any space: logins, users, spaces
    "space.read": Rule(Scope.SPACE, R),
    "space.update": Rule(Scope.SPACE, OW),
    "member.read": Rule(Scope.SPACE, R),
    "member.manage": Rule(Scope.SPACE, OW),
    "environment.read": Rule(Scope.SPACE, R),
    "environment.manage": Rule(Scope.SPACE, OW),
    "server.read": Rule(Scope.SPACE, R),
    "server.manage": Rule(Scope.SPACE, M),
    "credential.read": Rule(Scope.SPACE, R),
    "credential.manage": Rule(Scope.SPACE, M),
    "audit.read": Rule(Scope.SPACE, OW),
    "project.create": Rule(Scope.SPACE, M),
    "project.read": Rule(Scope.PROJECT, R),
    "project.manage": Rule(Scope.PROJECT, M),
    "project.members": Rule(Scope.SPACE, OW),
    "target.read": Rule(Scope.PROJECT, R),
    "target.manage": Rule(Scope.PROJECT, M),
    "target.check": Rule(Scope.PROJECT, M),  # connects to servers, records host keys
    "task.read": Rule(Scope.PROJECT, R),
    "task.submit": Rule(Scope.PROJECT, D),
    "task.edit": Rule(Scope.PROJECT, D),     # own pending task; MASTER+ any
    "task.cancel": Rule(Scope.PROJECT, D),   # own task; MASTER+ any
    "task.start": Rule(Scope.PROJECT, D),
    "task.approve": Rule(Scope.PROJECT, M),  # not one's own, unless the target allows
    "task.rollback": Rule(Scope.PROJECT, D), # DEVELOPER only where the target allows
    "webhook.read": Rule(Scope.PROJECT, R),  # the URL, the rules, recent deliveries
    "webhook.manage": Rule(Scope.PROJECT, M),  # secret, rules (they deploy: MASTER+)
    "channel.read": Rule(Scope.SPACE, R),    # never the URL or signing secret
    "channel.manage": Rule(Scope.SPACE, M),
    "delivery.read": Rule(Scope.SPACE, M),   # notifications and every delivery attempt
}

# Above this role a task need not be one's own to edit or cancel it.
MANAGE_OTHERS_TASKS = Role.MASTER


@dataclass
class Principal:
    """A logged-in user and their roles, loaded once per request."""

    user_id: int
    username: str
    is_super: bool
    space_roles: dict[int, Role] = field(default_factory=dict)
    # project id -> (space id, role)
    project_roles: dict[int, tuple[int, Role]] = field(default_factory=dict)

    def is_member(self, space_id: int) -> bool:
        return self.is_super or space_id in self.space_roles or any(
            sid == space_id for sid, _ in self.project_roles.values())

    def role_in(self, space_id: int, project_id: int | None = None) -> Role | None:
        """The effective role: SUPER counts as OWNER; a project role overrides."""
        if self.is_super:
            return Role.OWNER
        if project_id is not None and project_id in self.project_roles:
            return self.project_roles[project_id][1]
        return self.space_roles.get(space_id)

    def best_role_in(self, space_id: int) -> Role | None:
        """The highest role anywhere in the space: enough to pass a project action's
        route guard, before the service checks the concrete project."""
        roles = [r for sid, r in self.project_roles.values() if sid == space_id]
        own = self.role_in(space_id)
        if own is not None:
            roles.append(own)
        return max(roles) if roles else None


def rule_for(action: str) -> Rule:
    try:
        return PERMISSIONS[action]
    except KeyError:
        raise KeyError(f"no permission rule for action {action!r}") from None


def allowed(principal: Principal, action: str, space_id: int | None = None,
            project_id: int | None = None) -> bool:
    """Whether ``principal`` may do ``action`` in the space (and project, if given).

    For a PROJECT action without a project, the best role in the space decides."""
    rule = rule_for(action)
    if principal.is_super:
        return True
    if rule.scope is Scope.GLOBAL:
        return False
    if rule.scope is Scope.USER:
        return True
    if space_id is None:
        return False
    assert rule.role is not None
    if rule.scope is Scope.PROJECT and project_id is None:
        role = principal.best_role_in(space_id)
    elif rule.scope is Scope.PROJECT:
        role = principal.role_in(space_id, project_id)
    else:
        role = principal.role_in(space_id)
    return role is not None and role >= rule.role


def require(principal: Principal, action: str, space_id: int | None = None,
            project_id: int | None = None) -> None:
    if not allowed(principal, action, space_id, project_id):
        raise PermissionDenied(f"you may not do {action!r} here")


def may_manage_others_tasks(principal: Principal, space_id: int, project_id: int) -> bool:
    role = principal.role_in(space_id, project_id)
    return role is not None and role >= MANAGE_OTHERS_TASKS
