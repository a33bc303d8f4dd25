"""Simulated labelers: real accounts that rank completions by a judge's score plus noise.

The ranking policy is Plackett–Luce sampling with temperature ``noise``: each completion's
utility is its judge score divided by the temperature, and a ranking is drawn by the
Gumbel-max trick (sort ``score + noise·Gumbel``), which samples exactly the
Plackett–Luce distribution. ``noise = 0`` ranks by the score. The temperature is in the
judge's units, or (``noise_unit: spread``) in units of how far apart the judge puts the
answers of one prompt (``judge_spread``), so that labelers agree as often with a judge
that scores in [0, 0.1] as with the same judge scoring in [0, 100]. A *misreader* ranks by the
opposite of the criterion (or by another criterion the caller passes, such as length). Where the
project allows ties (``labeling.allow_ties``), a labeler places answers its criterion scores the
same level, as the ranking guidelines ask for answers that are truly equally good.

How a simulated labeler answers each task type is the task type's ``simulate``
(``alignloop.task_types``, with the pure policies ``simulated_ranks``, ``simulated_orders``,
``simulated_tiers``, ``simulated_thumbs``), separate from this HTTP driver so recovery tests run
without a server.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from alignloop.config import StageConfig, settings_from
from alignloop.task_types import TASK_TYPES, LabelerPolicy

if TYPE_CHECKING:
    import numpy as np


@dataclass
class SimulatedLabeler:
    name: str
    misreader: bool  # ranks by the other criterion
    judgements: int = 0  # tasks submitted
    password: str = field(default="", repr=False)  # set on redeeming the invite, so a later simulation can sign in


@dataclass
class SimulationResult:
    url: str  # the labeling server the labelers used
    labelers: list[SimulatedLabeler] = field(default_factory=list)
    seconds: float = 0.0
    noise: float = 0.0  # the Plackett–Luce temperature they ranked with, in the judge's units

    @property
    def judgements(self) -> int:
        return sum(lab.judgements for lab in self.labelers)


class SimulateConfig(StageConfig):
    """Simulated labelers (``alignloop simulate-labelers``): who they are, what they prefer and how noisily."""

    judge: str = Field(
        "alignloop.judges:sentiment", description="MODULE:FUNCTION scoring (prompt, completion); higher is better."
    )
    labelers: int = Field(5, ge=1, description="Simulated labelers to create.")
    noise: float = Field(0.5, ge=0, description="Plackett-Luce temperature: 0 ranks exactly by the judge.")
    noise_unit: Literal["score", "spread"] = Field(
        "score",
        description=(
            "What `noise` is measured in: the judge's own units (`score`), or the judge's spread over the answers "
            "to label (`spread`: the mean over prompts of the standard deviation of a prompt's scores, read from the "
            "project's newest labeling round), so labelers agree as often whatever the judge's scale."
        ),
    )
    misreaders: int = Field(0, ge=0, description="How many of them rank by another criterion.")
    misread: Literal["opposite", "length"] = Field(
        "opposite", description="The misreaders' criterion: opposite (of the judge) or length."
    )
    url: str | None = Field(None, description="A running `alignloop serve` (default: start one in this process).")
    admin: str | None = Field(
        None,
        description=(
            "Create the accounts through the server's admin API as this admin "
            "(needs --url; password from ALIGNLOOP_ADMIN_PASSWORD)."
        ),
    )
    seed: int = Field(0, description="Seed of the noise and of who misreads.")
    prefix: str | None = Field(None, description="Account name prefix (default: sim<seed>).")
    max_tasks: int | None = Field(None, ge=1, description="At most this many tasks per labeler.")


def simulate_labelers(
    project: str | Path | None = ".", *, admin_password: str | None = None, **settings: Any
) -> SimulationResult:
    """Create ``labelers`` accounts and have them label through the HTTP API until their queues are empty.

    ``settings`` are the keys of ``SimulateConfig``. Accounts are created in the project's store
    (``project``), or, with ``admin`` (and ``url``), through the server's admin API signed in as that
    admin (``admin_password``), so a remote server needs no local project. Each account redeems its
    invite and submits with ``LabelingClient`` to ``url``, or to a server started in this process when
    ``url`` is None. ``misreaders`` of them (chosen by ``seed``) rank by the opposite of the judge, or
    by length with ``misread="length"``. ``max_tasks`` caps each labeler's submissions.
    """
    import secrets

    import numpy as np

    from alignloop.errors import InputError
    from alignloop.judges import length, load_judge
    from alignloop.labeling.client import LabelingClient

    config = settings_from(SimulateConfig, settings)
    if config.misreaders > config.labelers:
        raise InputError(f"must be between 0 and --labelers ({config.labelers})", field="--misreaders")
    if config.admin is not None and config.url is None:
        raise InputError("creating accounts as an admin needs the server's --url", field="--admin")
    if config.admin is None and project is None:
        raise InputError(
            "give a --project (accounts are created in its store) or --url with --admin", field="--project"
        )
    # One answer is ranked by several labelers (the overlap) and first measured for the noise's unit:
    # the judge scores each (prompt, answer) once, the taste the labelers share; their noise is their own.
    judge_fn = functools.cache(load_judge(config.judge))
    noise = config.noise
    if config.noise_unit == "spread":
        if project is None:
            raise InputError("--noise-unit spread reads the answers to label from a --project", field="--noise-unit")
        noise *= judge_spread(judge_fn, answers_to_label(project), judge_name=config.judge)
    rng = np.random.default_rng(config.seed)
    misreading = set(rng.choice(config.labelers, size=config.misreaders, replace=False).tolist())
    prefix = config.prefix or f"sim{config.seed}"
    names = [f"{prefix}-{i + 1}" for i in range(config.labelers)]
    started = time.monotonic()
    server, url = None, config.url
    if url is None:
        from alignloop.labeling.server import start_server

        assert project is not None  # checked above: no admin means a project
        server = start_server(project)
        url = server.url
    result = SimulationResult(url=url, noise=noise)
    clients: list[LabelingClient] = []
    try:
        if config.admin is not None:
            invites = _invites_over_http(url, config.admin, admin_password or "", names)
        else:
            assert project is not None
            invites = _invites_in_store(project, url, names)
        for i, invite in enumerate(invites):
            client = LabelingClient(url)
            clients.append(client)
            password = secrets.token_urlsafe(16)
            client.accept_invite(invite, password)
            result.labelers.append(SimulatedLabeler(name=names[i], misreader=i in misreading, password=password))
        rngs = [np.random.default_rng([config.seed, i]) for i in range(config.labelers)]
        active = list(range(config.labelers))
        while active:  # take turns, one task each, so prompts spread over labelers as in real life
            for i in list(active):
                lab = result.labelers[i]
                task = clients[i].next_task() if config.max_tasks is None or lab.judgements < config.max_tasks else None
                if task is None:
                    active.remove(i)
                    continue
                by_length = lab.misreader and config.misread == "length"
                criterion: Callable[[str, str], float] = length if by_length else judge_fn
                flip = lab.misreader and not by_length
                answer = simulated_answer(task, criterion, noise, rngs[i], flip)
                answer_field = TASK_TYPES[task["task_type"]].answer_field
                clients[i].submit(task["assignment_id"], answer_field, answer, seconds_spent=1.0)
                lab.judgements += 1
    finally:
        for client in clients:
            client.close()
        if server is not None:
            server.stop()
    result.seconds = time.monotonic() - started
    return result


def judge_spread(
    judge: Callable[[str, str], float], answers: Iterable[tuple[str, Sequence[str]]], *, judge_name: str = "the judge"
) -> float:
    """How far apart ``judge`` puts the answers a labeler compares: ``score_spread`` of its scores of each
    prompt's answers (``answers``: ``(prompt, its answers)``); ``judge`` as ``load_judge`` returns it, which
    refuses a score that is not a number."""
    rows = ([judge(prompt, a) for a in texts] for prompt, texts in answers)
    return score_spread(rows, judge_name=judge_name)


def score_spread(score_rows: Iterable[Sequence[float]], *, judge_name: str = "the judge") -> float:
    """Over the rows (one prompt's answers' scores each) with two or more scores, the mean of a row's standard
    deviation. A mean, not a root mean square, so a few prompts with one far-off answer do not set the unit for
    all. Raises ``InputError`` when the judge tells no two answers apart (nothing to rank by)."""
    import numpy as np

    from alignloop.errors import InputError

    deviations = [np.std(row, ddof=1) for row in score_rows if len(row) >= 2]
    spread = float(np.mean(deviations)) if deviations else 0.0
    if not spread > 0:
        raise InputError(
            f"{judge_name} gives all the answers of each prompt the same score: labelers would have nothing to rank by",
            field="--judge",
        )
    return spread


def answers_to_label(project: str | Path) -> list[tuple[str, list[str]]]:
    """Each prompt's text and answers in the project's newest round the labeling app hands out."""
    from sqlalchemy import select

    from alignloop.project import open_project
    from alignloop.store import LABELING_ROUND_KINDS, Completion, Round
    from alignloop.store import Prompt as PromptRow

    with open_project(project) as handle, handle.store.session() as s:
        newest = s.scalars(
            select(Round.id)
            .join(Completion, Completion.round_id == Round.id)
            .where(Round.project_id == handle.project_id, Round.kind.in_(LABELING_ROUND_KINDS))
            .order_by(Round.index.desc())
            .limit(1)
        ).first()
        rows = s.execute(
            select(PromptRow.id, PromptRow.text, Completion.text)
            .join(Completion, Completion.prompt_id == PromptRow.id)
            .where(Completion.round_id == newest)
            .order_by(PromptRow.id, Completion.sample_index)
        ).all()
    grouped: dict[int, tuple[str, list[str]]] = {}
    for prompt_id, prompt, text in rows:
        grouped.setdefault(prompt_id, (prompt, []))[1].append(text)
    return list(grouped.values())


def simulated_answer(
    task: dict[str, Any], criterion: Callable[[str, str], float], noise: float, rng: np.random.Generator, flip: bool
) -> Any:
    """A simulated labeler's answer to ``task`` (as the labeling API serves it), ranking or thumbs by its type.

    The completions are taken in id order, not in the order the app shows them (shuffled per labeler to
    measure position bias): the noise is drawn position by position, so only a fixed order makes an answer
    repeat with the labeler's seed.
    """
    completions = sorted(task["completions"], key=lambda c: c["id"])
    scores = [float(criterion(task["prompt"], c["text"])) for c in completions]
    ids = [c["id"] for c in completions]
    labeler = LabelerPolicy(noise, rng, misreader=flip, allow_ties=bool(task.get("allow_ties")))
    return TASK_TYPES[task["task_type"]].simulate(scores, ids, labeler)


def _invites_in_store(project: str | Path, url: str, names: list[str]) -> list[str]:
    """Create the accounts in the project's store; returns their invite links."""
    from sqlalchemy import select

    from alignloop.errors import InputError
    from alignloop.labeling.accounts import add_labeler, invite_url
    from alignloop.project import open_project
    from alignloop.store import Labeler

    with open_project(project) as handle:
        with handle.store.session() as s:
            taken = list(s.scalars(select(Labeler.name).where(Labeler.name.in_(names))))
        if taken:
            raise InputError(
                f"labeler {taken[0]!r} already exists; choose another --prefix or --seed", field="--prefix"
            )
        return [invite_url(url, add_labeler(handle.store, name)) for name in names]


def _invites_over_http(url: str, admin: str, password: str, names: list[str]) -> list[str]:
    """Create the accounts through the admin API (``POST /api/admin/labelers``); returns their invite links."""
    from alignloop.errors import InputError
    from alignloop.labeling.client import LabelingClient, LabelingError

    with LabelingClient(url) as client:
        client.login(admin, password)
        existing = {row["name"] for row in client._request("GET", "/api/admin/labelers").json()}
        taken = [n for n in names if n in existing]
        if taken:
            raise InputError(
                f"labeler {taken[0]!r} already exists; choose another --prefix or --seed", field="--prefix"
            )
        invites = []
        for name in names:
            try:  # LabelingClient has no public call for this admin route yet
                body = client._request("POST", "/api/admin/labelers", json={"name": name, "admin": False}).json()
            except LabelingError as exc:
                raise InputError(f"cannot create account {name!r}: {exc}", field="--admin") from None
            invites.append(body["invite_url"])
        return invites


@dataclass
class SimulatedUser:
    """An account that asks the served model for two answers to each of its prompts and says which it
    prefers, by ``judge`` (MODULE:FUNCTION) after Plackett–Luce noise of temperature ``noise`` (in the
    judge's units), as ``simulate_users`` drives it."""

    name: str
    password: str = field(repr=False)
    judge: str
    prompts: list[str]
    noise: float
    choices: int = 0  # feedback sent


def simulate_users(
    url: str,
    model: str,
    users: list[SimulatedUser],
    *,
    seed: int = 0,
    max_tokens: int | None = None,
    temperature: float = 1.0,
) -> float:
    """Each user signs in to a running ``serve-model`` at ``url`` (``POST /api/login``), asks ``model`` for
    two answers to each of their prompts (``POST /v1/chat/completions``, ``n=2``) and sends the answer
    their judge prefers as a choice (``POST /v1/feedback``). Users take turns, one prompt each, as people
    sharing one server would; every request carries a seed, so a run draws the same answers again.
    A refused request raises ``AlignloopError`` with the server's message. Returns the seconds taken."""
    import httpx
    import numpy as np

    from alignloop.errors import AlignloopError
    from alignloop.judges import load_judge
    from alignloop.task_types import simulated_ranking

    def call(client: httpx.Client, name: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(path, json=body)
        if response.status_code >= 400:
            raise AlignloopError(f"{url}{path} refused {name}'s request ({response.status_code}): {response.text}")
        return response.json()

    started = time.monotonic()
    judges = {u.judge: load_judge(u.judge) for u in users}
    clients = [httpx.Client(base_url=url, timeout=600) for _ in users]
    try:
        for user, client in zip(users, clients):
            key = call(client, user.name, "/api/login", {"name": user.name, "password": user.password})["api_key"]
            client.headers["Authorization"] = f"Bearer {key}"
        rngs = [np.random.default_rng([seed, i]) for i in range(len(users))]
        for turn in range(max(len(u.prompts) for u in users)):
            for i, (user, client) in enumerate(zip(users, clients)):
                if turn >= len(user.prompts):
                    continue
                prompt = user.prompts[turn]
                request = {"model": model, "messages": [{"role": "user", "content": prompt}], "n": 2}
                request |= {"seed": int(rngs[i].integers(2**31)), "temperature": temperature}
                if max_tokens is not None:
                    request["max_tokens"] = max_tokens
                answers = call(client, user.name, "/v1/chat/completions", request)["choices"]
                scores = [float(judges[user.judge](prompt, a["message"]["content"])) for a in answers]
                best, worst = simulated_ranking(scores, user.noise, rngs[i])
                choice = {"chosen": answers[best]["completion_id"], "rejected": answers[worst]["completion_id"]}
                call(client, user.name, "/v1/feedback", choice)
                user.choices += 1
    finally:
        for client in clients:
            client.close()
    return time.monotonic() - started
