"""The evaluate stage: compare policies on held-out prompts by reward model, judge, KL and length.

Every model answers the same prompts with the same per-prompt seeds (common random
numbers, so differences come from the models, not the dice). For each model:

* mean reward-model score (normalised) with a 95% confidence interval (t-interval);
* against the first model, prompt by prompt: the paired difference of scores (mean of
  the per-prompt differences, 95% t-interval) and the win rate (ties count one half,
  95% Wilson interval), by the reward model and by the judge when one is given;
* KL(model ‖ reference) per completion: the mean over its own samples of
  Σₜ log π(yₜ) − log π_ref(yₜ), both at the sampling temperature (top-p off, so the
  estimate is unbiased); the reference is the first model unless another is named;
* mean completion length in tokens, and side-by-side samples.

With ``k`` samples per prompt, each prompt gets k completions per model and its score is
their mean; win rates, differences and intervals are computed on those per-prompt means,
so the prompt stays the unit of the statistics (k samples of one prompt are not k
independent observations). KL and length average over every sample.

``best_of`` N adds a baseline that needs no training: for each of a prompt's k rows, the
reward model's favourite of N completions from the first model, taken from the prompt's
own k samples (plus the N − k more it lacks when k < N; see ``best_of_n_rows``). Its KL to
the first model is the analytic log N − (N−1)/N.

With a reward model trained per labeler group, ``group`` says whose taste the reward is:
every completion is scored by that group's head (a group's policy against the pooled one,
say), and the report names the group.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignloop.config import SAMPLING_ROWS
from alignloop.errors import AlignloopError
from alignloop.eval_sampling import (
    DrawnSamples,
    PolicySamples,
    RowProgress,
    judge_rows,
    kl_per_row,
    row_seeds,
    sample_policy,
    score_rows,
)

if TYPE_CHECKING:
    from alignloop.eval_config import EvaluateConfig

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
    reward_diff: float | None = None  # mean over prompts of (this model − the first) by the reward model
    reward_diff_ci: tuple[float, float] | None = None  # 95% t-interval of that paired difference
    judge_diff: float | None = None  # the same by the judge
    judge_diff_ci: tuple[float, float] | None = None
    best_of: int | None = None  # N for the best-of-N baseline row (its KL is analytic), else None


@dataclass
class EvalReport:
    prompts: int
    reference: str
    reward_model: str
    judge: str | None
    models: list[ModelEval]
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"prompt", "<model>": completion text, ...}
    samples_per_prompt: int = 1  # completions per prompt and model; a prompt's score is their mean
    best_of: int | None = None  # N of the best-of-N baseline row, when there is one
    group: str | None = None  # the labeler group whose head of a per-group reward model gave the rewards

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


def paired_diff(ours: list[float], theirs: list[float]) -> tuple[float, tuple[float, float]]:
    """Mean of the per-prompt differences ``ours − theirs`` and its 95% t-interval.

    Pairing by prompt removes what the prompts themselves contribute (some are easy for
    every model), so the interval is much narrower than that of two unpaired means.
    """
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} scores paired with {len(theirs)}")
    return mean_ci([a - b for a, b in zip(ours, theirs)])


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n ‖ reference) in nats: log n − (n−1)/n (Stiennon et al. 2020, appendix G.3).

    An upper bound on the true KL (Beirami et al. 2024): it is exact when the reward
    model never ties two different completions.
    """
    return math.log(n) - (n - 1) / n


def best_of_n_extra(samples: int, n: int) -> int:
    """Candidates per prompt that best-of-``n`` draws beyond the first model's own ``samples`` (its pool is both)."""
    return max(0, n - samples)


def best_of_n_windows(pool: int, draws: int, n: int) -> list[list[int]]:
    """For each of ``draws`` best-of-``n`` draws, its ``n`` candidates among a prompt's ``pool`` samples:
    draw ``s`` takes samples ``s, s+1, …`` (cyclically), so it starts with the model's own sample ``s``."""
    if draws > pool or n > pool:
        raise ValueError(f"a pool of {pool} cannot hold {draws} draws of {n} distinct candidates")
    return [[(s + j) % pool for j in range(n)] for s in range(draws)]


def per_prompt_means(values: list[float], per_prompt: int) -> list[float]:
    """Means of consecutive groups of ``per_prompt`` values (rows are prompt-major)."""
    return [statistics.fmean(values[i : i + per_prompt]) for i in range(0, len(values), per_prompt)]


def resolve_model_dir(model: str) -> str:
    """A policy reference: ``default``, a model directory, a hub id, or a run directory holding ``model/``."""
    path = Path(model)
    if (path / "model" / "config.json").exists():
        return str(path / "model")
    from alignloop.models import resolve_policy

    return resolve_policy(model)


def check_models(models: list[str]) -> None:
    """Resolve every model name (directory, run directory or hub id) before any sampling."""
    for name in dict.fromkeys(models):
        resolve_model_dir(name)


def best_of_n_rows(
    first: PolicySamples, first_rewards: list[float], extra: PolicySamples, extra_rewards: list[float], n: int
) -> tuple[list[str], list[float], list[int]]:
    """Best-of-``n`` per row of ``first``: the text, reward and token count of the highest-rewarded candidate of
    that row's window (``best_of_n_windows``) over its prompt's pool — the first model's own samples of the
    prompt, then its ``extra`` ones. Ties keep the earliest candidate of the window, the row's own sample first.

    Every window holds ``n`` distinct independent samples, so each row is a true best-of-``n`` draw and a
    prompt's mean over its rows estimates the best-of-``n`` score without bias; the rows of one prompt share
    candidates (they are correlated), which the statistics allow for by taking the prompt as their unit."""
    own, more = first.per_prompt, extra.per_prompt
    texts: list[str] = []
    rewards: list[float] = []
    lengths: list[int] = []
    for i in range(len(first.texts) // own):
        mine, theirs = slice(i * own, (i + 1) * own), slice(i * more, (i + 1) * more)
        pool_texts = first.texts[mine] + extra.texts[theirs]
        pool_rewards = first_rewards[mine] + extra_rewards[theirs]
        pool_lengths = [len(c) for c in first.completion_ids[mine] + extra.completion_ids[theirs]]
        for window in best_of_n_windows(own + more, own, n):
            pick = max(window, key=pool_rewards.__getitem__)  # max keeps the first of equal rewards
            texts.append(pool_texts[pick])
            rewards.append(pool_rewards[pick])
            lengths.append(pool_lengths[pick])
    return texts, rewards, lengths


def model_eval(
    name: str,
    rewards: list[float],
    baseline_rewards: list[float] | None,
    *,
    kl: float,
    length: float,
    judge: list[float] | None = None,
    baseline_judge: list[float] | None = None,
) -> ModelEval:
    """The row of one model from its per-prompt scores; ``baseline_*`` (the first model's, paired by
    prompt) add the win rates and paired differences, None for the first model itself."""
    mean, ci = mean_ci(rewards)
    entry = ModelEval(model=name, reward_mean=mean, reward_ci=ci, win_rate=None, win_ci=None, kl=kl, length=length)
    if baseline_rewards is not None:
        entry.win_rate, entry.win_ci = win_rate(rewards, baseline_rewards)
        entry.reward_diff, entry.reward_diff_ci = paired_diff(rewards, baseline_rewards)
    if judge is not None:
        entry.judge_mean, entry.judge_ci = mean_ci(judge)
        if baseline_judge is not None:
            entry.judge_win_rate, entry.judge_win_ci = win_rate(judge, baseline_judge)
            entry.judge_diff, entry.judge_diff_ci = paired_diff(judge, baseline_judge)
    return entry


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
    batch_size: int = SAMPLING_ROWS,
    device: str | None = None,
    samples: int = 8,
    k: int = 1,
    best_of: int | None = None,
    dtype: str = "auto",
    group: str | None = None,
    progress: bool = False,
    reuse: DrawnSamples | None = None,
) -> EvalReport:
    """Sample ``k`` completions per prompt from each model and compare them (see the module docs).

    ``dtype`` is the precision the models sample and are scored in (``auto``: the sampling
    precision the machine's probe chose, as ``generate`` uses); every model and the KL
    reference share it, so a model's KL to itself is exactly zero. ``group``: score as that labeler
    group judges (a per-group reward model's head); checked before any sampling. ``reuse``: the samples and
    KLs of earlier evaluations of the same prompts and settings, taken instead of sampling a model again, and
    added to."""
    from alignloop.backends import SamplingParams, encode_prompts
    from alignloop.models import load_policy
    from alignloop.reward import RewardModel, check_group, saved_groups

    if not models:
        raise AlignloopError("name at least one model to evaluate")
    if not conversations:
        raise AlignloopError("no prompts to evaluate on (the project's test split is empty?)")
    if len(set(models)) != len(models):
        raise AlignloopError(f"name each model once: {models}")
    if k < 1:
        raise AlignloopError(f"k (samples per prompt) must be at least 1, not {k}")
    if best_of is not None and best_of < 2:
        raise AlignloopError(f"best_of must be at least 2 (best of one sample is the model itself), not {best_of}")
    check_group(saved_groups(reward_model), group, f"reward model {reward_model}")
    per_prompt, n_prompts = k, len(conversations)
    params = SamplingParams(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens)
    prompt_texts = [conv[-1]["content"] for conv in conversations]
    row_prompts = [text for text in prompt_texts for _ in range(per_prompt)]
    reference = reference or models[0]
    rows = n_prompts * per_prompt
    bon_extra = best_of_n_extra(per_prompt, best_of) if best_of else 0
    reuse = reuse if reuse is not None else DrawnSamples()
    reuse.use_for(
        (json.dumps(conversations), params, per_prompt, seed, dtype, device, batch_size, resolve_model_dir(reference))
    )
    drawn, known_kl = reuse.samples, reuse.kl
    extra = PolicySamples(0, [], [], [], [])  # best-of-N: the candidates beyond the first model's own samples
    extra_rewards: list[float] = []
    with RowProgress(progress) as bar:  # sampling, KL and scoring, one bar each, counted in rows
        for name in models:
            wants_extra = bon_extra and name == models[0]
            if name in drawn and not wants_extra:
                bar.say(f"evaluate: {name}'s completions were drawn by an earlier evaluation")
                continue
            model, tokenizer = load_policy(resolve_model_dir(name), device=device, dtype=dtype, purpose="sampling")
            prompt_ids = encode_prompts(tokenizer, conversations)
            if name not in drawn:
                bar.say(f"evaluate: sampling {n_prompts}×{per_prompt} completions from {name}")
                seeds = row_seeds(seed, n_prompts, per_prompt)
                # the reference's KL to itself is exactly zero: it needs no log-probabilities
                own_kl = name != reference
                done = bar.rows(f"sample and score {name}", rows * (2 if own_kl else 1))
                drawn[name] = sample_policy(
                    model, tokenizer, prompt_ids, params, seeds, batch_size, with_logp=own_kl, on_rows=done
                )
            if wants_extra:
                # Best-of-N picks among the model's own samples of a prompt; the candidates it lacks take the
                # sample indices after the evaluated ones, so every seed is distinct.
                bar.say(f"evaluate: best-of-{best_of}: {n_prompts}×{bon_extra} more completions")
                seeds = row_seeds(seed, n_prompts, bon_extra, first_sample=per_prompt)
                done = bar.rows(f"best-of-{best_of} candidates", n_prompts * bon_extra)
                extra = sample_policy(
                    model, tokenizer, prompt_ids, params, seeds, batch_size, with_logp=False, on_rows=done
                )
            del model
        known_kl[reference] = 0.0
        if missing := [name for name in models if name not in known_kl]:
            ref_model, ref_tokenizer = load_policy(
                resolve_model_dir(reference), device=device, dtype=dtype, purpose="sampling"
            )
            ref_ids = encode_prompts(ref_tokenizer, conversations)
            for name in missing:
                known_kl[name] = statistics.fmean(
                    kl_per_row(
                        ref_model,
                        ref_ids,
                        drawn[name],
                        ref_tokenizer.pad_token_id,
                        temperature,
                        on_rows=bar.rows(f"KL of {name} to the reference", rows),
                    )
                )
            del ref_model
        kl = {name: known_kl[name] for name in models}

        scorer = RewardModel.load(reward_model, device=device)
        rewards = {
            name: score_rows(scorer, row_prompts, drawn[name].texts, bar.rows(f"reward of {name}", rows), group=group)
            for name in models
        }
        if extra.texts:
            extra_prompts = [t for t in prompt_texts for _ in range(extra.per_prompt)]
            extra_rewards = score_rows(
                scorer, extra_prompts, extra.texts, bar.rows("reward of the candidates", len(extra.texts)), group=group
            )
    texts = {name: drawn[name].texts for name in models}
    lengths = {name: statistics.fmean(len(c) for c in drawn[name].completion_ids) for name in models}
    row_names = list(models)
    if best_of:
        bon = f"best-of-{best_of}"
        texts[bon], rewards[bon], bon_lengths = best_of_n_rows(
            drawn[models[0]], rewards[models[0]], extra, extra_rewards, best_of
        )
        lengths[bon] = statistics.fmean(bon_lengths)
        kl[bon] = best_of_n_kl(best_of)
        row_names.append(bon)
    judge_scores: dict[str, list[float]] = {}
    if judge:
        from alignloop.judges import load_judge

        judge_fn = load_judge(judge)
        judge_scores = {name: judge_rows(judge_fn, row_prompts, texts[name]) for name in row_names}

    def prompt_means(scores: dict[str, list[float]], name: str) -> list[float] | None:
        return per_prompt_means(scores[name], per_prompt) if name in scores else None

    results = []
    for name in row_names:
        is_first = name == models[0]
        entry = model_eval(
            name,
            per_prompt_means(rewards[name], per_prompt),
            None if is_first else per_prompt_means(rewards[models[0]], per_prompt),
            kl=kl[name],
            length=lengths[name],
            judge=prompt_means(judge_scores, name),
            baseline_judge=None if is_first else prompt_means(judge_scores, models[0]),
        )
        entry.best_of = best_of if name not in models else None
        results.append(entry)
    side_by_side = [
        {
            "prompt": prompt_texts[i],
            **{name: texts[name][i * per_prompt] for name in row_names},
            **{f"reward:{name}": rewards[name][i * per_prompt] for name in row_names},
        }
        for i in range(min(samples, n_prompts))
    ]
    return EvalReport(n_prompts, reference, str(reward_model), judge, results, side_by_side, per_prompt, best_of, group)


def run_evaluation(config: EvaluateConfig, *, progress: bool = False, reuse: DrawnSamples | None = None) -> EvalReport:
    """The ``evaluate`` stage from its settings: check what it needs, compare the models (without
    ``models``, a project's pooled policy and ``group``'s), write ``evaluation.json`` into ``output``
    (default ``<project>/runs/eval-<n>``) and record it on the project's current round (under the group's entry)."""
    from alignloop.prompts import evaluation_conversations
    from alignloop.reward import check_group, saved_groups
    from alignloop.rounds import group_comparison, record_in_project
    from alignloop.runs import require_reward_run, stage_run_dir

    # Everything that can be missing is checked before minutes of sampling.
    require_reward_run(config.reward_model, "--reward-model")
    check_group(saved_groups(config.reward_model), config.group, f"reward model {config.reward_model}")
    models = config.models or group_comparison(config.project, config.group)
    check_models([*models, *([config.reference] if config.reference else [])])
    conversations = evaluation_conversations(config.project, config.prompts, config.limit)
    report = evaluate_models(
        models,
        str(config.reward_model),
        conversations,
        reference=config.reference,
        temperature=config.temperature,
        best_of=config.best_of,
        group=config.group,
        progress=progress,
        reuse=reuse,
        **config.sampling_keywords(),
    )
    path = write_evaluation(report, config.output or stage_run_dir(None, config.project, "eval"))
    record_in_project(config.project, group=config.group, evaluation=str(path))
    return report


def write_evaluation(report: EvalReport, output: str | Path) -> Path:
    """``output/evaluation.json``: the report as JSON (the folder made when missing); returns its path."""
    Path(output).mkdir(parents=True, exist_ok=True)
    path = Path(output) / "evaluation.json"
    path.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
    return path
