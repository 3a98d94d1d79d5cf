"""Opaque bearer secrets: API tokens and session cookies. Only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "shp_"  # noqa: S105 - a public prefix, not a secret


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_session_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    # Tokens carry 256 bits of entropy, so a fast hash is enough (unlike passwords).
    return hashlib.sha256(secret.encode()).hexdigest()
