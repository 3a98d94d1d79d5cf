"""Forms: turn submitted fields into a service's input model, and validation failures
into messages shown next to the field at fault (keeping what was typed)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from shipyard.errors import ShipyardError

M = TypeVar("M", bound=BaseModel)


class FormErrors(dict[str, str]):
    """field -> message; ``""`` holds a message for the whole form."""

    @classmethod
    def of(cls, exc: Exception) -> FormErrors:
        errors = cls()
        if isinstance(exc, ValidationError):
            for err in exc.errors():
                loc = [str(p) for p in err.get("loc", ())]
                key = loc[0] if loc else ""
                msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
                errors.setdefault(key, msg)
        elif isinstance(exc, ShipyardError):
            errors[str(exc.details.get("field") or "").split(".")[0]] = exc.message
        else:
            raise exc
        return errors


def text(form: FormData, name: str) -> str:
    return str(form.get(name, "")).strip()


def optional(form: FormData, name: str) -> str | None:
    return text(form, name) or None


def items(raw: str) -> list[str]:
    """A textarea or comma list -> items (one per line or comma)."""
    return [item.strip() for item in raw.replace(",", "\n").splitlines() if item.strip()]


def lines(form: FormData, name: str) -> list[str]:
    return items(text(form, name))


def checked(form: FormData, name: str) -> bool:
    return form.get(name) in ("on", "true", "1", "yes")


def many(form: FormData, name: str) -> list[str]:
    return [str(v) for v in form.getlist(name) if str(v).strip()]


def keyvalues(form: FormData, name: str) -> dict[str, str]:
    """``KEY=value`` lines -> dict."""
    out: dict[str, str] = {}
    for line in text(form, name).splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate (raises ValidationError/ShipyardError; catch with FormErrors.of)."""
    return model.model_validate(data)
