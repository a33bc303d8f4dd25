"""The OpenAI-compatible HTTP face of ``serve-model``: ``create_app(project_dir, sampler)``.

- ``GET /v1/models``, ``GET /v1/models/{model}``: the model served, and with labeler groups' policies
  (``groups``) one more per group, named ``<model>:group-<group>``.
- ``POST /v1/chat/completions``: messages → the chat template → ``n`` answers (``temperature``,
  ``top_p``, ``max_tokens``/``max_completion_tokens``, ``seed``). Each answer is stored as a
  completion of the version's serve round (``exchanges``); each choice carries its
  ``completion_id``, the handle feedback refers to. Streaming, stop sequences, log-probs,
  penalties and tools are refused with 400 rather than ignored. Asked for the main model, a user
  whom the project's consensus put in a labeler group that has a policy of its own is answered by
  that group's policy (personalisation); the response's ``model`` and ``model_version`` say which.
- ``POST /v1/feedback``: thumbs up/down on answers, or the preferred of two; stored as the
  user's judgements.
- ``POST /api/login``, ``POST /api/invite/accept``, ``POST /api/logout``: the labeling app's accounts
  and sessions. Login returns the session token as ``api_key``; clients send it as
  ``Authorization: Bearer <api_key>`` (what OpenAI clients do with their API key). The labeling
  app's session cookie works too, with its ``X-CSRF-Token`` header on POSTs.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, so OpenAI clients
raise their usual exceptions. The web layer never imports torch: the sampler is handed in.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from alignloop.backends import SamplingParams
from alignloop.errors import AlignloopError, InputError
from alignloop.labeling import accounts
from alignloop.labeling.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    CsrfFailed,
    LoginThrottle,
    NotSignedIn,
    Sessions,
    User,
    load_secret,
    set_session_cookie,
)
from alignloop.labeling.base_app import offline_app
from alignloop.labeling.db import AppDatabase
from alignloop.labeling.limits import BodyLimit
from alignloop.project import open_project
from alignloop.serving.exchanges import ExchangeStore, Feedback, Refused
from alignloop.serving.sampler import ChatSampler, PromptTooLong, answer_seeds
from alignloop.store import Store

MAX_N = 16  # answers per request
MAX_BODY_BYTES = 4 * 1024 * 1024
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
# Request fields of OpenAI's API that this server cannot honour: refused unless absent or neutral.
UNSUPPORTED = ("stream", "stop", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
               "tools", "tool_choice", "functions", "function_call", "response_format")  # fmt: skip


def group_model_name(name: str, group: str) -> str:
    """The name clients pass as ``model`` for labeler group ``group``'s policy beside main model ``name``."""
    return f"{name}:group-{group}"


@dataclass
class ServedPolicy:
    """One policy the server answers with: its name, its sampler and its serve round."""

    name: str  # what clients pass as `model`
    sampler: ChatSampler
    exchanges: ExchangeStore
    group: str | None = None  # the labeler group whose policy this is; None for the main one

    @property
    def version(self) -> str:
        return self.sampler.version


@dataclass
class ServedModel:
    """What one server process serves and where it writes: the policies, their names and the project's store."""

    name: str  # the main policy's name
    policies: dict[str, ServedPolicy]  # by name; the main one first
    user_groups: dict[int, str]  # account id → labeler group, for the users whose group has a policy
    db: AppDatabase
    sessions: Sessions
    throttle: LoginThrottle
    read_store: Store  # sign-in checks (argon2 never runs under the write lock)
    write_store: Store  # redeeming invites
    defaults: SamplingParams  # what a request leaves out
    created: int  # unix time the server started

    def answering(self, user: User, name: str) -> ServedPolicy:
        """The policy that answers ``user`` asking for model ``name``: the named one, except that the main
        model answers a member of a labeler group with a policy of its own by that group's policy."""
        if name not in self.policies:
            names = ", ".join(repr(n) for n in self.policies)
            message = f"the model {name!r} does not exist; this server serves {names}"
            raise Refused(404, message, "model", "model_not_found")
        group = self.user_groups.get(user.id) if name == self.name else None  # only groups with a policy
        return self.policies[group_model_name(name, group) if group is not None else name]


# ------------------------------------------------------------------------------ request bodies


class TextPart(BaseModel):
    type: Literal["text"] = Field(description="Only text parts are served.")
    text: str = Field(description="The text.")


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"] = Field(description="Who speaks.")
    content: str | list[TextPart] = Field(description="What they say: text, or a list of text parts.")
    name: str | None = Field(None, description="Ignored (accepted for compatibility).")

    def as_turn(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatCompletionRequest(BaseModel):
    """The fields of OpenAI's chat-completions request that the server honours (others: see ``UNSUPPORTED``)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The served model's name, as `GET /v1/models` lists it.")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation, ending with a user turn.")
    n: int = Field(1, ge=1, le=MAX_N, description="Answers to sample.")
    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature (0: greedy; default 1).")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass (default 1).")
    max_tokens: int | None = Field(
        None, ge=1, description="Longest answer in tokens (default: generate.max_new_tokens)."
    )
    max_completion_tokens: int | None = Field(None, ge=1, description="Same as max_tokens (OpenAI's newer name).")
    seed: int | None = Field(None, description="Same seed, same messages and parameters: the same answers.")
    user: str | None = Field(None, description="Ignored: answers are attributed to the signed-in account.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thumbs: dict[int, Literal["up", "down"]] | None = Field(
        None, description='Completion id → "up" or "down", for answers served to you for one prompt.'
    )
    chosen: int | None = Field(None, description="The completion id of the preferred of two answers to one prompt.")
    rejected: int | None = Field(None, description="The completion id of the other answer.")
    comment: str | None = Field(None, description="A note for whoever reviews the feedback.")
    idempotency_key: str | None = Field(
        None, description="Client-chosen key; a retry with it stores the feedback once."
    )


# ------------------------------------------------------------------------------ errors and auth


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    body = {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"), "param": param, "code": code}
    return JSONResponse({"error": body}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        message = f"{exc.param}: {exc.message}" if exc.param else exc.message
        return _error(exc.status, message, exc.param, exc.code)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(_request: Request, _exc: NotSignedIn) -> JSONResponse:
        return _error(
            401,
            "sign in: send `Authorization: Bearer <api_key>` (POST /api/login returns one) or the labeling "
            "app's session cookie",
            code="invalid_api_key",
        )

    @app.exception_handler(CsrfFailed)
    async def _csrf(_request: Request, _exc: CsrfFailed) -> JSONResponse:
        return _error(403, f"a request signed in by cookie must carry the {CSRF_HEADER} header (or use a Bearer key)")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        messages = []
        for err in errors:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            messages.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return _error(400, "; ".join(messages) or "invalid request", param)

    @app.exception_handler(AlignloopError)
    async def _user_error(_request: Request, exc: AlignloopError) -> JSONResponse:
        param = exc.field if isinstance(exc, InputError) else None
        return _error(400, str(exc), param)


def _served(request: Request) -> ServedModel:
    return request.app.state.served


async def signed_in(request: Request) -> User:
    """The account a request acts for: a Bearer session token, or the labeling app's cookie plus CSRF header."""
    served = _served(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotSignedIn()
        return served.sessions.user(token.strip(), served.db)
    user = served.sessions.user(request.cookies.get(SESSION_COOKIE), served.db)
    if request.method not in ("GET", "HEAD"):
        served.sessions.check_csrf(user, request.headers.get(CSRF_HEADER))
    return user


# ------------------------------------------------------------------------------ routes


def _model_card(served: ServedModel, policy: ServedPolicy) -> dict[str, Any]:
    return {
        "id": policy.name,
        "object": "model",
        "created": served.created,
        "owned_by": "alignloop",
        "root": policy.version,
        "group": policy.group,
    }


def _check_supported(body: ChatCompletionRequest) -> None:
    extra = body.model_extra or {}
    for name in UNSUPPORTED:
        value = extra.get(name)
        if value in (None, False, 0, "", [], {}) or (name == "response_format" and value == {"type": "text"}):
            continue
        what = "streaming is not supported; send stream: false" if name == "stream" else "is not supported"
        raise Refused(400, what, name, "unsupported_parameter")


def create_app(
    project_dir: str | Path,
    sampler: ChatSampler,
    *,
    name: str | None = None,
    groups: dict[str, ChatSampler] | None = None,
    user_groups: dict[int, str] | None = None,
) -> FastAPI:
    """The model server for the project in ``project_dir``: ``sampler``'s model under ``name``
    (default: its version), and each labeler group's in ``groups`` as ``<name>:group-<group>``; the
    users in ``user_groups`` (account id → group) are answered by their group's policy when they ask
    for ``name``. Answers and feedback are written to the project's store."""
    with open_project(project_dir) as handle:  # validates alignloop.yaml and migrates the store
        config, project_id = handle.config, handle.project_id
    db = AppDatabase(config.database, project_dir, project_id)
    main = name or sampler.version
    policies = {main: ServedPolicy(main, sampler, ExchangeStore(db, project_id, config.split, sampler.version))}
    for group, group_sampler in (groups or {}).items():
        store = ExchangeStore(db, project_id, config.split, group_sampler.version)
        group_name = group_model_name(main, group)
        policies[group_name] = ServedPolicy(group_name, group_sampler, store, group)
    served = ServedModel(
        name=main,
        policies=policies,
        user_groups={uid: g for uid, g in (user_groups or {}).items() if g in (groups or {})},
        db=db,
        sessions=Sessions(load_secret(project_dir)),
        throttle=LoginThrottle(),
        read_store=Store(db.read_engine),
        write_store=Store(db.write_engine),
        defaults=SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=config.generate.max_new_tokens),
        created=int(time.time()),
    )

    app = offline_app(
        f"alignloop model server — {config.name}",
        "OpenAI-compatible chat completions from the project's policy, and feedback on its answers.",
        db.close,
    )
    app.state.served = served
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.get("/health", summary="200 while the server runs")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", summary="The served model")
    async def models(_user: User = Depends(signed_in)) -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(served, p) for p in served.policies.values()]}

    @app.get("/v1/models/{model:path}", summary="One model, or 404")
    async def model(model: str, user: User = Depends(signed_in)) -> dict[str, Any]:
        served.answering(user, model)  # 404 for a name not served
        return _model_card(served, served.policies[model])

    @app.post("/v1/chat/completions", summary="Answers to a conversation, each stored for feedback")
    def chat_completions(body: ChatCompletionRequest, user: User = Depends(signed_in)) -> dict[str, Any]:
        policy = served.answering(user, body.model)
        _check_supported(body)
        turns = [m.as_turn() for m in body.messages]
        if turns[-1]["role"] != "user":
            raise Refused(400, "the conversation must end with a user turn", f"messages.{len(turns) - 1}.role")
        if body.max_tokens is not None and body.max_completion_tokens not in (None, body.max_tokens):
            raise Refused(400, "differs from max_tokens; send one of them", "max_completion_tokens")
        params = SamplingParams(
            temperature=served.defaults.temperature if body.temperature is None else body.temperature,
            top_p=served.defaults.top_p if body.top_p is None else body.top_p,
            max_new_tokens=body.max_tokens or body.max_completion_tokens or served.defaults.max_new_tokens,
        )
        seeds = answer_seeds(body.seed, body.n)
        try:
            answers = policy.sampler.answer(turns, body.n, params, seeds)
        except PromptTooLong as exc:
            raise Refused(400, str(exc), "messages", "context_length_exceeded") from None
        stored = {"temperature": params.temperature, "top_p": params.top_p, "max_new_tokens": params.max_new_tokens}
        ids, round_index = policy.exchanges.record(user.id, turns, answers, seeds, stored)
        prompt_tokens = answers[0].prompt_tokens
        completion_tokens = sum(a.completion_tokens for a in answers)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": policy.name,
            "model_version": policy.version,
            "round": round_index,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": answer.finish_reason,
                    "logprobs": None,
                    "completion_id": cid,
                }
                for i, (answer, cid) in enumerate(zip(answers, ids))
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @app.post("/v1/feedback", summary="Thumbs up/down on answers, or the preferred of two")
    def feedback(body: FeedbackRequest, user: User = Depends(signed_in)) -> JSONResponse:
        thumbs = None if body.thumbs is None else {cid: 1 if v == "up" else -1 for cid, v in body.thumbs.items()}
        given = Feedback(thumbs, body.chosen, body.rejected, body.comment, body.idempotency_key)
        stored, replayed = served.policies[served.name].exchanges.feedback(user.id, given)  # any version's answers
        return JSONResponse({**stored, "replayed": replayed}, status_code=200 if replayed else 201)

    @app.post("/api/login", summary="Sign in; returns the session token as api_key")
    def login(body: accounts.Credentials, request: Request) -> JSONResponse:
        client = request.client.host if request.client else "unknown"
        wait = served.throttle.retry_after(client, body.name)
        if wait > 0:
            return _error(429, f"too many failed sign-ins; try again in {int(wait) + 1} s")
        labeler = accounts.authenticate(served.read_store, body.name, body.password)
        if labeler is None:
            served.throttle.failed(client, body.name)
            return _error(401, "wrong name or password, or the account is deactivated")
        served.throttle.succeeded(client, body.name)
        return _session(request, labeler)

    @app.post("/api/invite/accept", summary="Redeem an invite: set the password and sign in")
    def accept_invite(body: accounts.InviteAcceptance, request: Request) -> JSONResponse:
        try:
            token = accounts.invite_token_from(body.token)
            labeler = accounts.redeem_invite(served.write_store, token, body.password)
        except accounts.InviteRefused as exc:
            return _error(exc.status, str(exc), "token", exc.reason)
        return _session(request, labeler)

    @app.post("/api/logout", summary="End the session (the api_key stops working)")
    def logout(user: User = Depends(signed_in)) -> dict[str, bool]:
        served.sessions.revoke(user.session_id, served.db)
        return {"signed_out": True}

    def _session(request: Request, labeler: Any) -> JSONResponse:
        token, csrf = served.sessions.issue(labeler, served.db)
        response = JSONResponse({"name": labeler.name, "role": labeler.role, "api_key": token, "csrf_token": csrf})
        set_session_cookie(response, request, token)
        return response

    return app
