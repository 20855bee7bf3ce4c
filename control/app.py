"""The FastAPI application of the control service: routes, errors as ``application/problem+json``, headers.

Errors are RFC 9457 problems with a human ``detail`` and never a stack trace: a typed
``control.problems`` error gets its status from ``http_status``; FastAPI's own validation errors are 422
with the field path; anything unexpected is a 500 with an ``error_id`` that points at the server log.
"""

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.secrets import redact
from control.hub import note_write
from control.problems import ControlError, http_status
from control.routes import ROUTERS
from control.routes.system import STATIC
from control.schemas import Problem

PROBLEM = "application/problem+json"
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
          409: "Conflict", 422: "Unprocessable Content", 500: "Internal Server Error", 503: "Service Unavailable"}
ERROR_CODES = (400, 401, 403, 404, 409, 422, 503)

log = logging.getLogger("mmats.api")


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": redact(detail),
            **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class _ProblemFastAPI(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """Error responses are application/problem+json, including FastAPI's own 422."""
        if self.openapi_schema:
            return self.openapi_schema
        schema = get_openapi(title=self.title, version=self.version, summary=self.summary,
                             description=self.description, routes=self.routes)
        for path_item in schema.get("paths", {}).values():
            for op in path_item.values():
                for code, resp in op.get("responses", {}).items():
                    if code.isdigit() and int(code) >= 400:
                        resp["content"] = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        comps = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            comps.pop(name, None)
        self.openapi_schema = schema
        return schema


class ProblemMiddleware:
    """Last line: an unexpected exception becomes a 500 problem with an error id, never a stack trace.
    It also counts mutations (the status snapshot is not served across one) and sets hardening headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        if scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
            note_write()

        async def wrapped(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        except Exception as exc:
            if started:
                raise
            error_id = uuid.uuid4().hex[:12]
            log.error("internal error %s on %s %s: %s", error_id, scope.get("method"), scope.get("path"),
                      redact(f"{type(exc).__name__}: {exc}"))
            resp = problem(500, "internal error: the request could not be completed (see the server log)",
                           error_id=error_id)
            await resp(scope, receive, send)


async def _control_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ControlError)
    return problem(http_status(exc), exc.detail, exc.headers, **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": ".".join(str(x) for x in e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    first = errors[0] if errors else {"loc": "request", "msg": "invalid"}
    return problem(422, f"{first['loc']}: {first['msg']}", errors=errors)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such endpoint: see /docs for the API"
    return problem(exc.status_code, detail, dict(exc.headers or {}))


def create_app() -> FastAPI:
    app = _ProblemFastAPI(
        title="MMATS control API",
        version="1.0",
        summary="Control plane of the Multi-Market Automated Trading System",
        description="Everything the CLI does, over HTTP. Mutating endpoints need `Authorization: Bearer <token>`; "
                    "when the server is bound to a non-loopback address every endpoint does. Errors are "
                    "`application/problem+json`. Lists are paginated with `offset`/`limit`. See docs/http-api.md.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        responses={code: {"model": Problem, "description": TITLES[code]} for code in ERROR_CODES},
    )
    app.add_exception_handler(ControlError, _control_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(ProblemMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


fastapi_app = create_app()
