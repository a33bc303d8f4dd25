"""The admin pages: progress and labeler quality, labelers, guideline editor, exports.

Every page here requires an admin session; a labeler gets 403. Downloads link to
the ``/api/admin/export/...`` endpoints.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from alignloop.errors import AlignloopError
from alignloop.labeling import accounts
from alignloop.labeling.auth import User
from alignloop.labeling.dependencies import admin, service
from alignloop.labeling.exports import quality_chart_html, quality_report
from alignloop.labeling.guidelines import SECTION_TITLES, SECTIONS, Guidelines
from alignloop.labeling.service import LabelingService
from alignloop.pairs.formats import FORMATS
from alignloop.task_types import TASK_TYPES

router = APIRouter(prefix="/admin", include_in_schema=False)


def _render(request: Request, template: str, user: User, context: dict, status_code: int = 200) -> HTMLResponse:
    csrf = request.app.state.service.sessions.csrf_token(user.session_id)
    return request.app.state.templates.TemplateResponse(
        request, template, {"user": user, "csrf_token": csrf, **context}, status_code=status_code
    )


@router.get("")
def dashboard(request: Request, user: User = Depends(admin), svc: LabelingService = Depends(service)) -> Response:
    quality = quality_report(svc)
    chart = quality_chart_html(quality["labelers"]) if quality.get("available") and quality.get("labelers") else None
    context = {
        "progress": svc.progress(),
        "quality": quality,
        "chart": chart,
        "task_type": TASK_TYPES[svc.rules.task_type],
    }
    return _render(request, "admin.html", user, context)


def admin_form(
    csrf_token: str = Form(""), user: User = Depends(admin), svc: LabelingService = Depends(service)
) -> User:
    """The admin posting a form, once the form's CSRF token matched their session."""
    svc.sessions.check_csrf(user, csrf_token)
    return user


def _labelers_page(request: Request, user: User, svc: LabelingService, **extra: object) -> HTMLResponse:
    status = extra.pop("status_code", 200)
    context = {"labelers": svc.progress()["labelers"], "invite_url": None, "invited_name": None, "error": None, **extra}
    return _render(request, "admin_labelers.html", user, context, status)


@router.get("/labelers")
def labelers_page(request: Request, user: User = Depends(admin), svc: LabelingService = Depends(service)) -> Response:
    return _labelers_page(request, user, svc)


@router.post("/labelers")
def invite_form(
    request: Request,
    name: str = Form(...),
    role: str = Form("labeler"),
    user: User = Depends(admin_form),
    svc: LabelingService = Depends(service),
) -> Response:
    try:
        token = svc.invite(name, admin=role == "admin")
    except AlignloopError as exc:
        return _labelers_page(request, user, svc, error=str(exc), status_code=422)
    url = accounts.invite_url(str(request.base_url), token)
    return _labelers_page(request, user, svc, invite_url=url, invited_name=name.strip())


# The account's name travels in the form body, never in the path: a name such as ``%62ob`` or ``..``
# would be decoded or normalised on its way through a URL.
@router.post("/labelers/deactivate")
def deactivate_form(
    request: Request,
    name: str = Form(...),
    user: User = Depends(admin_form),
    svc: LabelingService = Depends(service),
) -> Response:
    try:
        svc.deactivate(name, by=user)
    except AlignloopError as exc:
        return _labelers_page(request, user, svc, error=str(exc), status_code=422)
    return _labelers_page(request, user, svc)


@router.post("/labelers/reactivate")
def reactivate_form(
    request: Request,
    name: str = Form(...),
    user: User = Depends(admin_form),
    svc: LabelingService = Depends(service),
) -> Response:
    svc.reactivate(name)
    return _labelers_page(request, user, svc)


@router.post("/labelers/reinvite")
def reinvite_form(
    request: Request,
    name: str = Form(...),
    user: User = Depends(admin_form),
    svc: LabelingService = Depends(service),
) -> Response:
    token = svc.reinvite(name)
    return _labelers_page(
        request, user, svc, invite_url=accounts.invite_url(str(request.base_url), token), invited_name=name
    )


@router.get("/guidelines")
def guidelines_editor(
    request: Request, user: User = Depends(admin), svc: LabelingService = Depends(service)
) -> Response:
    history = svc.guideline_history()
    return _guidelines_page(request, user, history[0] if history else svc.guidelines(), history)


@router.post("/guidelines")
def publish_guidelines(
    request: Request,
    task: str = Form(""),
    instructions: str = Form(""),
    edge_cases: str = Form(""),
    unusable: str = Form(""),
    user: User = Depends(admin_form),
    svc: LabelingService = Depends(service),
) -> Response:
    sections = {"task": task, "instructions": instructions, "edge_cases": edge_cases, "unusable": unusable}
    error = None
    try:
        svc.edit_guidelines(user, sections)
    except AlignloopError as exc:
        error = str(exc)
    history = svc.guideline_history()
    current = history[0]
    if error:  # keep what the admin typed
        current = type(current)(**{**vars(current), **sections})
    return _guidelines_page(request, user, current, history, error)


def _guidelines_page(
    request: Request, user: User, current: Guidelines, history: list[Guidelines], error: str | None = None
) -> HTMLResponse:
    """The guideline editor filled with ``current`` above the ``history``; 422 with the ``error`` of a refused edit."""
    context = {"current": current, "history": history, "sections": SECTIONS, "titles": SECTION_TITLES, "error": error}
    return _render(request, "admin_guidelines.html", user, context, 422 if error else 200)


@router.get("/export")
def export_page(request: Request, user: User = Depends(admin), svc: LabelingService = Depends(service)) -> Response:
    return _render(request, "admin_export.html", user, {"formats": FORMATS.entries()})
