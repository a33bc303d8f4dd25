"""Rewards for RL: a trained reward model, a Python function, or a weighted sum of several.

A spec names one reward or a sum of weighted terms::

    runs/rm                                   a reward-model run directory (normalised score)
    alignloop.judges:sentiment                MODULE:FUNCTION, called as f(prompt, completion) -> float
    my_rewards.py:exact_match                 a function in a Python file
    0.7*runs/rm+0.3*alignloop.judges:sentiment

Completions reach every reward as decoded text, so a reward model re-tokenises them
with its own tokenizer: it need not share the policy's vocabulary. A reward model trained
per labeler group (``train-reward --per-group``) scores as the ``group`` given to
``load_reward`` judges: with that group's head and its normalisation.

``preference_as_reward`` bounds a reward around what the policy already wrote (``reward_shaping: par``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from alignloop.errors import AlignloopError
from alignloop.judges import Judge, load_judge

RewardFn = Callable[[Sequence[str], Sequence[str]], list[float]]

_TERM = re.compile(r"^\s*(?:(?P<weight>-?(?:\d+\.?\d*|\.\d+))\s*\*\s*)?(?P<spec>\S.*?)\s*$")


class WeightedSum:
    """Σ weight_i · reward_i(prompts, completions), each term a batch reward function."""

    def __init__(self, terms: list[tuple[float, str, RewardFn]]) -> None:
        self.terms = terms

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        total = [0.0] * len(completions)
        for weight, _, fn in self.terms:
            for i, value in enumerate(fn(prompts, completions)):
                total[i] += weight * float(value)
        return total

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{name}" for w, name, _ in self.terms)


def load_reward(spec: str, *, device: str | None = None, batch_size: int = 32, group: str | None = None) -> RewardFn:
    """A batch reward function ``(prompts, completions) -> list[float]`` from a spec (see the module docs).

    ``group`` picks the head of every reward model in the spec, which must each be trained per labeler
    group and know it; a per-group model without a group, or a group without one, is refused before
    anything is loaded."""
    if not spec or not spec.strip():
        raise AlignloopError("no reward given: pass --reward-model RUN_DIR or MODULE:FUNCTION")
    parsed: list[tuple[float, str]] = []
    for part in _split_terms(spec):
        match = _TERM.match(part)
        if match is None:
            raise AlignloopError(
                f"cannot read reward term {part!r} in {spec!r}; expected [WEIGHT*]RUN_DIR or [WEIGHT*]MODULE:FUNCTION"
            )
        parsed.append((float(match["weight"]) if match["weight"] else 1.0, match["spec"]))
    _check_groups([name for _, name in parsed], spec, group)
    terms = [(w, name, _load_term(name, device=device, batch_size=batch_size, group=group)) for w, name in parsed]
    if len(terms) == 1 and terms[0][0] == 1.0:
        return terms[0][2]
    return WeightedSum(terms)


def _check_groups(names: list[str], spec: str, group: str | None) -> None:
    """Every reward-model term knows ``group`` (per-group models need one); a group needs such a term."""
    from alignloop.reward import check_group, saved_groups

    runs = [name for name in names if Path(name).expanduser().is_dir()]
    if group is not None and not runs:
        raise AlignloopError(
            f"group {group!r} picks a head of a per-group reward model, and the reward {spec!r} names no "
            "reward-model run directory"
        )
    for run in runs:
        check_group(saved_groups(Path(run).expanduser()), group, f"reward model {run}")


def _split_terms(spec: str) -> list[str]:
    """The ``+``-separated terms of a spec (weights are plain decimals, so ``+`` only separates)."""
    return [part for part in spec.split("+") if part.strip()]


def _load_term(name: str, *, device: str | None, batch_size: int, group: str | None) -> RewardFn:
    path = Path(name).expanduser()
    if path.is_dir():
        return _reward_model(path, device=device, batch_size=batch_size, group=group)
    if ":" in name:
        return _batched(load_judge(name, what="reward", finite=False))
    raise AlignloopError(f"reward {name!r} is neither a reward-model run directory nor MODULE:FUNCTION")


def _reward_model(path: Path, *, device: str | None, batch_size: int, group: str | None) -> RewardFn:
    from alignloop.reward import RewardModel

    model = RewardModel.load(path, device=device)

    def score(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return list(model.score(list(prompts), list(completions), normalize=True, batch_size=batch_size, group=group))

    return score


def _batched(fn: Judge) -> RewardFn:
    def score(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return [fn(prompt, completion) for prompt, completion in zip(prompts, completions)]

    return score


def check_finite(values: Sequence[float], spec: str) -> None:
    """Raise when a reward is NaN or infinite (the caller turns it into ``TrainingDiverged``)."""
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise ValueError(
            f"reward {spec} returned a non-finite value for {len(bad)} completion(s), e.g. {values[bad[0]]}"
        )


def preference_as_reward(reward: RewardFn, reference: Mapping[str, float]) -> RewardFn:
    """PAR (Fu et al. 2025): a completion's reward r becomes σ(r − r_ref(x)), with r_ref(x) the reward of
    the reference policy's answers to its prompt x (``reference_rewards``).

    The shaped reward lies in (0, 1) and is 1/2 at the reference: outdoing the reference by far pays
    little more than outdoing it clearly, so the policy gains little by going where a reward model
    extrapolates. Its slope there is 1/4, so against the KL penalty a unit of reward weighs a quarter
    of what it did. Centring on each prompt's own reference also takes out how hard the prompt is. A
    prompt without reference answers is centred on the mean of the others'."""
    fallback = sum(reference.values()) / len(reference) if reference else 0.0

    def shaped(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        raw = reward(prompts, completions)
        return [1.0 / (1.0 + math.exp(reference.get(p, fallback) - r)) for p, r in zip(prompts, raw)]

    return shaped


def reference_rewards(project: str | Path, reward: RewardFn, batch_size: int = 256) -> dict[str, float]:
    """The mean reward of each train prompt's newest answers in the project's store, by prompt text: those of
    the latest training round that sampled the prompt for labelling, written by the policy that round sampled
    from (in a project's first round, the policy RL starts from; in a later one, a prompt first labelled in an
    earlier round keeps the earlier policy's answers)."""
    from sqlalchemy import func, select

    from alignloop.project import open_project
    from alignloop.store import Completion, Prompt, Round

    with open_project(project) as handle:
        with handle.store.session() as s:
            newest = (  # the answers sampled for labelling, not those served to users or sampled to evaluate
                select(Completion.prompt_id, func.max(Completion.round_id).label("round_id"))
                .join(Round, Round.id == Completion.round_id)
                .where(Round.kind == "train")
                .group_by(Completion.prompt_id)
                .subquery()
            )
            rows = s.execute(
                select(Prompt.text, Completion.text)
                .join(Completion, Completion.prompt_id == Prompt.id)
                .join(newest, (newest.c.prompt_id == Completion.prompt_id) & (newest.c.round_id == Completion.round_id))
                .where(Prompt.project_id == handle.project_id, Prompt.split == "train")
                .order_by(Completion.id)
            ).all()
    scores: dict[str, list[float]] = {}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        values = reward([p for p, _ in chunk], [c for _, c in chunk])
        check_finite(values, "the reference answers' reward")
        for (prompt, _), value in zip(chunk, values):
            scores.setdefault(prompt, []).append(float(value))
    return {prompt: sum(values) / len(values) for prompt, values in scores.items()}
