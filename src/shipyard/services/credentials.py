"""Credentials: SSH keys, git tokens, passwords and other secrets. The secret is
encrypted at rest and is write-only: no reader ever gets it back."""

from __future__ import annotations

import base64
import hashlib
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import BaseModel, Field
from sqlalchemy import select

from shipyard.auth import rbac
from shipyard.errors import Conflict, InvalidInput
from shipyard.models import Credential, Project, Server, Space
from shipyard.services import audit, lookup
from shipyard.services.context import Context
from shipyard.services.errors_db import integrity
from shipyard.services.types import Name

Kind = Literal["ssh_key", "token", "password", "secret"]
FIELDS = ("name", "kind", "username", "fingerprint", "secret")


class CredentialSpec(BaseModel):
    name: Name
    kind: Kind
    username: str | None = Field(default=None, max_length=200)
    secret: str = Field(min_length=1, max_length=64_000, description="write-only",
                        json_schema_extra={"writeOnly": True})


class CredentialUpdate(BaseModel):
    username: str | None = Field(default=None, max_length=200)
    secret: str | None = Field(default=None, min_length=1, max_length=64_000,
                               json_schema_extra={"writeOnly": True})


def describe_ssh_key(private_key: str) -> tuple[str, str]:
    """(public key line, SHA256 fingerprint) of an OpenSSH/PEM private key, or
    InvalidInput if it is not one. Passphrase-protected keys are refused."""
    key: PrivateKeyTypes
    try:
        key = serialization.load_ssh_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(private_key.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidInput("secret is not an unencrypted SSH private key (OpenSSH or "
                               "PEM format)", field="secret") from exc
    try:
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
    except ValueError as exc:  # e.g. a PEM key of a kind SSH does not use (DH, X25519)
        raise InvalidInput("secret is not a kind of private key SSH can use",
                           field="secret") from exc
    blob = base64.b64decode(public.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return public.decode(), f"SHA256:{digest}"


def _set_secret(ctx: Context, cred: Credential, secret: str) -> None:
    if cred.kind == "ssh_key":
        if not secret.endswith("\n"):
            secret += "\n"
        cred.public, cred.fingerprint = describe_ssh_key(secret)
    else:
        cred.public, cred.fingerprint = None, ""
    cred.secret = ctx.runtime.vault.encrypt(secret)


def list_credentials(ctx: Context, space: Space) -> list[Credential]:
    rbac.require(ctx.principal, "credential.read", space.id)
    return list(ctx.db.scalars(select(Credential).where(Credential.space_id == space.id)
                               .order_by(Credential.name)))


def get_credential(ctx: Context, space: Space, name: str) -> Credential:
    rbac.require(ctx.principal, "credential.read", space.id)
    return lookup.named(ctx, Credential, space.id, name)


def create_credential(ctx: Context, space: Space, spec: CredentialSpec) -> Credential:
    rbac.require(ctx.principal, "credential.manage", space.id)
    cred = Credential(space_id=space.id, name=spec.name, kind=spec.kind,
                      username=spec.username)
    _set_secret(ctx, cred, spec.secret)
    with integrity(f"credential {spec.name!r}"):
        ctx.db.add(cred)
        ctx.db.flush()
    audit.record(ctx, "credential.create", "credential", cred.name, space_id=space.id,
                 after=audit.snapshot(cred, FIELDS))
    return cred


def update_credential(ctx: Context, space: Space, name: str,
                      update: CredentialUpdate) -> Credential:
    rbac.require(ctx.principal, "credential.manage", space.id)
    cred = lookup.named(ctx, Credential, space.id, name)
    before = audit.snapshot(cred, FIELDS)
    changes = update.model_dump(exclude_unset=True)
    if "username" in changes:
        cred.username = changes["username"]
    if changes.get("secret"):
        _set_secret(ctx, cred, changes["secret"])
    after = audit.snapshot(cred, FIELDS)
    if changes.get("secret"):
        before["secret"], after["secret"] = "(old)", "(new)"
    audit.record(ctx, "credential.update", "credential", cred.name, space_id=space.id,
                 before=before, after=after)
    return cred


def delete_credential(ctx: Context, space: Space, name: str) -> None:
    rbac.require(ctx.principal, "credential.manage", space.id)
    cred = lookup.named(ctx, Credential, space.id, name)
    users = [f"server {n}" for n in ctx.db.scalars(
        select(Server.name).where(Server.credential_id == cred.id).order_by(Server.name))]
    users += [f"project {n}" for n in ctx.db.scalars(
        select(Project.name).where(Project.credential_id == cred.id).order_by(Project.name))]
    if users:
        raise Conflict(f"credential {name!r} is still used by {', '.join(users)}",
                       field="name")
    audit.record(ctx, "credential.delete", "credential", cred.name, space_id=space.id,
                 before=audit.snapshot(cred, FIELDS))
    with integrity(f"credential {name!r}"):
        ctx.db.delete(cred)
        ctx.db.flush()


def reveal(ctx: Context, cred: Credential) -> str:
    """The plaintext secret, for the deploy engine only; never for an interface."""
    return ctx.runtime.vault.decrypt(cred.secret)


def credential_id(ctx: Context, space: Space, name: str | None, field: str) -> int | None:
    if name is None:
        return None
    found = ctx.db.scalar(select(Credential).where(Credential.space_id == space.id,
                                                   Credential.name == name))
    if found is None:
        raise InvalidInput(f"no credential named {name!r} in this space", field=field)
    return found.id
