"""The labeler's pages: sign-in, invite, guidelines, and the task page.

Forms post back to these routes with a ``csrf_token`` field; the task page's
script talks to the JSON API (``/api/tasks/...``) with the ``X-CSRF-Token`` header
and reloads ``/task`` for the next task.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alignloop.errors import AlignloopError
from alignloop.labeling import accounts
from alignloop.labeling.auth import (
    SESSION_COOKIE,
    User,
    check_prelogin,
    prelogin_token,
    set_prelogin_cookie,
    set_session_cookie,
)
from alignloop.labeling.dependencies import root, service, signed_in
from alignloop.labeling.guidelines import SECTION_TITLES
from alignloop.labeling.service import LabelingService
from alignloop.labeling.validation import TaskRefused
from alignloop.store import Labeler
from alignloop.task_types import TASK_TYPES

router = APIRouter(include_in_schema=False)


def _render(request: Request, template: str, context: dict, status_code: int = 200) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(request, template, context, status_code=status_code)


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in (no open redirects)."""
    if not target:
        return "/task"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/task"
    return target


def _signed_in_redirect(request: Request, svc: LabelingService, labeler: Labeler, target: str) -> Response:
    cookie, _csrf = svc.sessions.issue(labeler, svc.db)
    response = RedirectResponse(root(request) + target, status_code=303)
    set_session_cookie(response, request, cookie)
    return response


def _csrf(request: Request, user: User) -> str:
    return request.app.state.service.sessions.csrf_token(user.session_id)


@router.get("/")
def home(request: Request) -> Response:
    return RedirectResponse(root(request) + "/task", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    token = prelogin_token(request)
    response = _render(
        request, "login.html", {"csrf_token": token, "next": _safe_next(next), "error": None, "user": None}
    )
    set_prelogin_cookie(response, request, token)
    return response


@router.post("/login")
def login_form(
    request: Request,
    name: str = Form(...),
    password: str = Form(...),
    csrf_token: str = Form(""),
    next: str = Form("/task"),
    svc: LabelingService = Depends(service),
) -> Response:
    check_prelogin(request, csrf_token)
    client = request.client.host if request.client else "unknown"
    context = {"csrf_token": csrf_token, "next": _safe_next(next), "user": None, "name": name}
    wait = svc.throttle.retry_after(client, name)
    if wait > 0:
        return _render(
            request,
            "login.html",
            {**context, "error": f"Too many failed sign-ins. Try again in {int(wait) + 1} seconds."},
            429,
        )
    labeler = accounts.authenticate(svc.read_store, name, password)
    if labeler is None:
        svc.throttle.failed(client, name)
        return _render(
            request, "login.html", {**context, "error": "Wrong name or password, or the account is deactivated."}, 401
        )
    svc.throttle.succeeded(client, name)
    return _signed_in_redirect(request, svc, labeler, _safe_next(next))


def _invite_closed(request: Request, reason: str) -> Response:
    """The page for an invite link that cannot be used: expired, already used, or not valid."""
    context = {"closed": reason, "user": None, "csrf_token": "", "token": "", "error": None, "min_length": 0}
    return _render(request, "invite.html", context, accounts.InviteRefused.STATUS[reason])


@router.get("/invite/{token}")
def invite_page(request: Request, token: str, svc: LabelingService = Depends(service)) -> Response:
    status = accounts.invite_status(svc.read_store, token)
    if status != "open":
        return _invite_closed(request, status)
    csrf = prelogin_token(request)
    response = _render(
        request,
        "invite.html",
        {
            "closed": None,
            "csrf_token": csrf,
            "token": token,
            "error": None,
            "user": None,
            "min_length": accounts.MIN_PASSWORD_LENGTH,
        },
    )
    set_prelogin_cookie(response, request, csrf)
    return response


@router.post("/invite/{token}")
def invite_form(
    request: Request,
    token: str,
    password: str = Form(...),
    password_again: str = Form(...),
    csrf_token: str = Form(""),
    svc: LabelingService = Depends(service),
) -> Response:
    check_prelogin(request, csrf_token)
    context = {
        "closed": None,
        "csrf_token": csrf_token,
        "token": token,
        "user": None,
        "min_length": accounts.MIN_PASSWORD_LENGTH,
    }
    if password != password_again:
        return _render(request, "invite.html", {**context, "error": "The two passwords differ."}, 422)
    try:
        labeler = accounts.redeem_invite(svc.store, token, password)
    except accounts.InviteRefused as exc:
        return _invite_closed(request, exc.reason)
    except AlignloopError as exc:
        return _render(request, "invite.html", {**context, "error": str(exc)}, 422)
    return _signed_in_redirect(request, svc, labeler, "/guidelines")


@router.post("/logout")
def logout(
    request: Request,
    csrf_token: str = Form(""),
    user: User = Depends(signed_in),
    svc: LabelingService = Depends(service),
) -> Response:
    svc.sessions.check_csrf(user, csrf_token)
    svc.sessions.revoke(user.session_id, svc.db)
    response = RedirectResponse(root(request) + "/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/guidelines")
def guidelines_page(
    request: Request, user: User = Depends(signed_in), svc: LabelingService = Depends(service)
) -> Response:
    current = svc.guidelines()
    return _render(
        request,
        "guidelines.html",
        {
            "user": user,
            "csrf_token": _csrf(request, user),
            "guidelines": current,
            "sections": current.rendered(),
            "titles": SECTION_TITLES,
            "must_acknowledge": user.read_guidelines_version != current.version,
            "changed": user.read_guidelines_version is not None and user.read_guidelines_version != current.version,
        },
    )


@router.post("/guidelines/acknowledge")
def acknowledge_form(
    request: Request,
    version: int = Form(...),
    csrf_token: str = Form(""),
    user: User = Depends(signed_in),
    svc: LabelingService = Depends(service),
) -> Response:
    svc.sessions.check_csrf(user, csrf_token)
    svc.acknowledge_guidelines(user, version)
    return RedirectResponse(root(request) + "/task", status_code=303)


def _seconds_left(moment: str) -> int:
    """Whole seconds from now until an ISO timestamp (the page counts down from this, not from its own clock)."""
    return max(0, int((datetime.fromisoformat(moment) - datetime.now(timezone.utc)).total_seconds()))


@router.get("/task")
def task_page(request: Request, user: User = Depends(signed_in), svc: LabelingService = Depends(service)) -> Response:
    current = svc.guidelines()
    if user.read_guidelines_version != current.version:
        return RedirectResponse(root(request) + "/guidelines", status_code=303)
    try:
        task = svc.next_task(user)
    except TaskRefused as exc:
        if exc.status == 409:  # guidelines changed between the two reads
            return RedirectResponse(root(request) + "/guidelines", status_code=303)
        raise
    return _render(
        request,
        "task.html",
        {
            "user": user,
            "csrf_token": _csrf(request, user),
            "task": task,
            "task_type": TASK_TYPES[task["task_type"]] if task else None,
            "sections": current.rendered(),
            "titles": SECTION_TITLES,
            "guidelines": current,
            "letters": "123456789",
            "lease_seconds_left": _seconds_left(task["lease_expires_at"]) if task else 0,
        },
    )
