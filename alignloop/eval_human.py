"""Blind pairwise human evaluation: two models answer the same held-out prompts; labelers pick the better.

``create_human_eval`` stores one completion per prompt from each model in a round of
kind ``eval``; the labeling app serves those prompts as ranking tasks of two
completions, shuffled per labeler, with no model names shown. ``human_eval_result``
reads the judgements back: the share of judgements in which model B's answer was
ranked above model A's (ties count one half), with a 95% Wilson interval. ``EvalHumanConfig``
holds the settings of ``alignloop eval-human`` (the store is imported where it is used, so the
CLI can read the config and stay instant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from alignloop.config import StageConfig
from alignloop.errors import AlignloopError
from alignloop.evaluate import resolve_model_dir, wilson

if TYPE_CHECKING:
    from alignloop.project import ProjectHandle


class EvalHumanConfig(StageConfig):
    """A blind pairwise human evaluation (``alignloop eval-human``): which two models, on how many prompts."""

    models: list[str] = Field(
        None,  # type: ignore[assignment]  # checked like a given value: giving none is refused by name
        validate_default=True,
        description="The two models to compare (repeat twice; the first is A).",
    )
    prompts: int = Field(50, ge=1, description="Held-out prompts in the comparison.")
    max_new_tokens: int = Field(96, ge=1, description="Longest answer, in tokens.")
    seed: int = Field(0, description="Base seed; both models answer a prompt with the one seed derived from it.")

    @field_validator("models", mode="before")
    @classmethod
    def _two_models(cls, models: Any) -> Any:
        if models is None or len(models) != 2:
            raise PydanticCustomError("two_models", "a blind pairwise evaluation compares exactly two models")
        return models


@dataclass
class HumanEvalResult:
    round_index: int
    model_a: str
    model_b: str
    judgements: int
    prompts: int
    win_rate_b: float  # P(B's answer preferred over A's), ties ½
    ci: tuple[float, float]  # 95% Wilson interval


def create_human_eval(
    handle: ProjectHandle,
    model_a: str,
    model_b: str,
    *,
    prompts: int = 50,
    max_new_tokens: int = 96,
    temperature: float = 0.7,
    seed: int = 0,
    batch_size: int = 16,
) -> tuple[int, int]:
    """Create the eval round from test-split prompts; returns (round index, prompts)."""
    from sqlalchemy import select

    from alignloop.backends import HFBackend, SamplingParams
    from alignloop.generate import slot_seed
    from alignloop.models import load_policy
    from alignloop.prompts import conversation
    from alignloop.store import Completion, Prompt, Round

    with handle.store.session() as s:
        chosen = list(
            s.scalars(
                select(Prompt)
                .where(Prompt.project_id == handle.project_id, Prompt.split == "test")
                .order_by(Prompt.id)
                .limit(prompts)
            )
        )
    if not chosen:
        raise AlignloopError("the project has no test-split prompts to evaluate on; add prompts first")
    params = SamplingParams(temperature=temperature, top_p=0.95, max_new_tokens=max_new_tokens)
    seeds = [slot_seed(seed, p.id, 0) for p in chosen]
    answers: dict[str, list] = {}
    for name in (model_a, model_b):
        model, tokenizer = load_policy(resolve_model_dir(name))
        answers[name] = HFBackend(model, tokenizer, batch_size=batch_size).generate(
            [conversation(p) for p in chosen], params, seeds
        )
        del model
    with handle.store.session() as s:
        rnd = Round.append(s, handle.project_id, "eval", f"{model_a} vs {model_b}", {"models": [model_a, model_b]})
        for p, prompt_seed, a, b in zip(chosen, seeds, answers[model_a], answers[model_b]):
            for index, (name, out) in enumerate(((model_a, a), (model_b, b))):
                s.add(
                    Completion(
                        prompt_id=p.id,
                        round_id=rnd.id,
                        sample_index=index,
                        text=out.text,
                        model=name,
                        seed=prompt_seed,  # both models answer a prompt from the same seed
                        params={"temperature": temperature, "max_new_tokens": max_new_tokens},
                        prompt_tokens=out.prompt_tokens,
                        completion_tokens=out.completion_tokens,
                        finish_reason=out.finish_reason,
                    )
                )
        return rnd.index, len(chosen)


def human_eval_result(handle: ProjectHandle, round_index: int | None = None) -> HumanEvalResult:
    """Win rate of model B over model A from the judgements of an eval round (the newest by default)."""
    from sqlalchemy import select

    from alignloop.store import Completion, Judgement, Round

    with handle.store.session() as s:
        asked = [Round.index == round_index] if round_index is not None else []
        rnd = Round.newest(s, handle.project_id, "eval", *asked)
        if rnd is None:
            raise AlignloopError("no blind evaluation yet: run `alignloop eval-human --models A B` first")
        model_a, model_b = rnd.metrics["models"]
        side = {
            c.id: c.sample_index for c in s.scalars(select(Completion).where(Completion.round_id == rnd.id))
        }  # completion id -> 0 (A) or 1 (B)
        rows = list(
            s.scalars(
                select(Judgement).where(Judgement.round_id == rnd.id, Judgement.kind.in_(("ranking", "pairwise")))
            )
        )
        superseded = {j.supersedes_id for j in rows if j.supersedes_id}
        wins, n, prompts = 0.0, 0, set()
        for j in rows:
            if j.id in superseded:
                continue
            tier = {cid: t for t, ids in enumerate(j.ranking) for cid in ids}
            a = next(t for cid, t in tier.items() if side[cid] == 0)
            b = next(t for cid, t in tier.items() if side[cid] == 1)
            wins += 1.0 if b < a else 0.5 if a == b else 0.0
            n += 1
            prompts.add(j.prompt_id)
        index = rnd.index
    if n == 0:
        raise AlignloopError(f"evaluation round {index} has no judgements yet; label it in `alignloop serve`")
    return HumanEvalResult(index, model_a, model_b, n, len(prompts), wins / n, wilson(wins, n))
