"""Active labeling: score the prompts still waiting for labels and store how unsure the reward model is.

``alignloop prioritize`` runs this in its own process (the reward model needs torch; the
labeling app never loads it). For every prompt of the round that has fewer submitted
judgements than ``labeling.overlap``, each reward model — each member of an ensemble run,
on its ensemble's raw scale (``RewardModel.member_scores``) — scores its K completions (raw
rewards), ``ranking_uncertainty`` turns the (models, K) scores into one number, and the round's rows
of ``prompt_priorities`` are replaced by these. Under ``labeling.assignment: uncertainty``
the app then offers the highest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select

from alignloop.errors import AlignloopError
from alignloop.project import ProjectHandle
from alignloop.reward.uncertainty import ranking_uncertainty
from alignloop.store import Assignment, Completion, Prompt, PromptPriority, Round


@dataclass
class ScoredPrompt:
    prompt_id: int
    text: str
    priority: float  # ranking_uncertainty of its completions' rewards


@dataclass
class PrioritizeResult:
    round_index: int
    scored: int  # prompts given a priority
    top: list[ScoredPrompt]  # the highest priorities, highest first
    assignment: str  # the project's labeling.assignment: the priorities matter only under "uncertainty"


def _round(handle: ProjectHandle, round_index: int | None) -> Round:
    """The round to prioritise: ``round_index``, or the newest training round."""
    with handle.store.session() as s:
        if round_index is None:
            found = Round.newest(s, handle.project_id, "train")
            if found is None:
                raise AlignloopError("the project has no round yet; sample completions with `alignloop generate`")
            return found
        found = s.scalars(
            select(Round).where(Round.project_id == handle.project_id, Round.index == round_index)
        ).first()
        if found is None:
            raise AlignloopError(f"the project has no round {round_index}; see `alignloop round list`")
        if found.kind != "train":
            raise AlignloopError(
                f"round {round_index} is a blind evaluation round; only training rounds are labelled by priority"
            )
        return found


def _open_prompts(handle: ProjectHandle, round_id: int) -> dict[int, tuple[Prompt, list[str]]]:
    """Prompts of the round with at least two completions and fewer than ``overlap`` submitted judgements,
    each with its completion texts in sample order; by prompt id."""
    overlap = handle.config.labeling.overlap
    with handle.store.session() as s:
        submitted = dict(
            s.execute(
                select(Assignment.prompt_id, func.count())
                .where(Assignment.round_id == round_id, Assignment.status == "submitted")
                .group_by(Assignment.prompt_id)
            ).all()
        )
        rows = s.execute(
            select(Prompt, Completion.text)
            .join(Completion, Completion.prompt_id == Prompt.id)
            .where(Completion.round_id == round_id)
            .order_by(Prompt.id, Completion.sample_index)
        ).all()
    found: dict[int, tuple[Prompt, list[str]]] = {}
    for prompt, text in rows:
        if submitted.get(prompt.id, 0) < overlap:
            found.setdefault(prompt.id, (prompt, []))[1].append(text)
    return {pid: entry for pid, entry in found.items() if len(entry[1]) >= 2}


def prioritize_prompts(
    handle: ProjectHandle,
    reward_models: Sequence[str | Path],
    *,
    round_index: int | None = None,
    top: int = 5,
    batch_size: int = 32,
) -> PrioritizeResult:
    """Score the round's prompts that still need labels with ``reward_models`` (one run, or several as an
    ensemble; an ensemble run counts as its members) and replace the round's priorities with their
    ``ranking_uncertainty``."""
    import numpy as np

    from alignloop.reward.model import RewardModel

    if not reward_models:
        raise AlignloopError("give at least one reward-model run directory (--reward-model)")
    round_ = _round(handle, round_index)
    open_prompts = _open_prompts(handle, round_.id)
    ids = list(open_prompts)
    prompts = [open_prompts[pid][0].messages or open_prompts[pid][0].text for pid in ids]
    flat_prompts = [p for p, pid in zip(prompts, ids) for _ in open_prompts[pid][1]]
    flat_texts = [t for pid in ids for t in open_prompts[pid][1]]
    members = []  # one list of raw rewards per model: each run's, or each member of an ensemble run
    for run in reward_models if ids else []:  # nothing left to label: no model to load
        model = RewardModel.load(run)
        members.extend(model.member_scores(flat_prompts, flat_texts, normalize=False, batch_size=batch_size))
        del model
    scores = np.asarray(members, dtype=np.float64).reshape(len(members), len(flat_texts))  # (M, completions)
    priorities: dict[int, float] = {}
    start = 0
    for pid in ids:
        k = len(open_prompts[pid][1])
        priorities[pid] = ranking_uncertainty(scores[:, start : start + k])  # (M, K)
        start += k
    scored_by = ", ".join(str(run) for run in reward_models)
    with handle.store.session() as s:  # one transaction: the app sees the old priorities or the new ones
        s.execute(delete(PromptPriority).where(PromptPriority.round_id == round_.id))
        s.add_all(
            PromptPriority(round_id=round_.id, prompt_id=pid, priority=value, reward_model=scored_by)
            for pid, value in priorities.items()
        )
    ranked = sorted(priorities, key=lambda pid: (-priorities[pid], pid))[:top]
    return PrioritizeResult(
        round_.index,
        len(priorities),
        [ScoredPrompt(pid, open_prompts[pid][0].text, priorities[pid]) for pid in ranked],
        handle.config.labeling.assignment,
    )
