"""The FastAPI application for one project: ``create_app(project_dir)``.

Pages (``routes_pages``, ``routes_admin``) are rendered on the server with Jinja2
and a little hand-written JavaScript from ``static/``; everything they do is also a
JSON endpoint under ``/api`` (``routes_api``), described at ``/openapi.json``.
Errors answer ``{"detail": "<what is wrong>"}`` on the API and a readable page elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alignloop.errors import AlignloopError, InputError
from alignloop.labeling import routes_admin, routes_api, routes_pages
from alignloop.labeling.auth import CSRF_HEADER, SESSION_COOKIE, CsrfFailed, Forbidden, NotSignedIn
from alignloop.labeling.base_app import offline_app
from alignloop.labeling.dependencies import app_path, root
from alignloop.labeling.limits import BodyLimit, TimeBudget
from alignloop.labeling.service import LabelingService
from alignloop.labeling.validation import TaskRefused

HERE = Path(__file__).parent
PROJECT_ENV = "ALIGNLOOP_PROJECT"


def _is_api(request: Request) -> bool:
    return app_path(request).startswith("/api/")


def _error_page(request: Request, status: int, message: str) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "user": getattr(request.state, "user", None)},
        status_code=status,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, _exc: NotSignedIn) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": "sign in first (POST /api/login)"}, status_code=401)
        target = app_path(request) + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"{root(request)}/login?next={target}", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": exc.message}, status_code=403)
        return _error_page(request, 403, exc.message)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, _exc: CsrfFailed) -> Response:
        message = f"missing or wrong CSRF token: send the {CSRF_HEADER} header from GET /api/me (or reload the page)"
        if _is_api(request):
            return JSONResponse({"detail": message}, status_code=403)
        return _error_page(
            request, 403, "this form expired or did not come from this site; reload the page and try again"
        )

    @app.exception_handler(TaskRefused)
    async def _refused(request: Request, exc: TaskRefused) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": exc.message}, status_code=exc.status)
        return _error_page(request, exc.status, exc.message)

    @app.exception_handler(AlignloopError)
    async def _user_error(request: Request, exc: AlignloopError) -> Response:
        status = 422 if isinstance(exc, InputError) else 400
        if _is_api(request):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return _error_page(request, status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
_CSP = (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")


class SecurityHeaders:
    """Adds browser hardening headers (a plain ASGI middleware: no per-request task overhead).

    The Content-Security-Policy allows only this site's own scripts and styles, on every response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *_HEADERS, _CSP]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(project_dir: str | Path) -> FastAPI:
    """The labeling app serving the project in ``project_dir`` (its store must exist)."""
    svc = LabelingService(project_dir)

    app = offline_app(
        f"alignloop labeling — {svc.config.name}",
        "Rank or rate model completions; every page action is an endpoint here.",
        svc.close,
    )
    app.state.service = svc
    templates = Jinja2Templates(directory=str(HERE / "templates"), context_processors=[lambda r: {"root": root(r)}])
    templates.env.globals["project_name"] = svc.config.name
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _install_error_handlers(app)
    app.include_router(routes_api.router)
    app.include_router(routes_pages.router)
    app.include_router(routes_admin.router)

    labeling = svc.config.labeling
    app.add_middleware(BodyLimit, max_bytes=labeling.max_body_kib * 1024)
    app.add_middleware(TimeBudget, seconds=labeling.request_timeout_s)
    app.add_middleware(SecurityHeaders)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``alignloop serve --workers N``): the project comes from ``$ALIGNLOOP_PROJECT``."""
    return create_app(os.environ.get(PROJECT_ENV, "."))
