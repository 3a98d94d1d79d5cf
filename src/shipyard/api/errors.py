"""Map the error tree (and validation errors) to JSON responses with stable codes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from shipyard.errors import RateLimited, ShipyardError


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def validation_body(errors: list[Any]) -> dict[str, Any]:
    details = [{"field": _field(tuple(e.get("loc", ()))),
                "message": str(e.get("msg", "")).removeprefix("Value error, ")}
               for e in errors]
    first = details[0] if details else {"field": "body", "message": "invalid"}
    return {"code": "invalid", "message": f"{first['field']}: {first['message']}",
            "field": first["field"], "errors": details}


def _is_page(request: Request) -> bool:
    """Browser pages get HTML errors (or a login redirect); API callers get JSON."""
    path = request.url.path
    return not (path.startswith("/api/") or path.startswith("/static/")
                or path in ("/openapi.json", "/healthz"))


def install(app: FastAPI) -> None:
    from shipyard.web.session import error_page

    @app.exception_handler(ShipyardError)
    async def _shipyard(request: Request, exc: ShipyardError) -> Response:
        if _is_page(request):
            return error_page(request, exc.status, exc.message)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(list(exc.errors())), status_code=422)

    @app.exception_handler(ValidationError)
    async def _model(_: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse(validation_body(list(exc.errors())), status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if _is_page(request):
            return error_page(request, exc.status_code, str(exc.detail))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"code": code, "message": str(exc.detail)},
                            status_code=exc.status_code)
