"""Rounds: what each turn of the loop sampled from, trained and measured.

A round row records the policy its completions were sampled from; as the stages run
with ``--project`` they add to it: the pairs file exported (``dataset``), the reward
model trained (``reward_model``), and in ``metrics`` the trained policy
(``trained_policy``), the RL run, the evaluation and any stage metrics. Every stage notes
its results through ``record`` (``record_in_project`` when it holds only the project's
directory). ``next_round`` starts the following round from the newest trained policy on
fresh prompts.

What is trained or measured for one labeler group (``train-rl --group``, ``evaluate --group``)
is noted under ``metrics["groups"][<group>]`` with the same keys (``record(..., group=)``), so
the round's own keys stay those of the pooled policy that the loop continues from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from alignloop.errors import AlignloopError, InputError
from alignloop.project import ProjectHandle, open_project
from alignloop.store import Completion, Round


@dataclass
class RoundInfo:
    index: int
    kind: str
    policy: str
    reward_model: str | None
    dataset: str | None
    metrics: dict[str, Any]
    completions: int


def record(
    handle: ProjectHandle,
    *,
    reward_model: str | Path | None = None,
    dataset: str | Path | None = None,
    group: str | None = None,
    **metrics: Any,
) -> None:
    """Note an artifact or metrics on the current training round; with ``group``, the metrics are labeler
    group ``group``'s and go under ``metrics["groups"][group]``, leaving the round's own keys alone."""
    with handle.store.session() as s:
        current = handle.current_round(s)
        if reward_model is not None:
            current.reward_model = str(reward_model)
        if dataset is not None:
            current.dataset = str(dataset)
        if group is not None:
            groups = dict((current.metrics or {}).get("groups") or {})
            groups[group] = {**groups.get(group, {}), **metrics}
            metrics = {"groups": groups}
        if metrics:
            current.metrics = {**(current.metrics or {}), **metrics}


def record_in_project(project: str | Path | None, **artifacts: Any) -> None:
    """``record`` on the project in directory ``project``; nothing when a stage ran without a project."""
    if project is None:
        return
    with open_project(project) as handle:
        record(handle, **artifacts)


def latest_policy(handle: ProjectHandle, group: str | None = None) -> str | None:
    """The newest policy a training round recorded, trained to be compared: labeler group ``group``'s, or
    without one the pooled policy, the round's ``trained_policy`` or else the model of its RL run (an
    unmerged LoRA adapter, which ``latest_trained_policy`` leaves out because a round cannot sample from it)."""
    for info in reversed(list_rounds(handle)):
        if info.kind != "train":  # the rounds stages record on (``current_round``)
            continue
        if group is not None:
            policy = (info.metrics.get("groups") or {}).get(group, {}).get("trained_policy")
        else:
            run = info.metrics.get("rl_run")
            policy = info.metrics.get("trained_policy") or (str(Path(run) / "model") if run else None)
        if policy:
            return str(policy)
    return None


def group_policies(handle: ProjectHandle) -> dict[str, str]:
    """Each labeler group's newest trained policy (``train-rl --group``), by group name."""
    found: dict[str, str] = {}
    for info in list_rounds(handle):  # oldest first, so a later round's policy replaces an earlier one
        if info.kind != "train":
            continue
        for group, entry in (info.metrics.get("groups") or {}).items():
            if entry.get("trained_policy"):
                found[group] = str(entry["trained_policy"])
    return found


def list_rounds(handle: ProjectHandle) -> list[RoundInfo]:
    with handle.store.session() as s:
        counts = dict(s.execute(select(Completion.round_id, func.count()).group_by(Completion.round_id)).all())
        rows = s.scalars(select(Round).where(Round.project_id == handle.project_id).order_by(Round.index))
        return [
            RoundInfo(r.index, r.kind, r.policy, r.reward_model, r.dataset, dict(r.metrics or {}), counts.get(r.id, 0))
            for r in rows
        ]


def latest_trained_policy(handle: ProjectHandle) -> str | None:
    for info in reversed(list_rounds(handle)):
        if info.kind == "train" and info.metrics.get("trained_policy"):
            return str(info.metrics["trained_policy"])
    return None


def next_round(handle: ProjectHandle, *, policy: str | None = None) -> RoundInfo:
    """Open the next training round, sampling from ``policy`` (default: the newest trained policy)."""
    policy = policy or latest_trained_policy(handle)
    if policy is None:
        raise AlignloopError("no trained policy yet: run `alignloop train-ppo --project ...` (or pass --policy)")
    with handle.store.session() as s:
        current = handle.current_round(s)
        if not s.scalar(select(func.count()).select_from(Completion).where(Completion.round_id == current.id)):
            raise AlignloopError(f"round {current.index} has no completions yet; generate and label it first")
        new = Round.append(s, handle.project_id, "train", policy)
        return RoundInfo(new.index, new.kind, new.policy, None, None, {}, 0)


def group_comparison(project: str | Path | None, group: str | None) -> list[str]:
    """What an evaluation of labeler group ``group`` compares when no models are named: the project's
    pooled policy (the baseline), then the group's newest policy."""
    if group is None:
        raise InputError("name the models to compare (the first is the baseline)", field="--models")
    if project is None:
        raise InputError(
            f"name the models to compare, or give --project to compare the policies it recorded for group {group!r}",
            field="--models",
        )
    with open_project(project) as handle:
        pooled, own = latest_policy(handle), latest_policy(handle, group)
    if own is None:
        raise AlignloopError(
            f"{project} records no policy of labeler group {group!r}: train one with `alignloop train-rl --project "
            f"{project} --reward-model <per-group reward model> --group {group}`, or name the models with --models"
        )
    if pooled is None:
        raise AlignloopError(
            f"{project} records no pooled policy to compare group {group!r}'s with: train one with `alignloop "
            f"train-rl --project {project} --reward-model <pooled reward model>`, or name the models with --models "
            f"(the starting policy first, say, then {own})"
        )
    return [pooled, own]
