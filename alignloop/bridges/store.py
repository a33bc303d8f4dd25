"""Tasks from a labeling tool into the feedback store, and the store's open tasks out to the tool.

Importing is one transaction: annotators become labeler accounts (by name, with no password
and no invite, so they cannot sign in until an admin invites them), prompts go through the
project's prompt import (same hash, de-duplication and split as ``prompts add``), answers become
completions of a round of kind ``train`` whose policy reads ``imported:<format>``, and each
annotation becomes a submitted assignment (display order = the answers' order in the file) and
an append-only judgement. A task that ``export-tasks`` wrote names its round and prompt; its
judgements attach to those completions instead. The idempotency key of a judgement is derived
from (the file's sha256, the task id, the annotator), so importing the same file twice adds nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alignloop.bridges.tasks import ExternalTask, TaskError, TaskKeys
from alignloop.bridges.tools import TOOLS
from alignloop.errors import AlignloopError, InputError
from alignloop.project import ProjectHandle
from alignloop.prompts import PromptRow, find_prompt, store_prompts
from alignloop.store import Assignment, Completion, Judgement, Labeler, Prompt, Round


@dataclass
class ImportResult:
    tasks: int  # tasks read from the file
    judgements: int  # judgements stored now
    already_imported: int  # judgements this file had stored before (same file, task and annotator)
    labelers_created: int
    prompts_added: int
    round_index: int | None  # the round the file's own tasks went to; None when every task came from export-tasks


def file_sha256(path: Path) -> str:
    target = path / "records.json" if path.is_dir() else path
    return hashlib.sha256(target.read_bytes()).hexdigest()


def import_judgements(handle: ProjectHandle, path: str | Path, fmt: str, keys: TaskKeys) -> ImportResult:
    """Read ``path`` completely, then store its tasks and judgements in one transaction (all or nothing)."""
    reader = TOOLS.get(fmt, field="--format")
    path = Path(path)
    tasks: list[ExternalTask] = reader.read_tasks(path, keys)
    if not tasks:
        raise InputError("holds no tasks", file=path)
    for task in tasks:
        if len(set(task.answers)) != len(task.answers):
            raise TaskError("two answers have the same text", file=path, task=task.index, field="answers")
    digest = file_sha256(path)
    now = datetime.now(timezone.utc)
    stored = already = created = 0
    with handle.store.session() as s:
        own = [t for t in tasks if t.origin is None]
        added = store_prompts(s, handle, [PromptRow(t.prompt, None) for t in own], f"{fmt}:{path}")
        round_ = _imported_round(s, handle, fmt, path, digest) if own else None
        labelers = {row.name: row for row in s.scalars(select(Labeler))}
        for task in tasks:
            round_id, prompt_id, order = (
                _exported_completions(s, handle, path, task)
                if task.origin is not None
                else _own_completions(s, handle, path, task, round_, fmt)
            )
            for judgement in task.judgements:
                labeler = labelers.get(judgement.annotator)
                if labeler is None:
                    labeler = _new_labeler(s, path, task, judgement.annotator)
                    labelers[labeler.name] = labeler
                    created += 1
                key = _idempotency_key(fmt, digest, task.task_id, judgement.annotator)
                if s.scalar(
                    select(Judgement.id).where(Judgement.labeler_id == labeler.id, Judgement.idempotency_key == key)
                ):
                    already += 1
                    continue
                taken = s.scalar(
                    select(Assignment.id).where(
                        Assignment.prompt_id == prompt_id,
                        Assignment.round_id == round_id,
                        Assignment.labeler_id == labeler.id,
                    )
                )
                if taken is not None:
                    raise TaskError(
                        f"{labeler.name} already has a task on this prompt in this round (labeled in the app, "
                        "or imported from another file)",
                        file=path,
                        task=task.index,
                        field="annotator",
                    )
                assignment = Assignment(
                    prompt_id=prompt_id,
                    round_id=round_id,
                    labeler_id=labeler.id,
                    task_type="ranking",
                    display_order=order,
                    status="submitted",
                    leased_at=now,
                    lease_expires_at=now,
                    completed_at=now,
                )
                s.add(assignment)
                s.flush()
                s.add(
                    Judgement(
                        assignment_id=assignment.id,
                        labeler_id=labeler.id,
                        prompt_id=prompt_id,
                        round_id=round_id,
                        kind="ranking",
                        ranking=[[order[position] for position in tier] for tier in judgement.ranking],
                        unusable={},
                        seconds_spent=judgement.seconds_spent,
                        idempotency_key=key,
                        created_at=now,
                    )
                )
                stored += 1
        s.flush()
        round_index = round_.index if round_ is not None else None
    return ImportResult(len(tasks), stored, already, created, added, round_index)


def _idempotency_key(fmt: str, digest: str, task_id: str, annotator: str) -> str:
    return f"import:{fmt}:" + hashlib.sha256(f"{digest}\0{task_id}\0{annotator}".encode()).hexdigest()


def _imported_round(s: Session, handle: ProjectHandle, fmt: str, path: Path, digest: str) -> Round:
    """The round this file was imported into before, or a new one."""
    policy = f"imported:{fmt}"
    for row in s.scalars(select(Round).where(Round.project_id == handle.project_id, Round.policy == policy)):
        if (row.metrics or {}).get("imported", {}).get("sha256") == digest:
            return row
    return Round.append(s, handle.project_id, "train", policy, {"imported": {"file": str(path), "sha256": digest}})


def _own_completions(
    s: Session, handle: ProjectHandle, path: Path, task: ExternalTask, round_: Round | None, fmt: str
) -> tuple[int, int, list[int]]:
    """(round id, prompt id, completion ids in the task's order) for a task the file brings itself."""
    assert round_ is not None
    prompt = find_prompt(s, handle, PromptRow(task.prompt, None))
    assert prompt is not None  # stored by store_prompts above
    existing = {
        c.text: c.id
        for c in s.scalars(
            select(Completion).where(Completion.round_id == round_.id, Completion.prompt_id == prompt.id)
        )
    }
    if existing:  # the prompt came earlier in the file, or in an earlier import of it
        if set(existing) != set(task.answers):
            raise TaskError(
                "repeats the prompt of an earlier task with other answers", file=path, task=task.index, field="answers"
            )
        return round_.id, prompt.id, [existing[text] for text in task.answers]
    ids = []
    for n, text in enumerate(task.answers):
        completion = Completion(
            prompt_id=prompt.id,
            round_id=round_.id,
            sample_index=n,
            text=text,
            model=f"imported:{fmt}",
            seed=0,
            params={},
            prompt_tokens=0,
            completion_tokens=0,
            finish_reason="imported",
        )
        s.add(completion)
        s.flush()
        ids.append(completion.id)
    return round_.id, prompt.id, ids


def _exported_completions(
    s: Session, handle: ProjectHandle, path: Path, task: ExternalTask
) -> tuple[int, int, list[int]]:
    """(round id, prompt id, completion ids in the task's order) for a task that export-tasks wrote."""
    assert task.origin is not None
    round_index, prompt_id = task.origin
    round_ = s.scalars(select(Round).where(Round.project_id == handle.project_id, Round.index == round_index)).first()
    rows = (
        s.scalars(select(Completion).where(Completion.round_id == round_.id, Completion.prompt_id == prompt_id)).all()
        if round_ is not None
        else []
    )
    by_text = {c.text: c.id for c in rows}
    if not rows or set(by_text) != set(task.answers):
        raise TaskError(
            f"names prompt {prompt_id} of round {round_index}, but this project has no such completions "
            "(exported from another project, or the answers were edited)",
            file=path,
            task=task.index,
            field="alignloop",
        )
    return round_.id, prompt_id, [by_text[text] for text in task.answers]


def _new_labeler(s: Session, path: Path, task: ExternalTask, name: str) -> Labeler:
    """An account that cannot sign in (no password, no invite) until an admin invites it."""
    from alignloop.labeling.accounts import _check_name

    try:
        _check_name(name)
    except InputError as exc:
        raise TaskError(f"annotator {name!r}: {exc.message}", file=path, task=task.index, field="annotator") from None
    labeler = Labeler(name=name, role="labeler", password_hash=None, invite_token_hash=None)
    s.add(labeler)
    s.flush()
    return labeler


def export_tasks(handle: ProjectHandle, out: str | Path, fmt: str, keys: TaskKeys) -> int:
    """Write the current round's open prompts (fewer submitted judgements than the overlap) with their
    completions in ``fmt``'s import format; returns the number of tasks written."""
    writer = TOOLS.get(fmt, field="--format")
    overlap = handle.config.labeling.overlap
    with handle.store.session() as s:
        round_ = Round.newest(s, handle.project_id, "train")
        if round_ is None:
            raise AlignloopError("the project has no round yet; sample one with `alignloop generate`")
        done = dict(
            s.execute(
                select(Assignment.prompt_id, func.count())
                .where(Assignment.round_id == round_.id, Assignment.status == "submitted")
                .group_by(Assignment.prompt_id)
            ).all()
        )
        rows = s.execute(
            select(Prompt.id, Prompt.text, Completion.text)
            .join(Completion, Completion.prompt_id == Prompt.id)
            .where(Completion.round_id == round_.id)
            .order_by(Prompt.id, Completion.sample_index)
        ).all()
        round_index = round_.index
    tasks: dict[int, ExternalTask] = {}
    for prompt_id, prompt, answer in rows:
        if done.get(prompt_id, 0) >= overlap:
            continue
        task = tasks.setdefault(
            prompt_id,
            ExternalTask(
                len(tasks), f"alignloop-r{round_index}-p{prompt_id}", prompt, [], origin=(round_index, prompt_id)
            ),
        )
        task.answers.append(answer)
    open_tasks = [t for t in tasks.values() if len(t.answers) >= 2]
    if not open_tasks:
        raise AlignloopError(f"round {round_index} has no open tasks (every prompt is judged, or none is sampled)")
    writer.write_tasks(open_tasks, Path(out), keys)
    return len(open_tasks)
