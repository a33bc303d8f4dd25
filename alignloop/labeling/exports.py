"""Admin exports: the raw judgement log, and the pairs and labeler-quality views of the later stages.

The judgement log is this stage's own output: every row of the append-only table, nothing
dropped. Superseded judgements and skips are exported too (``superseded_by`` names the
correction), with the assignment's display order and timing, the guideline version, and
optionally the prompt and completion texts so the file stands on its own. The admin API
(``/api/admin/export/judgements``) and ``alignloop export-judgements`` write this one shape.

Pairs and labeler quality are the consensus and pairs stages' (``alignloop.consensus``,
``alignloop.pairs``), imported inside the functions that use them, so starting the app loads
neither numpy nor the consensus code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from alignloop.jsonl import write_jsonl
from alignloop.project import ProjectHandle
from alignloop.store import Assignment, Completion, GuidelineVersion, Judgement, Labeler, Prompt, Round

if TYPE_CHECKING:
    from alignloop.labeling.service import LabelingService


def jsonl_stream(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for row in rows:
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode()


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def judgement_rows(
    handle: ProjectHandle, *, round_index: int | None = None, texts: bool = True
) -> Iterator[dict[str, Any]]:
    """One dict per judgement of the project, oldest first."""
    query = (
        select(Judgement, Assignment, Labeler.name, Round.index, GuidelineVersion.version)
        .join(Assignment, Assignment.id == Judgement.assignment_id)
        .join(Labeler, Labeler.id == Judgement.labeler_id)
        .join(Round, Round.id == Judgement.round_id)
        .outerjoin(GuidelineVersion, GuidelineVersion.id == Judgement.guideline_version_id)
        .where(Round.project_id == handle.project_id)
        .order_by(Judgement.id)
    )
    if round_index is not None:
        query = query.where(Round.index == round_index)
    with handle.store.session() as s:
        rows = s.execute(query).all()
        superseded_by = {j.supersedes_id: j.id for j, *_ in rows if j.supersedes_id is not None}
        prompts: dict[int, tuple[str, Any]] = {}
        completions: dict[int, str] = {}
        if texts:
            prompt_ids = sorted({j.prompt_id for j, *_ in rows})
            for start in range(0, len(prompt_ids), 5000):
                chunk = prompt_ids[start : start + 5000]
                for pid, text, messages in s.execute(
                    select(Prompt.id, Prompt.text, Prompt.messages).where(Prompt.id.in_(chunk))
                ):
                    prompts[pid] = (text, messages)
            shown = sorted({int(c) for _, a, *_ in rows for c in a.display_order})
            for start in range(0, len(shown), 5000):
                query_c = select(Completion.id, Completion.text).where(Completion.id.in_(shown[start : start + 5000]))
                completions.update({cid: text for cid, text in s.execute(query_c)})
    for j, a, name, r_index, g_version in rows:
        row: dict[str, Any] = {
            "id": j.id,
            "assignment_id": j.assignment_id,
            "labeler_id": j.labeler_id,
            "labeler": name,
            "prompt_id": j.prompt_id,
            "round": r_index,
            "kind": j.kind,
            "task_type": a.task_type,
            "display_order": list(a.display_order),
            "ranking": j.ranking,
            "thumbs": j.thumbs,
            "unusable": j.unusable or {},
            "comment": j.comment,
            "skip_reason": j.skip_reason,
            "guideline_version": g_version,
            "seconds_spent": j.seconds_spent,
            "idempotency_key": j.idempotency_key,
            "supersedes_id": j.supersedes_id,
            "superseded_by": superseded_by.get(j.id),
            "created_at": _iso(j.created_at),
            "assignment_status": a.status,
            "leased_at": _iso(a.leased_at),
            "completed_at": _iso(a.completed_at),
        }
        if texts:
            text, messages = prompts[j.prompt_id]
            row["prompt"] = text
            row["messages"] = messages
            row["completions"] = [{"id": int(c), "text": completions[int(c)]} for c in a.display_order]
        yield row


def export_judgements(
    handle: ProjectHandle, path: str | Path, *, round_index: int | None = None, texts: bool = True
) -> int:
    """Write every judgement as JSONL (atomically); returns the number written."""
    return write_jsonl(path, judgement_rows(handle, round_index=round_index, texts=texts))


def export_pairs_rows(
    svc: LabelingService, *, fmt: str, source: str = "consensus", min_agreement: float = 0.0
) -> list[dict[str, Any]]:
    """Preference pairs of the whole project in ``fmt``, a name in ``alignloop.pairs.FORMATS``."""
    from alignloop.pairs import build_pairs, format_rows

    with svc.open_handle() as handle:
        return format_rows(build_pairs(handle, source=source, min_agreement=min_agreement), fmt)


def quality_report(svc: LabelingService) -> dict[str, Any]:
    """The consensus report as JSON: ``{"available": False, "message"}`` when the stage has no data yet."""
    from alignloop.consensus.report import project_consensus

    with svc.open_handle() as handle:
        try:
            report = project_consensus(handle)
        except Exception as exc:  # the stage refuses (e.g. not enough judgements yet): show why
            return {"available": False, "message": f"no consensus yet: {exc}"}
    # summary() turns undefined statistics (NaN: too few overlapping judgements) into null for JSON.
    return {"available": True, **report.summary()}


def quality_chart_html(labelers: list[dict[str, Any]]) -> str:
    """The consensus stage's labeler-quality chart (``labelers.png``) as an inline image for the admin page."""
    import base64

    from alignloop.consensus.chart import labeler_quality_png

    data = base64.b64encode(labeler_quality_png(labelers)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="Agreement and position bias of each labeler">'
