"""Served answers and users' feedback in the project's store: what ``serve-model`` writes.

Every model version that answers users has one round of kind ``serve`` (its ``policy`` is the
version), opened by its first answer. A chat-completion request is an *exchange*: the prompt
(de-duplicated and split like any imported prompt), each answer as a ``Completion`` of the serve
round (model, seed and sampling parameters recorded), and the user's ``Assignment`` on that prompt
in that round, with status ``served`` and the answers they were shown as its display order (a
question asked again — "regenerate" — adds its answers to the same assignment). The labeling app
never hands these out.

Feedback becomes judgements of that assignment, attributed to the user, so consensus and pairs
read them like any other (``TRAINING_ROUND_KINDS``):

- thumbs: one ``thumbs`` judgement per assignment holding all the user's thumbs on answers to that
  prompt; each new thumb writes the union as a new judgement that supersedes the previous one, so
  a thumb up on one answer and down on another (of the same or a regenerated response) is one
  up × down pair;
- a choice between two answers to the same prompt: a ``pairwise`` judgement ranking the two; choosing
  again between the same two supersedes the earlier choice.

Every write is one transaction; a refusal (``Refused``) writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alignloop.config import SplitConfig
from alignloop.errors import AlignloopError
from alignloop.labeling.db import AppDatabase
from alignloop.prompts import assign_split, legacy_prompt_hash, prompt_hash
from alignloop.records import GeneratedText
from alignloop.store import Assignment, Completion, Judgement, Prompt, Round

SERVE_KIND = "serve"
SERVED = "served"  # the status of an assignment that holds a user's served answers
MAX_COMMENT_CHARS = 10_000
MAX_KEY_CHARS = 200


class Refused(AlignloopError):
    """A request the server refuses; ``status`` is the HTTP answer, ``param`` the request field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(f"{param}: {message}" if param else message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass
class Feedback:
    """One feedback request, as checked by the HTTP layer: ``thumbs`` or ``chosen``/``rejected``."""

    thumbs: dict[int, int] | None = None  # completion id → 1 (up) or −1 (down)
    chosen: int | None = None  # the preferred answer of two ...
    rejected: int | None = None  # ... and the other one
    comment: str | None = None
    idempotency_key: str | None = None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _last_user_turn(messages: Sequence[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


class ExchangeStore:
    """The serve round of one model version, and the exchanges and feedback of its users."""

    def __init__(self, db: AppDatabase, project_id: int, split: SplitConfig, version: str) -> None:
        self.db = db
        self.project_id = project_id
        self.split = split
        self.version = version
        self._round: tuple[int, int] | None = None  # (id, index) of the serve round once it exists

    # ---------------------------------------------------------------- exchanges

    def _serve_round(self, s: Session) -> tuple[int, int]:
        """The serve round of this version, opened now when it has none (in the caller's transaction)."""
        if self._round is None:
            found = Round.newest(s, self.project_id, SERVE_KIND, Round.policy == self.version)
            if found is None:
                found = Round.append(s, self.project_id, SERVE_KIND, self.version)
            return found.id, found.index
        return self._round

    def _prompt(self, s: Session, messages: list[dict[str, str]]) -> int:
        text = _last_user_turn(messages)
        chat = messages if len(messages) > 1 or messages[0]["role"] != "user" else None
        digest = prompt_hash(text, chat)
        found = s.scalar(
            select(Prompt.id).where(
                Prompt.project_id == self.project_id,
                Prompt.text_hash.in_([digest, legacy_prompt_hash(text, chat)]),
            )
        )
        if found is not None:
            return found
        row = Prompt(
            project_id=self.project_id,
            text=text,
            messages=chat,
            text_hash=digest,
            split=assign_split(digest, self.split),
            source=f"served:{self.version}",
        )
        s.add(row)
        s.flush()
        return row.id

    def record(
        self,
        user_id: int,
        messages: list[dict[str, str]],
        answers: list[GeneratedText],
        seeds: list[int],
        params: dict[str, Any],
    ) -> tuple[list[int], int]:
        """Store one exchange; returns the answers' completion ids and the serve round's index."""
        now = _utcnow()
        with self.db.write() as s:
            round_id, round_index = self._serve_round(s)
            prompt_id = self._prompt(s, messages)
            first = s.scalar(
                select(func.coalesce(func.max(Completion.sample_index) + 1, 0)).where(
                    Completion.round_id == round_id, Completion.prompt_id == prompt_id
                )
            )
            rows = [
                Completion(
                    prompt_id=prompt_id,
                    round_id=round_id,
                    sample_index=first + i,
                    text=answer.text,
                    model=self.version,
                    seed=seed,
                    params=params,
                    prompt_tokens=answer.prompt_tokens,
                    completion_tokens=answer.completion_tokens,
                    finish_reason=answer.finish_reason,
                    created_at=now,
                )
                for i, (answer, seed) in enumerate(zip(answers, seeds))
            ]
            s.add_all(rows)
            s.flush()
            ids = [row.id for row in rows]
            held = s.scalars(
                select(Assignment).where(
                    Assignment.round_id == round_id,
                    Assignment.prompt_id == prompt_id,
                    Assignment.labeler_id == user_id,
                )
            ).first()
            if held is None:
                s.add(
                    Assignment(
                        prompt_id=prompt_id,
                        round_id=round_id,
                        labeler_id=user_id,
                        task_type="thumbs",  # answered with thumbs or, between two answers, pairwise
                        display_order=ids,
                        status=SERVED,
                        leased_at=now,
                        lease_expires_at=now,
                    )
                )
            else:
                held.display_order = [*held.display_order, *ids]
        self._round = (round_id, round_index)
        return ids, round_index

    # ---------------------------------------------------------------- feedback

    def feedback(self, user_id: int, feedback: Feedback) -> tuple[dict[str, Any], bool]:
        """Store the user's feedback as a judgement; returns (judgement as JSON, replayed).

        ``replayed`` is True when nothing new was written: the idempotency key already stored this
        feedback, or the feedback repeats what the user's live judgement already says.
        """
        named = _named(feedback)
        if feedback.comment is not None and len(feedback.comment) > MAX_COMMENT_CHARS:
            raise Refused(400, f"is longer than {MAX_COMMENT_CHARS} characters", "comment")
        key = feedback.idempotency_key
        if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
            raise Refused(400, f"must be 1-{MAX_KEY_CHARS} characters", "idempotency_key")
        with self.db.write() as s:
            answers = {
                row.id: row
                for row in s.execute(
                    select(Completion.id, Completion.prompt_id, Completion.round_id, Completion.model)
                    .join(Round, Round.id == Completion.round_id)
                    .where(
                        Completion.id.in_(list(named)),
                        Round.project_id == self.project_id,
                        Round.kind == SERVE_KIND,
                    )
                )
            }
            for cid, field in named.items():
                if cid not in answers:
                    raise Refused(404, f"no answer {cid} was served by this project's model server", field)
            first = answers[next(iter(named))]
            for cid, field in named.items():
                if (answers[cid].prompt_id, answers[cid].round_id) != (first.prompt_id, first.round_id):
                    raise Refused(
                        400,
                        f"answer {cid} answers another prompt (or comes from another model version) than "
                        f"answer {next(iter(named))}; feedback compares answers to the same prompt",
                        field,
                    )
            task = s.scalars(
                select(Assignment).where(
                    Assignment.round_id == first.round_id,
                    Assignment.prompt_id == first.prompt_id,
                    Assignment.labeler_id == user_id,
                    Assignment.status == SERVED,
                )
            ).first()
            shown = set(task.display_order) if task is not None else set()
            for cid, field in named.items():
                if cid not in shown:
                    raise Refused(403, f"answer {cid} was served to another user; give feedback on your own", field)
            if key is not None:
                stored = s.scalars(
                    select(Judgement).where(Judgement.labeler_id == user_id, Judgement.idempotency_key == key)
                ).first()
                if stored is not None:
                    if stored.assignment_id != task.id or not _same_verdict(stored, feedback):
                        raise Refused(409, "was already used for different feedback; send a new key", "idempotency_key")
                    return self._json(stored, first.model), True
            live = self._live(s, task.id)
            if feedback.thumbs is not None:
                previous = next((j for j in live if j.kind == "thumbs"), None)
                thumbs = {**(previous.thumbs if previous else {}), **{str(c): v for c, v in feedback.thumbs.items()}}
                verdict: dict[str, Any] = {"kind": "thumbs", "thumbs": thumbs, "ranking": None}
            else:
                pair = {feedback.chosen, feedback.rejected}
                previous = next(
                    (j for j in live if j.kind == "pairwise" and {c for t in j.ranking for c in t} == pair), None
                )
                verdict = {"kind": "pairwise", "thumbs": None, "ranking": [[feedback.chosen], [feedback.rejected]]}
            # a thumb or choice without a comment keeps the comment of the judgement it supersedes
            comment = (feedback.comment or "").strip() or (previous.comment if previous is not None else None)
            if (
                previous is not None
                and key is None
                and (previous.thumbs, previous.ranking, previous.comment)
                == (verdict["thumbs"], verdict["ranking"], comment)
            ):
                return self._json(previous, first.model), True
            row = Judgement(
                assignment_id=task.id,
                labeler_id=user_id,
                prompt_id=first.prompt_id,
                round_id=first.round_id,
                unusable={},
                comment=comment,
                idempotency_key=key,
                supersedes_id=previous.id if previous is not None else None,
                created_at=_utcnow(),
                **verdict,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:  # the same key, stored by a concurrent request
                raise Refused(
                    409, "was already used for different feedback; send a new key", "idempotency_key"
                ) from None
            return self._json(row, first.model), False

    @staticmethod
    def _live(s: Session, assignment_id: int) -> list[Judgement]:
        """The assignment's judgements that no later one supersedes, newest first."""
        rows = list(s.scalars(select(Judgement).where(Judgement.assignment_id == assignment_id)))
        superseded = {j.supersedes_id for j in rows if j.supersedes_id is not None}
        return sorted((j for j in rows if j.id not in superseded), key=lambda j: j.id, reverse=True)

    @staticmethod
    def _json(row: Judgement, version: str) -> dict[str, Any]:
        return {
            "object": "feedback",
            "judgement_id": row.id,
            "kind": row.kind,
            "thumbs": {c: "up" if v > 0 else "down" for c, v in row.thumbs.items()} if row.thumbs else None,
            "ranking": row.ranking,
            "comment": row.comment,
            "model_version": version,
            "supersedes": row.supersedes_id,
            "idempotency_key": row.idempotency_key,
        }


def _named(feedback: Feedback) -> dict[int, str]:
    """The completion ids a feedback names, each with the request field that names it."""
    if feedback.thumbs is not None:
        if feedback.chosen is not None or feedback.rejected is not None:
            raise Refused(400, "give either thumbs, or chosen and rejected, not both", "thumbs")
        if not feedback.thumbs:
            raise Refused(400, 'name at least one answer: {"<completion id>": "up" | "down"}', "thumbs")
        return {cid: f"thumbs.{cid}" for cid in feedback.thumbs}
    if feedback.chosen is None or feedback.rejected is None:
        missing = "chosen" if feedback.chosen is None else "rejected"
        if feedback.chosen is None and feedback.rejected is None:
            raise Refused(400, "give thumbs, or the preferred answer (chosen) and the other one (rejected)", "thumbs")
        raise Refused(
            400, "a choice names both answers: the preferred one (chosen) and the other one (rejected)", missing
        )
    if feedback.chosen == feedback.rejected:
        raise Refused(400, "the preferred answer must differ from the other one", "rejected")
    return {feedback.chosen: "chosen", feedback.rejected: "rejected"}


def _same_verdict(stored: Judgement, feedback: Feedback) -> bool:
    """Whether a stored judgement says what ``feedback`` says (a retried request)."""
    if feedback.thumbs is not None:
        return stored.kind == "thumbs" and all(stored.thumbs.get(str(c)) == v for c, v in feedback.thumbs.items())
    return stored.kind == "pairwise" and stored.ranking == [[feedback.chosen], [feedback.rejected]]
