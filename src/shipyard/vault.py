"""Secrets at rest: encrypted with Fernet (AES-128-CBC + HMAC) under ``SHIPYARD_SECRET_KEY``."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from shipyard.errors import ShipyardError


class Vault:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise ShipyardError("SHIPYARD_SECRET_KEY is not a valid Fernet key "
                                "(32 url-safe base64-encoded bytes)") from exc

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise ShipyardError("a stored secret cannot be decrypted: was "
                                "SHIPYARD_SECRET_KEY changed?") from exc
