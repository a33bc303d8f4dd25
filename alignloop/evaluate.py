"""The evaluate stage: compare policies on held-out prompts by reward model, judge, KL and length.

Every model answers the same prompts with the same per-prompt seeds (common random
numbers, so differences come from the models, not the dice). For each model:

* mean reward-model score (normalised) with a 95% confidence interval (t-interval);
* win rate over the first model, prompt by prompt, by the reward model (and by the
  judge when one is given), ties counting one half, with a 95% Wilson interval;
* KL(model ‖ reference) per completion: the mean over its own samples of
  Σₜ log π(yₜ) − log π_ref(yₜ), both at the sampling temperature (top-p off, so the
  estimate is unbiased); the reference is the first model unless another is named;
* mean completion length in tokens, and side-by-side samples.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignloop.errors import AlignloopError

Conversation = list[dict[str, str]]


@dataclass
class ModelEval:
    model: str
    reward_mean: float
    reward_ci: tuple[float, float]  # 95% t-interval of the mean
    win_rate: float | None  # P(this model beats the first) by the reward model; None for the first
    win_ci: tuple[float, float] | None  # 95% Wilson interval
    kl: float  # nats per completion against the reference
    length: float  # mean completion tokens
    judge_mean: float | None = None
    judge_ci: tuple[float, float] | None = None
    judge_win_rate: float | None = None
    judge_win_ci: tuple[float, float] | None = None


@dataclass
class EvalReport:
    prompts: int
    reference: str
    reward_model: str
    judge: str | None
    models: list[ModelEval]
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"prompt", "<model>": completion text, ...}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def mean_ci(values: list[float]) -> tuple[float, tuple[float, float]]:
    """Mean and its 95% t-interval."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, (mean, mean)
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return mean, (mean - half, mean + half)


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (``successes`` may be fractional: ties count ½)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def win_rate(ours: list[float], theirs: list[float]) -> tuple[float, tuple[float, float]]:
    """Share of prompts where ``ours`` beats ``theirs`` (ties ½) and its Wilson interval."""
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(ours, theirs))
    return wins / len(ours), wilson(wins, len(ours))


def resolve_model_dir(model: str) -> str:
    """A policy reference: ``default``, a model directory, a hub id, or a run directory holding ``model/``."""
    path = Path(model)
    if (path / "model" / "config.json").exists():
        return str(path / "model")
    from alignloop.models import resolve_policy

    return resolve_policy(model)


def completion_logprobs(
    model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int, temperature: float, rows: int = 16
) -> list[float]:  # noqa: ANN001 - a causal LM
    """Σₜ log π(yₜ | prompt, y<t) of each completion at ``temperature`` (the RL stage's token scoring)."""
    import torch

    from alignloop.rl.rollout import ActorCritic, pad_rollout_tensors

    scorer = ActorCritic(model, temperature)
    device = next(model.parameters()).device
    totals: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(prompt_ids), rows):
            t = pad_rollout_tensors(prompt_ids[start : start + rows], completion_ids[start : start + rows], pad_id)
            t = {k: v.to(device) for k, v in t.items()}
            token_logp = scorer(
                t["input_ids"], t["attention_mask"], t["position_ids"], t["completion_ids"], with_values=False
            )["logprobs"]
            totals.extend((token_logp * t["mask"]).sum(-1).tolist())
    return totals


def evaluate_models(
    models: list[str],
    reward_model: str,
    conversations: list[Conversation],
    *,
    judge: str | None = None,
    reference: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    seed: int = 0,
    batch_size: int = 16,
    device: str | None = None,
    samples: int = 8,
    progress: bool = False,
) -> EvalReport:
    """Sample one completion per prompt from each model and compare them (see the module docs)."""
    from alignloop.backends import HFBackend, SamplingParams, encode_prompts
    from alignloop.generate import slot_seed
    from alignloop.models import load_policy
    from alignloop.reward import RewardModel

    if not models:
        raise AlignloopError("name at least one model to evaluate")
    if not conversations:
        raise AlignloopError("no prompts to evaluate on (the project's test split is empty?)")
    params = SamplingParams(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens)
    seeds = [slot_seed(seed, i, 0) for i in range(len(conversations))]
    prompt_texts = [conv[-1]["content"] for conv in conversations]
    reference = reference or models[0]
    completions: dict[str, list[list[int]]] = {}
    texts: dict[str, list[str]] = {}
    own_logp: dict[str, list[float]] = {}
    prompt_ids: list[list[int]] = []
    for name in models:
        if progress:
            from rich.console import Console

            Console(stderr=True).print(f"evaluate: sampling {len(conversations)} completions from {name}")
        model, tokenizer = load_policy(resolve_model_dir(name), device=device)
        backend = HFBackend(model, tokenizer, batch_size=batch_size)
        prompt_ids = encode_prompts(tokenizer, conversations)
        completions[name] = backend.generate_ids(prompt_ids, params, seeds)
        texts[name] = [tokenizer.decode(c, skip_special_tokens=True).strip() for c in completions[name]]
        own_logp[name] = completion_logprobs(model, prompt_ids, completions[name], backend.pad_id, temperature)
        del model
    ref_model, ref_tokenizer = load_policy(resolve_model_dir(reference), device=device)
    ref_ids = encode_prompts(ref_tokenizer, conversations)
    kl = {
        name: statistics.fmean(
            own - ref
            for own, ref in zip(
                own_logp[name],
                completion_logprobs(ref_model, ref_ids, completions[name], ref_tokenizer.pad_token_id, temperature),
            )
        )
        for name in models
    }
    del ref_model

    scorer = RewardModel.load(reward_model, device=device)
    rewards = {name: scorer.score(prompt_texts, texts[name]) for name in models}
    judge_scores: dict[str, list[float]] = {}
    if judge:
        from alignloop.judges import load_judge

        judge_fn = load_judge(judge)
        judge_scores = {name: [float(judge_fn(p, c)) for p, c in zip(prompt_texts, texts[name])] for name in models}

    results = []
    for name in models:
        mean, ci = mean_ci(rewards[name])
        entry = ModelEval(
            model=name,
            reward_mean=mean,
            reward_ci=ci,
            win_rate=None,
            win_ci=None,
            kl=kl[name],
            length=statistics.fmean(len(c) for c in completions[name]),
        )
        if name != models[0]:
            entry.win_rate, entry.win_ci = win_rate(rewards[name], rewards[models[0]])
        if judge:
            entry.judge_mean, entry.judge_ci = mean_ci(judge_scores[name])
            if name != models[0]:
                entry.judge_win_rate, entry.judge_win_ci = win_rate(judge_scores[name], judge_scores[models[0]])
        results.append(entry)
    side_by_side = [
        {
            "prompt": prompt_texts[i],
            **{name: texts[name][i] for name in models},
            **{f"reward:{name}": rewards[name][i] for name in models},
        }
        for i in range(min(samples, len(conversations)))
    ]
    return EvalReport(len(conversations), reference, str(reward_model), judge, results, side_by_side)
