"""ORM models by concept. Importing this package registers every table on ``Base``."""

from shipyard.models.access import ApiToken, BrowserSession, LoginThrottle
from shipyard.models.audit import AuditEvent
from shipyard.models.base import Base
from shipyard.models.deploys import (
    FINAL_STATES,
    Approval,
    DeployTask,
    TaskKind,
    TaskState,
)
from shipyard.models.integrations import (
    Channel,
    Notification,
    NotificationAttempt,
    ProjectWebhook,
    WebhookDelivery,
    WebhookRule,
    target_channels,
)
from shipyard.models.inventory import Credential, Environment, Server
from shipyard.models.projects import Project, Target, target_servers
from shipyard.models.releases import HostRelease, TargetLock
from shipyard.models.runs import HOST_STAGES, HostStep, LogLine, Stage, StepStatus
from shipyard.models.tenancy import ProjectMember, Role, Space, SpaceMember, User

__all__ = [
    "FINAL_STATES", "ApiToken", "Approval", "AuditEvent", "Base", "BrowserSession",
    "Credential", "DeployTask", "Environment", "LoginThrottle", "Project", "ProjectMember",
    "Role", "Server", "Space", "SpaceMember", "Target", "TaskKind", "TaskState", "User",
    "target_servers", "HOST_STAGES", "HostStep", "LogLine", "Stage", "StepStatus",
    "HostRelease", "TargetLock",
    "Channel", "Notification", "NotificationAttempt", "ProjectWebhook", "WebhookDelivery",
    "WebhookRule", "target_channels",
]
