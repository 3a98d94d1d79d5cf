"""What a space deploys onto: environments, servers, and the credentials to reach them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shipyard.models.base import Base, Timestamps
from shipyard.models.types import JSONValue, UTCDateTime


class Environment(Timestamps, Base):
    """A named stage (dev < test < staging < prod); ``position`` orders them."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("space_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Credential(Timestamps, Base):
    """A secret (SSH key, git token, password). ``secret`` is encrypted at rest and never
    leaves the server; ``public`` holds what may be shown (a public key, a username)."""

    __tablename__ = "credentials"
    __table_args__ = (UniqueConstraint("space_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    username: Mapped[str | None] = mapped_column(String(200))
    public: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(64), default="")


class Server(Timestamps, Base):
    __tablename__ = "servers"
    __table_args__ = (UniqueConstraint("space_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=22)
    user: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[str]] = mapped_column(JSONValue, default=list)
    credential_id: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="RESTRICT"), index=True)
    credential: Mapped[Credential | None] = relationship(lazy="joined")
    host_key: Mapped[str | None] = mapped_column(Text)
    host_key_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
