"""Validated field types for the input models the services accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, Field, Strict

from shipyard.errors import InvalidInput
from shipyard.services import validation

T = TypeVar("T")


def checked(rule: Callable[..., T]) -> AfterValidator:
    """Run a validation rule inside Pydantic: its InvalidInput becomes a ValueError, so
    Pydantic records where in the input it happened (``servers.2``, ``strategy.pause``)
    and reports every error, not just the first."""

    def run(value: Any) -> T:
        try:
            return rule(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    return AfterValidator(run)


Name = Annotated[str, checked(validation.name)]
Username = Annotated[str, checked(validation.username)]
Host = Annotated[str, checked(validation.host)]
# Strict: a port is a JSON number; "22" or true are mistakes, not ports.
Port = Annotated[int, Strict(), checked(validation.port)]
UnixUser = Annotated[str, checked(validation.unix_user)]
Labels = Annotated[list[str], checked(validation.labels)]
Variables = Annotated[dict[str, str], checked(validation.variables)]
Title = Annotated[str, checked(lambda v: validation.text(v, "title", 200, allow_empty=False))]
Description = Annotated[str, Field(max_length=500)]


def as_value_error(rule: Callable[[], T]) -> T:
    """For field validators: a rule's InvalidInput as the ValueError Pydantic expects."""
    try:
        return rule()
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
