"""Writing judged prompts straight into a project's store, for tests that need no HTTP server."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select

from alignloop.project import ProjectHandle
from alignloop.prompts import text_hash
from alignloop.store import Assignment, Completion, GuidelineVersion, Judgement, Labeler, Prompt, Round

_keys = itertools.count()


def add_labelers(handle: ProjectHandle, names: list[str]) -> list[int]:
    with handle.store.session() as s:
        rows = [Labeler(name=n, role="labeler", active=True) for n in names]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


def add_guideline(handle: ProjectHandle, version: int = 1) -> int:
    with handle.store.session() as s:
        g = GuidelineVersion(
            project_id=handle.project_id, version=version, task="t", instructions="i", edge_cases="e", unusable="u"
        )
        s.add(g)
        s.flush()
        return g.id


def add_round(handle: ProjectHandle, index: int, kind: str = "train") -> int:
    with handle.store.session() as s:
        rnd = Round(project_id=handle.project_id, index=index, kind=kind, policy="m", metrics={})
        s.add(rnd)
        s.flush()
        return rnd.id


def _round(s: Any, handle: ProjectHandle, round_id: int | None) -> Round:
    return s.get(Round, round_id) if round_id is not None else handle.current_round(s)


def add_prompt(
    handle: ProjectHandle,
    text: str,
    completions: list[str],
    *,
    split: str = "train",
    messages: Any = None,
    round_id: int | None = None,
) -> tuple[int, list[int]]:
    """A prompt with its completions in a round (default: the current one); returns (prompt id, completion ids)."""
    with handle.store.session() as s:
        rnd = _round(s, handle, round_id)
        prompt = Prompt(
            project_id=handle.project_id, text=text, text_hash=text_hash(text), split=split, messages=messages
        )
        s.add(prompt)
        s.flush()
        rows = [
            Completion(
                prompt_id=prompt.id,
                round_id=rnd.id,
                sample_index=i,
                text=c,
                model="m",
                seed=i,
                params={},
                prompt_tokens=3,
                completion_tokens=len(c.split()),
                finish_reason="stop",
            )
            for i, c in enumerate(completions)
        ]
        s.add_all(rows)
        s.flush()
        return prompt.id, [r.id for r in rows]


def judge(
    handle: ProjectHandle,
    prompt_id: int,
    labeler_id: int,
    *,
    ranking: list[list[int]] | None = None,
    thumbs: dict[int, int] | None = None,
    unusable: dict[int, str] | None = None,
    display_order: list[int] | None = None,
    skip: str | None = None,
    supersedes: int | None = None,
    guideline_id: int | None = None,
    comment: str | None = None,
    round_id: int | None = None,
) -> int:
    """Record one judgement (creating the assignment when needed); returns the judgement id."""
    with handle.store.session() as s:
        rnd = _round(s, handle, round_id)
        ids = list(
            s.scalars(select(Completion.id).where(Completion.prompt_id == prompt_id, Completion.round_id == rnd.id))
        )
        assignment = s.scalars(
            select(Assignment).where(
                Assignment.prompt_id == prompt_id, Assignment.round_id == rnd.id, Assignment.labeler_id == labeler_id
            )
        ).first()
        if assignment is None:
            kind = "thumbs" if thumbs is not None else "ranking"
            assignment = Assignment(
                prompt_id=prompt_id,
                round_id=rnd.id,
                labeler_id=labeler_id,
                task_type=kind,
                display_order=display_order or ids,
                status="submitted",
                lease_expires_at=datetime.now(timezone.utc) + timedelta(minutes=30),
            )
            s.add(assignment)
            s.flush()
        kind = "skip" if skip else ("thumbs" if thumbs is not None else "ranking")
        j = Judgement(
            assignment_id=assignment.id,
            labeler_id=labeler_id,
            prompt_id=prompt_id,
            round_id=rnd.id,
            kind=kind,
            ranking=ranking,
            thumbs={str(k): v for k, v in thumbs.items()} if thumbs else None,
            unusable={str(k): v for k, v in (unusable or {}).items()},
            skip_reason=skip,
            comment=comment,
            guideline_version_id=guideline_id,
            seconds_spent=12.5,
            idempotency_key=f"k{next(_keys)}",
            supersedes_id=supersedes,
        )
        s.add(j)
        s.flush()
        return j.id
