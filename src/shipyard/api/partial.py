"""PATCH bodies: the create model with every field optional, so OpenAPI documents them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, create_model


def partial(model: type[BaseModel]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (info.annotation | None, None)  # type: ignore[operator]
        for name, info in model.model_fields.items()
    }
    return create_model(f"{model.__name__}Patch", **fields)


def changes(body: BaseModel) -> dict[str, Any]:
    """Only the fields the caller sent (nested models as they were sent)."""
    return body.model_dump(exclude_unset=True)
