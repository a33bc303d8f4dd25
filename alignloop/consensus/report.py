"""The project's consensus: read judgements from the store, aggregate, measure, score labelers.

Judgements are append-only, so the live verdicts are found first: a judgement named by
another's ``supersedes_id`` is replaced by it, and ``skip`` judgements are left out.
A consensus unit is the completions of one (round, prompt) that were judged together: for a
labeling task, every completion shown; for feedback on a served model (``serve`` rounds),
the answers the user's feedback names (one thumb, or the two answers chosen between), so
each exchange is judged on its own. Units are grouped by K (completions per unit) into
``RankingSet`` arrays. Each judgement enters as the tiers its task type reads
from it (``TaskType.tiers``: thumbs become two-tier rankings, every thumbs-up above every
thumbs-down), so agreement and labeler quality cover every task type.

The pipeline: groups of labelers with different tastes (``groups.find_groups``) → labeler
quality (leave-one-out, each labeler against their own group when there are several) → consensus weighted by quality
with flagged labelers left out → Kendall's W per prompt, Krippendorff's alpha and the
pairwise agreement rate over the project.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import select

from alignloop.consensus.aggregate import Consensus, aggregate
from alignloop.consensus.agreement import (
    kendall_w,
    krippendorff_alpha,
    pairwise_agreement,
    rank_units,
)
from alignloop.consensus.config import METHODS, WEIGHTINGS, ConsensusConfig, Method
from alignloop.consensus.groups import LabelerGroup, find_groups
from alignloop.consensus.quality import LabelerQuality, labeler_quality, quality_weights
from alignloop.consensus.rankings import RankingSet, ranks_to_tiers, tiers_to_ranks
from alignloop.errors import AlignloopError, InputError
from alignloop.jsonl import write_jsonl
from alignloop.project import ProjectHandle
from alignloop.store import Assignment, GuidelineVersion, Judgement, Labeler, Round
from alignloop.task_types import TASK_TYPES

log = logging.getLogger(__name__)


@dataclass
class PromptConsensus:
    """The consensus on one prompt's completions in one round."""

    prompt_id: int
    ranking: list[list[int]]  # tiers best→worst of completion ids; unusable ones last
    kendall_w: float  # agreement of the counted labelers; NaN with fewer than two
    n_labelers: int  # live judgements counted
    round_index: int = 0
    completion_ids: list[int] = field(default_factory=list)  # sorted ids: the columns of the arrays
    labeler_ids: list[int] = field(default_factory=list)  # labelers whose judgements were read
    unusable: list[int] = field(default_factory=list)  # completion ids flagged by a counted labeler
    guideline_version: int | None = None  # newest guideline version among the judgements
    thumbs: dict[int, int] | None = None  # thumbs tasks: consensus vote per completion (+1, −1, 0 = split)


@dataclass
class Unit:
    """Where one prompt of a group lives: its row in the group's arrays and its metadata."""

    prompt_id: int
    round_index: int
    completion_ids: list[int]
    guideline_version: int | None
    thumbs: dict[int, dict[int, int]] | None  # majority-vote tasks (thumbs): labeler id → {completion id: +1 | −1}
    task_type: str = "ranking"  # the task type whose pairs rule applies (a voting one when any judgement votes)


@dataclass
class Group:
    """All units with the same K: their rankings, consensus and per-unit metadata."""

    rankings: RankingSet
    consensus: Consensus
    weights: np.ndarray  # (P, R) vote weights used for the consensus (0 = not counted)
    units: list[Unit]


@dataclass
class ConsensusReport:
    """Everything ``alignloop consensus`` shows; ``groups`` carries the arrays pairs are built from."""

    prompts: list[PromptConsensus]
    labelers: list[LabelerQuality]
    krippendorff_alpha: float  # ordinal, over every (prompt, completion) with two or more labelers
    pairwise_agreement: float  # share of labeler pairs ordering a completion pair alike
    kendall_w_mean: float  # mean Kendall's W over prompts with two or more labelers
    method: str = "auto"
    round_kinds: dict[int, str] = field(default_factory=dict)  # round index → "train" | "eval" | "serve"
    groups: list[Group] = field(default_factory=list, repr=False)
    labeler_groups: list[LabelerGroup] = field(default_factory=list)  # tastes; two or more: scored apart

    def summary(self) -> dict[str, Any]:
        """The JSON-able headline numbers, the labeler groups and the per-labeler table."""
        names = {q.labeler_id: q.name for q in self.labelers}
        return {
            "prompts": len(self.prompts),
            "judged_by_two_or_more": sum(p.n_labelers >= 2 for p in self.prompts),
            "krippendorff_alpha": _num(self.krippendorff_alpha),
            "pairwise_agreement": _num(self.pairwise_agreement),
            "kendall_w_mean": _num(self.kendall_w_mean),
            "method": self.method,
            "labeler_groups": [
                {
                    "group": g.index,
                    "labeler_ids": g.labeler_ids,
                    "names": [names.get(lid, str(lid)) for lid in g.labeler_ids],
                    "agreement": _num(g.agreement),
                }
                for g in self.labeler_groups
            ],
            "labelers": [
                {
                    "labeler_id": q.labeler_id,
                    "name": q.name,
                    "n_ranked": q.n_ranked,
                    "n_judgements": q.n_judgements,
                    "tau": _num(q.tau),
                    "tau_shrunk": _num(q.tau_shrunk),
                    "position_bias": _num(q.position_bias),
                    "flagged": q.flagged,
                    "reason": q.reason,
                    "group": q.group,
                }
                for q in self.labelers
            ],
        }


def _num(x: float) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 6)


def run_consensus(handle: ProjectHandle, config: ConsensusConfig) -> ConsensusReport:
    """The ``consensus`` stage from its settings: aggregate the project's judgements and write the
    report into ``out`` (default ``<project>/consensus``)."""
    report = project_consensus(
        handle,
        round_index=config.round_index,
        method=config.method,
        weighting=config.weighting,
        exclude_flagged=not config.include_flagged,
    )
    write_consensus(report, config.out if config.out is not None else handle.dir / "consensus")
    return report


def write_consensus(report: ConsensusReport, out_dir: str | Path) -> Path:
    """Write ``summary.json``, ``prompts.jsonl`` (one consensus per prompt) and ``labelers.png`` into
    ``out_dir``; returns it. A report without prompts is refused before anything is written."""
    from alignloop.consensus.chart import labeler_quality_chart

    if not report.prompts:
        raise AlignloopError("no judgements to aggregate yet; label some prompts first (`alignloop serve`)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = report.summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_jsonl(
        out / "prompts.jsonl",
        (
            {
                "prompt_id": p.prompt_id,
                "round": p.round_index,
                "ranking": p.ranking,
                "kendall_w": _num(p.kendall_w),
                "n_labelers": p.n_labelers,
                "labeler_ids": p.labeler_ids,
                "unusable": p.unusable,
                "thumbs": p.thumbs,
                "guideline_version": p.guideline_version,
            }
            for p in report.prompts
        ),
    )
    labeler_quality_chart(summary["labelers"], out / "labelers.png")
    return out


@dataclass
class _Verdict:
    labeler_id: int
    ranks: np.ndarray
    unusable: np.ndarray
    first_shown: int
    thumbs: dict[int, int] | None
    guideline_version: int | None
    task_type: str


_JUDGEMENT_COLUMNS = (
    Judgement.id,
    Judgement.assignment_id,
    Judgement.labeler_id,
    Judgement.prompt_id,
    Judgement.kind,
    Judgement.ranking,
    Judgement.thumbs,
    Judgement.unusable,
    Judgement.supersedes_id,
)


class _JudgementRow(NamedTuple):
    id: int
    assignment_id: int
    labeler_id: int
    prompt_id: int
    kind: str
    ranking: list | None
    thumbs: dict | None
    unusable: dict | None
    supersedes_id: int | None


def live_judgements(session: Any, project_id: int, round_index: int | None = None) -> list[tuple]:
    """(judgement row, display_order, round index, guideline version) for the live, non-skip
    judgements of a project: superseded judgements are replaced by their correction.

    The judgement row is a plain row with the columns of ``_JUDGEMENT_COLUMNS`` (no ORM
    objects: reading 300 000 of them as ORM instances costs seconds).
    """
    query = (
        select(*_JUDGEMENT_COLUMNS, Assignment.display_order, Round.index, GuidelineVersion.version)
        .join(Assignment, Assignment.id == Judgement.assignment_id)
        .join(Round, Round.id == Judgement.round_id)
        .outerjoin(GuidelineVersion, GuidelineVersion.id == Judgement.guideline_version_id)
        .where(Round.project_id == project_id)
        .order_by(Judgement.id)
    )
    if round_index is not None:
        query = query.where(Round.index == round_index)
    n = len(_JUDGEMENT_COLUMNS)
    rows = [(_JudgementRow(*row[:n]), *row[n:]) for row in session.execute(query).all()]
    superseded = {j.supersedes_id for j, *_ in rows if j.supersedes_id is not None}
    latest: dict[tuple[int, int, tuple[int, ...] | None], tuple] = {}
    for row in rows:
        j, display_order = row[0], row[1]
        if j.id not in superseded:
            unit = tuple(sorted(int(c) for c in display_order)) if j.kind == "skip" else judged_ids(j, display_order)
            latest[(j.assignment_id, j.labeler_id, unit)] = row  # the newest live one wins
    return [row for row in latest.values() if row[0].kind != "skip"]


def judged_ids(j: _JudgementRow, display_order: list) -> tuple[int, ...] | None:
    """The completions a judgement speaks about, sorted: those its answer names (the thumbs given, the
    completions ranked). A labeling task's answer names every completion shown; a user's feedback on a
    served model names one answer or two of those they were shown. None when the answer names a
    completion that was not shown, or none at all."""
    task_type = TASK_TYPES[j.kind]
    answer = getattr(j, task_type.column)
    shown = sorted(int(c) for c in display_order)
    votes = task_type.votes(answer)
    named = set(votes) if votes is not None else {c for tier in task_type.tiers(answer, shown) for c in tier}
    if not named or not named <= set(shown):
        return None
    return tuple(sorted(named))


def project_consensus(
    handle: ProjectHandle,
    *,
    round_index: int | None = None,
    method: Method = "auto",
    weighting: str = "quality",
    exclude_flagged: bool = True,
) -> ConsensusReport:
    """Consensus of every judged prompt of the project (one round, or all of them).

    ``weighting`` is ``quality`` (votes weighted by each labeler's shrunk tau) or ``equal``;
    ``exclude_flagged`` leaves flagged labelers out of the consensus (never out of the report).
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r} (choose from {', '.join(METHODS)})", field="method")
    if weighting not in WEIGHTINGS:
        raise InputError(f"unknown weighting {weighting!r} (choose from {', '.join(WEIGHTINGS)})", field="weighting")
    with handle.store.session() as s:
        rows = live_judgements(s, handle.project_id, round_index)
        names = dict(s.execute(select(Labeler.id, Labeler.name)).all())
        round_kinds = dict(
            s.execute(select(Round.index, Round.kind).where(Round.project_id == handle.project_id)).all()
        )
    units: dict[tuple[int, int, tuple[int, ...]], list[_Verdict]] = defaultdict(list)
    for j, display_order, r_index, g_version in rows:
        ids = judged_ids(j, display_order)
        verdict = None if ids is None else _verdict(j, display_order, list(ids), g_version)
        if ids is None or verdict is None:
            log.warning("judgement %d names completions that were not shown; left out", j.id)
            continue
        units[(r_index, j.prompt_id, ids)].append(verdict)
    labeler_names = {lid: names[lid] for vs in units.values() for lid in (v.labeler_id for v in vs)}
    by_k: dict[int, list[tuple[int, int, tuple[int, ...]]]] = defaultdict(list)
    for key in sorted(units):
        by_k[len(key[2])].append(key)
    sets = {k: _ranking_set([units[key] for key in keys], k) for k, keys in by_k.items()}
    labeler_groups = find_groups(list(sets.values()), labeler_names)
    quality = labeler_quality(list(sets.values()), labeler_names, method=method, groups=labeler_groups)
    groups: list[Group] = []
    prompts: list[PromptConsensus] = []
    for k, keys in by_k.items():
        rs = sets[k]
        if weighting == "quality":
            weights = quality_weights(rs, quality, exclude_flagged=exclude_flagged)
        else:
            flagged = {q.labeler_id for q in quality if q.flagged and exclude_flagged}
            weights = np.where(rs.mask & ~np.isin(rs.labeler_ids, list(flagged)), 1.0, 0.0)
        cons = aggregate(rs, method=method, weights=weights)
        w = kendall_w(rs.with_mask(weights > 0))
        group_units = [_unit(key, units[key]) for key in keys]
        groups.append(Group(rankings=rs, consensus=cons, weights=weights, units=group_units))
        for row, unit in enumerate(group_units):
            counted = rs.mask[row] & (weights[row] > 0)
            prompts.append(
                PromptConsensus(
                    prompt_id=unit.prompt_id,
                    ranking=ranks_to_tiers(cons.ranks[row], unit.completion_ids),
                    kendall_w=float(w[row]),
                    n_labelers=int(counted.sum()),
                    round_index=unit.round_index,
                    completion_ids=unit.completion_ids,
                    labeler_ids=[int(x) for x in rs.labeler_ids[row][rs.mask[row]]],
                    unusable=[c for c, u in zip(unit.completion_ids, cons.unusable[row]) if u],
                    guideline_version=unit.guideline_version,
                    thumbs=_thumbs_consensus(unit, rs, row, counted),
                )
            )
    prompts.sort(key=lambda p: (p.round_index, p.prompt_id))
    all_sets = list(sets.values())
    ws = np.array([p.kendall_w for p in prompts if not np.isnan(p.kendall_w)])
    return ConsensusReport(
        prompts=prompts,
        labelers=quality,
        krippendorff_alpha=krippendorff_alpha(rank_units(all_sets)) if all_sets else float("nan"),
        pairwise_agreement=pairwise_agreement(all_sets),
        kendall_w_mean=float(ws.mean()) if len(ws) else float("nan"),
        method=method,
        round_kinds=round_kinds,
        groups=groups,
        labeler_groups=labeler_groups.groups,
    )


def _verdict(j: _JudgementRow, display_order: list, ids: list[int], g_version: int | None) -> _Verdict | None:
    unusable = {int(c) for c in (j.unusable or {})}
    task_type = TASK_TYPES[j.kind]
    answer = getattr(j, task_type.column)
    tiers = task_type.tiers(answer, ids)
    if sorted(c for t in tiers for c in t) != ids:
        return None
    shown_first = int(display_order[0]) if display_order else None
    first = ids.index(shown_first) if task_type.position_bias and shown_first in ids else -1
    return _Verdict(
        labeler_id=j.labeler_id,
        ranks=tiers_to_ranks(tiers, ids, unusable),
        unusable=np.array([c in unusable for c in ids]),
        first_shown=first,
        thumbs=task_type.votes(answer),
        guideline_version=g_version,
        task_type=task_type.name,
    )


def _ranking_set(verdicts: list[list[_Verdict]], k: int) -> RankingSet:
    p = len(verdicts)
    r = max(len(v) for v in verdicts)
    ranks = np.zeros((p, r, k))
    unusable = np.zeros((p, r, k), dtype=bool)
    mask = np.zeros((p, r), dtype=bool)
    labelers = np.full((p, r), -1, dtype=np.int64)
    first = np.full((p, r), -1, dtype=np.int64)
    for i, vs in enumerate(verdicts):
        for slot, v in enumerate(sorted(vs, key=lambda v: v.labeler_id)):
            ranks[i, slot] = v.ranks
            unusable[i, slot] = v.unusable
            mask[i, slot] = True
            labelers[i, slot] = v.labeler_id
            first[i, slot] = v.first_shown
    return RankingSet(ranks=ranks, mask=mask, unusable=unusable, labeler_ids=labelers, first_shown=first)


def _unit(key: tuple[int, int, tuple[int, ...]], verdicts: list[_Verdict]) -> Unit:
    versions = [v.guideline_version for v in verdicts if v.guideline_version is not None]
    votes = {v.labeler_id: v.thumbs for v in verdicts if v.thumbs is not None}
    voting = [v.task_type for v in verdicts if v.thumbs is not None]
    return Unit(
        prompt_id=key[1],
        round_index=key[0],
        completion_ids=list(key[2]),
        guideline_version=max(versions) if versions else None,
        thumbs=votes or None,
        task_type=(voting or [verdicts[0].task_type])[0],
    )


def _thumbs_consensus(unit: Unit, rs: RankingSet, row: int, counted: np.ndarray) -> dict[int, int] | None:
    """Majority thumb per completion among counted labelers; an unusable flag counts as down."""
    if unit.thumbs is None:
        return None
    keep = {int(x) for x in rs.labeler_ids[row][counted]}
    flagged = rs.unusable[row][counted].any(axis=0)  # (K,)
    out = {}
    for col, c in enumerate(unit.completion_ids):
        total = sum(votes.get(c, 0) for lid, votes in unit.thumbs.items() if lid in keep)
        out[c] = -1 if flagged[col] else int(np.sign(total))
    return out
