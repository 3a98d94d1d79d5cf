"""Validated field types for the input models the services accept."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from shipyard.services import validation

Name = Annotated[str, AfterValidator(validation.name)]
Username = Annotated[str, AfterValidator(validation.username)]
Host = Annotated[str, AfterValidator(validation.host)]
Port = Annotated[int, AfterValidator(validation.port)]
UnixUser = Annotated[str, AfterValidator(validation.unix_user)]
Labels = Annotated[list[str], AfterValidator(validation.labels)]
Variables = Annotated[dict[str, str], AfterValidator(validation.variables)]
Title = Annotated[str, AfterValidator(lambda v: validation.text(v, "title", 200,
                                                                 allow_empty=False))]
Description = Annotated[str, Field(max_length=500)]
