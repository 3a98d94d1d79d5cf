"""Shipyard's one error tree.

Services and the deploy engine raise these; only the interfaces (``api/``, ``web/``,
``cli/``) turn them into HTTP statuses or exit codes. Library errors (SQLAlchemy,
subprocess, ssh) are mapped at the adapter edge with ``raise ... from exc``.

    ShipyardError                     500  internal
    ├── InvalidInput                  422  invalid      (carries ``field``)
    ├── NotAuthenticated              401  not_authenticated
    ├── RateLimited                   429  rate_limited (carries ``retry_after``)
    ├── PermissionDenied              403  forbidden
    ├── NotFound                      404  not_found
    ├── Conflict                      409  conflict
    │   ├── AlreadyExists             409  already_exists
    │   └── StateConflict             409  state_conflict (a compare-and-set lost)
    ├── PayloadTooLarge               413  payload_too_large
    └── DeployError                   500  deploy_failed (carries per-host results)
        ├── GitError                       git_failed
        ├── BuildError                     build_failed
        └── RemoteError                    remote_failed (host, stage, exit code, output)

The class docstring is the default message; ``code`` is the stable machine-readable code.
"""

from __future__ import annotations

from typing import Any


class ShipyardError(Exception):
    """Something went wrong inside Shipyard."""

    code = "internal"
    status = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update({k: v for k, v in self.details.items() if v is not None})
        return body


class InvalidInput(ShipyardError):
    """The input is not valid."""

    code = "invalid"
    status = 422

    def __init__(self, message: str | None = None, *, field: str | None = None, **details: Any):
        super().__init__(message, field=field, **details)
        self.field = field


class NotAuthenticated(ShipyardError):
    """Log in first."""

    code = "not_authenticated"
    status = 401


class RateLimited(ShipyardError):
    """Too many attempts; try again later."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str | None = None, *, retry_after: int = 60):
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class PermissionDenied(ShipyardError):
    """You are not allowed to do that."""

    code = "forbidden"
    status = 403


class NotFound(ShipyardError):
    """No such object."""

    code = "not_found"
    status = 404


class Conflict(ShipyardError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409


class AlreadyExists(Conflict):
    """An object with that name already exists."""

    code = "already_exists"


class StateConflict(Conflict):
    """The object changed state meanwhile; reload and try again."""

    code = "state_conflict"


class PayloadTooLarge(ShipyardError):
    """The request body is too large."""

    code = "payload_too_large"
    status = 413


class DeployError(ShipyardError):
    """The deploy failed."""

    code = "deploy_failed"


class GitError(DeployError):
    """A git operation failed."""

    code = "git_failed"


class BuildError(DeployError):
    """The build failed."""

    code = "build_failed"


class RemoteError(DeployError):
    """A command on a target host failed."""

    code = "remote_failed"
