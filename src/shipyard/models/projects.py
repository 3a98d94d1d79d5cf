"""Projects (a git repo and how to build it) and targets (a project in an environment)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shipyard.models.base import Base, Timestamps
from shipyard.models.inventory import Credential, Environment, Server
from shipyard.models.types import JSONValue

target_servers = Table(
    "target_servers",
    Base.metadata,
    Column("target_id", ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True),
    Column("server_id", ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True,
           index=True),
)


class Project(Timestamps, Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("space_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(500), default="")
    repo_url: Mapped[str] = mapped_column(String(500))
    credential_id: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="RESTRICT"), index=True)
    credential: Mapped[Credential | None] = relationship(lazy="joined")
    default_branch: Mapped[str] = mapped_column(String(200))
    # {"prev_deploy": str, "post_deploy": str}: run on the build host, MASTER+ only.
    hooks: Mapped[dict[str, str]] = mapped_column(JSONValue, default=dict)
    excludes: Mapped[list[str]] = mapped_column(JSONValue, default=list)
    includes: Mapped[list[str]] = mapped_column(JSONValue, default=list)
    variables: Mapped[dict[str, str]] = mapped_column(JSONValue, default=dict)


class Target(Timestamps, Base):
    """Where and how a project is released in one environment."""

    __tablename__ = "targets"
    __table_args__ = (UniqueConstraint("project_id", "environment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"),
                                          index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT"), index=True)
    project: Mapped[Project] = relationship(lazy="joined")
    environment: Mapped[Environment] = relationship(lazy="joined")
    servers: Mapped[list[Server]] = relationship(secondary=target_servers, lazy="selectin",
                                                 order_by=Server.name)
    # Servers carrying any of these labels are targets too (resolved at deploy time).
    server_labels: Mapped[list[str]] = mapped_column(JSONValue, default=list)
    webroot: Mapped[str] = mapped_column(String(1000))
    releases_dir: Mapped[str] = mapped_column(String(1000))
    keep: Mapped[int] = mapped_column(Integer, default=8)
    # {"prev_release": str, "post_release": str}: run on each server.
    hooks: Mapped[dict[str, str]] = mapped_column(JSONValue, default=dict)
    # {"batch": int | None, "pause": seconds, "on_failure": "stop" | "continue",
    #  "parallel": int}
    strategy: Mapped[dict[str, Any]] = mapped_column(JSONValue, default=dict)
    approvals_required: Mapped[int] = mapped_column(Integer, default=0)
    allow_self_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    developers_can_rollback: Mapped[bool] = mapped_column(Boolean, default=True)
    # Distributed mode: the queue (network zone) whose workers can reach these servers.
    zone: Mapped[str] = mapped_column(String(64), default="")
