"""The JSON API under ``/api``: everything the pages do, for scripts and simulated labelers.

Authentication: ``POST /api/login`` (or ``/api/invite/accept``) sets the session
cookie and returns a ``csrf_token``; every later POST must send it in the
``X-CSRF-Token`` header. Without a session every endpoint but those two answers 401;
a labeler calling an admin endpoint gets 403. Errors are ``{"detail": "..."}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, create_model

from alignloop.labeling import accounts
from alignloop.labeling.auth import SESSION_COOKIE, User, set_session_cookie
from alignloop.labeling.dependencies import admin, admin_csrf, service, signed_in, signed_in_csrf
from alignloop.labeling.exports import export_pairs_rows, jsonl_stream, quality_report
from alignloop.labeling.service import LabelingService
from alignloop.labeling.validation import Submission
from alignloop.pairs.formats import FORMATS
from alignloop.task_types import TASK_TYPES

if TYPE_CHECKING:
    from alignloop.store import Labeler

router = APIRouter(prefix="/api", tags=["api"])

PairsFormatName = FORMATS.literal()  # every registered pairs format, so the schema lists them

NextTask = Annotated[
    bool,
    Query(
        alias="next",
        description="Also take your next task; the response carries it as `next_task` (null when none is left).",
    ),
]


class Acknowledgement(BaseModel):
    version: int = Field(description="The guideline version read (must be the current one).")


class JudgementExtras(BaseModel):
    unusable: dict[int, Literal["harmful", "nonsense", "pii"]] | None = Field(
        None, description="Completion id → why it is unusable."
    )
    comment: str | None = Field(None, description="Free-text note for the reviewers.")
    seconds_spent: float | None = Field(
        None, description="Time spent on the task, in seconds (default: since the task was handed out)."
    )
    idempotency_key: str | None = Field(
        None, description="Client-chosen key; retrying with the same key stores the judgement once."
    )


class SkipBody(BaseModel):
    reason: str = Field(description="Why the task is skipped.")
    idempotency_key: str | None = Field(None, description="Client-chosen key; a retry stores the skip once.")


class NewLabeler(BaseModel):
    name: str = Field(description="Account name (no spaces).")
    admin: bool = Field(False, description="Make the account an admin.")


class GuidelineSections(BaseModel):
    task: str = Field(description="The overall task and criterion (Markdown).")
    instructions: str = Field(description="Detailed instructions (Markdown).")
    edge_cases: str = Field(description="Edge cases (Markdown).")
    unusable: str = Field(description="What to do with an unusable answer (Markdown).")


def _session_response(request: Request, svc: LabelingService, labeler: Labeler) -> JSONResponse:
    cookie, csrf = svc.sessions.issue(labeler, svc.db)
    response = JSONResponse({"name": labeler.name, "role": labeler.role, "csrf_token": csrf})
    set_session_cookie(response, request, cookie)
    return response


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/login", summary="Sign in; returns the CSRF token for later calls")
def login(body: accounts.Credentials, request: Request, svc: LabelingService = Depends(service)) -> JSONResponse:
    client = _client_address(request)
    wait = svc.throttle.retry_after(client, body.name)
    if wait > 0:
        return JSONResponse(
            {"detail": f"too many failed sign-ins; try again in {int(wait) + 1} s"},
            status_code=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    labeler = accounts.authenticate(svc.read_store, body.name, body.password)
    if labeler is None:
        svc.throttle.failed(client, body.name)
        return JSONResponse({"detail": "wrong name or password, or the account is deactivated"}, status_code=401)
    svc.throttle.succeeded(client, body.name)
    return _session_response(request, svc, labeler)


@router.post("/invite/accept", summary="Redeem an invite: set the password and sign in")
def accept_invite(
    body: accounts.InviteAcceptance, request: Request, svc: LabelingService = Depends(service)
) -> JSONResponse:
    try:
        labeler = accounts.redeem_invite(svc.store, accounts.invite_token_from(body.token), body.password)
    except accounts.InviteRefused as exc:
        return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=exc.status)
    return _session_response(request, svc, labeler)


@router.post("/logout", summary="End the session")
def logout(user: User = Depends(signed_in_csrf), svc: LabelingService = Depends(service)) -> JSONResponse:
    svc.sessions.revoke(user.session_id, svc.db)
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", summary="The signed-in account, its CSRF token and guideline status")
def me(user: User = Depends(signed_in), svc: LabelingService = Depends(service)) -> dict[str, Any]:
    current = svc.guidelines().version
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "csrf_token": svc.sessions.csrf_token(user.session_id),
        "read_guidelines_version": user.read_guidelines_version,
        "guidelines_version": current,
        "must_read_guidelines": user.read_guidelines_version != current,
    }


@router.get("/guidelines", summary="The current guidelines (Markdown and rendered HTML)")
def guidelines(_user: User = Depends(signed_in), svc: LabelingService = Depends(service)) -> dict[str, Any]:
    current = svc.guidelines()
    return {**current.to_json(), "html": current.rendered()}


@router.post("/guidelines/acknowledge", summary="Confirm having read the current guidelines")
def acknowledge(
    body: Acknowledgement, user: User = Depends(signed_in_csrf), svc: LabelingService = Depends(service)
) -> dict[str, Any]:
    svc.acknowledge_guidelines(user, body.version)
    return {"read_guidelines_version": body.version}


@router.post(
    "/tasks/next",
    summary="Take the next task (your current one if you hold one); 204 when your queue is empty",
    responses={204: {"description": "No task left for you"}},
)
async def next_task(request: Request, user: User = Depends(signed_in_csrf)) -> Response:
    task = request.app.state.service.next_task(user)
    if task is None:
        return Response(status_code=204)
    return JSONResponse(task)


def _stored(result: tuple[dict[str, Any], bool]) -> JSONResponse:
    judgement, replayed = result
    return JSONResponse({**judgement, "replayed": replayed}, status_code=200 if replayed else 201)


def _add_submit_route(answer_field: str) -> None:
    """``POST /tasks/{id}/<answer_field>``: the submit endpoint of the task types whose answer is ``answer_field``."""
    types = [t for t in TASK_TYPES.entries() if t.answer_field == answer_field]
    first = types[0]
    body_model = create_model(
        f"{answer_field.capitalize()}Body",
        __base__=JudgementExtras,
        **{answer_field: (first.answer_schema(), Field(description=first.answer_help))},
    )

    async def submit(
        request: Request,
        assignment_id: int,
        body: BaseModel,
        take_next: NextTask = False,
        user: User = Depends(signed_in_csrf),
    ) -> JSONResponse:
        sub = Submission(
            answer=getattr(body, answer_field),
            unusable=body.unusable,
            comment=body.comment,
            seconds_spent=body.seconds_spent,
            idempotency_key=body.idempotency_key,
        )
        return _stored(request.app.state.service.submit(user, assignment_id, answer_field, sub, take_next=take_next))

    submit.__annotations__["body"] = body_model  # the schema of this answer, for validation and the docs
    names = TASK_TYPES.choices([t.name for t in types], last="and")
    router.add_api_route(
        f"/tasks/{{assignment_id}}/{answer_field}",
        submit,
        methods=["POST"],
        status_code=201,
        name=f"submit_{answer_field}",
        summary=f"Submit {answer_field} ({names} tasks)",
    )


for _field in dict.fromkeys(t.answer_field for t in TASK_TYPES.entries()):
    _add_submit_route(_field)


@router.post(
    "/tasks/{assignment_id}/skip", status_code=201, summary="Skip a task, saying why; it goes to another labeler"
)
async def skip(
    request: Request,
    assignment_id: int,
    body: SkipBody,
    take_next: NextTask = False,
    user: User = Depends(signed_in_csrf),
) -> JSONResponse:
    sub = Submission(comment=body.reason, idempotency_key=body.idempotency_key)
    return _stored(request.app.state.service.submit(user, assignment_id, "skip", sub, take_next=take_next))


@router.get("/judgements/mine", summary="Your own most recent judgements")
def my_judgements(
    limit: int = 50, user: User = Depends(signed_in), svc: LabelingService = Depends(service)
) -> list[dict[str, Any]]:
    return svc.my_history(user, limit=max(1, min(limit, 500)))


# ------------------------------------------------------------------------------ admin


@router.get("/admin/progress", summary="Progress per project, round and labeler (admin)")
def progress(_admin: User = Depends(admin), svc: LabelingService = Depends(service)) -> dict[str, Any]:
    return svc.progress()


@router.get("/admin/labelers", summary="All accounts (admin)")
def labelers(_admin: User = Depends(admin), svc: LabelingService = Depends(service)) -> list[dict[str, Any]]:
    return [vars(info) for info in accounts.list_labelers(svc.read_store)]


@router.post("/admin/labelers", status_code=201, summary="Create an account; returns its one-time invite link (admin)")
def invite(
    body: NewLabeler, request: Request, _admin: User = Depends(admin_csrf), svc: LabelingService = Depends(service)
) -> dict[str, Any]:
    token = svc.invite(body.name, admin=body.admin)
    return {
        "name": body.name.strip(),
        "role": "admin" if body.admin else "labeler",
        "invite_url": accounts.invite_url(str(request.base_url), token),
    }


@router.post("/admin/labelers/{name}/deactivate", summary="Lock an account out; its judgements stay (admin)")
def deactivate(name: str, user: User = Depends(admin_csrf), svc: LabelingService = Depends(service)) -> dict[str, Any]:
    svc.deactivate(name, by=user)
    return {"name": name, "active": False}


@router.post("/admin/labelers/{name}/reactivate", summary="Let a deactivated account sign in again (admin)")
def reactivate(
    name: str, _admin: User = Depends(admin_csrf), svc: LabelingService = Depends(service)
) -> dict[str, Any]:
    svc.reactivate(name)
    return {"name": name, "active": True}


@router.post(
    "/admin/labelers/{name}/reinvite", summary="A fresh invite link for an account (forgotten password) (admin)"
)
def reinvite(
    name: str, request: Request, _admin: User = Depends(admin_csrf), svc: LabelingService = Depends(service)
) -> dict[str, Any]:
    token = svc.reinvite(name)
    return {"name": name, "invite_url": accounts.invite_url(str(request.base_url), token)}


@router.get("/admin/guidelines", summary="Every guideline version, newest first (admin)")
def guideline_versions(_admin: User = Depends(admin), svc: LabelingService = Depends(service)) -> list[dict[str, Any]]:
    return [g.to_json() for g in svc.guideline_history()]


@router.post("/admin/guidelines", status_code=201, summary="Publish a new guideline version (admin)")
def edit_guidelines(
    body: GuidelineSections, user: User = Depends(admin_csrf), svc: LabelingService = Depends(service)
) -> dict[str, Any]:
    return svc.edit_guidelines(user, body.model_dump()).to_json()


@router.get("/admin/export/judgements", summary="Every judgement as JSONL (admin)")
def export_judgements(_admin: User = Depends(admin), svc: LabelingService = Depends(service)) -> StreamingResponse:
    return StreamingResponse(
        jsonl_stream(svc.export_judgements()),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{svc.config.name}-judgements.jsonl"'},
    )


@router.get("/admin/export/pairs", summary="Preference pairs from the consensus, as JSONL (admin)")
def export_pairs(
    format: PairsFormatName = "alignloop",
    source: str = "consensus",
    min_agreement: float = 0.0,
    _admin: User = Depends(admin),
    svc: LabelingService = Depends(service),
) -> StreamingResponse:
    rows = export_pairs_rows(svc, fmt=format, source=source, min_agreement=min_agreement)
    return StreamingResponse(
        jsonl_stream(iter(rows)),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{svc.config.name}-pairs-{format}.jsonl"'},
    )


@router.get("/admin/quality", summary="Agreement and labeler quality from the consensus stage (admin)")
def quality(_admin: User = Depends(admin), svc: LabelingService = Depends(service)) -> dict[str, Any]:
    return quality_report(svc)
