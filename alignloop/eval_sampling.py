"""Sampling and scoring for evaluation: S completions per prompt, their log-probabilities, KL and judge scores.

``evaluate`` (models side by side) and ``overoptimisation`` (the checkpoints of one RL
run) share these pieces, so both measure KL and scores the same way. Rows are
prompt-major: row ``i * S + s`` is sample ``s`` of prompt ``i``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from alignloop.config import SAMPLING_ROWS

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from alignloop.backends import SamplingParams
    from alignloop.reward.model import RewardModel

RowsDone = Callable[[int], None]  # told how many rows a batch finished (a progress bar's advance)

# Rows per scoring pass (a bf16 model's own log-probabilities, the reference's for the KL). A pass holds the logits
# of every completion position at once, so its memory grows with rows × tokens × vocabulary: on the 2-core CPU,
# 256 rows of 48 tokens scored in 17.1–17.9 s at 64 rows a pass and 18.5–20.2 s at 128, which took 1.2 GB more.
SCORING_ROWS = 64


def whole_groups(rows: int, per_prompt: int) -> int:
    """``rows`` rounded up to whole groups of a prompt's ``per_prompt`` rows, so no prompt is split across batches."""
    return -(-rows // per_prompt) * per_prompt


def scoring_rows(batch_size: int, per_prompt: int) -> int:
    """Rows per scoring pass for samples drawn ``batch_size`` at a time: at most ``SCORING_ROWS``, in whole groups.
    A model's own pass and the reference's KL pass both use it, so in bf16, where a product rounds by its batch's
    shape, the two log-probabilities of a row round alike."""
    return whole_groups(min(batch_size, SCORING_ROWS), per_prompt)


def row_seeds(seed: int, n_prompts: int, per_prompt: int, first_sample: int = 0) -> list[int]:
    """One seed per (prompt, sample) row, prompt-major: ``slot_seed(seed, prompt, first_sample + s)``."""
    from alignloop.generate import slot_seed

    return [slot_seed(seed, i, first_sample + s) for i in range(n_prompts) for s in range(per_prompt)]


def completion_logprobs(
    model: nn.Module,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    pad_id: int,
    temperature: float,
    rows: int = 16,
    on_rows: RowsDone | None = None,
) -> list[float]:
    """Σₜ log π(yₜ | prompt, y<t) of each completion at ``temperature`` (the RL stage's token scoring)."""
    import torch

    from alignloop.cpu_linears import scoring_linears
    from alignloop.rl.rollout import ActorCritic, pad_rollout_tensors

    scorer = ActorCritic(model, temperature)
    device = next(model.parameters()).device
    totals: list[float] = []
    longest = max((len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)), default=1)
    # entered once, so the frozen weights are reordered once for all the batches
    with torch.inference_mode(), scoring_linears(model, rows=rows * longest):
        for start in range(0, len(prompt_ids), rows):
            t = pad_rollout_tensors(prompt_ids[start : start + rows], completion_ids[start : start + rows], pad_id)
            t = {k: v.to(device) for k, v in t.items()}
            token_logp = scorer(
                t["input_ids"], t["attention_mask"], t["position_ids"], t["completion_ids"], with_values=False
            )["logprobs"]
            totals.extend((token_logp * t["mask"]).sum(-1).tolist())
            if on_rows is not None:
                on_rows(len(t["mask"]))
    return totals


@dataclass
class PolicySamples:
    """``per_prompt`` completions of each prompt from one policy; rows are prompt-major
    (row ``i * per_prompt + s`` is sample ``s`` of prompt ``i``)."""

    per_prompt: int
    prompt_ids: list[list[int]]  # per row, in the policy's tokenizer
    completion_ids: list[list[int]]  # per row, the end token included when the row stopped
    texts: list[str]  # per row, decoded
    logp: list[float]  # per row: Σₜ log π(yₜ) under the sampling policy at its temperature; [] when not asked


@dataclass
class DrawnSamples:
    """What evaluations of the same held-out prompts share: each model's samples and KL to the reference.

    Every model answers with the same per-prompt seeds, so a second evaluation with the same prompts,
    settings and reference that names a model again (the starting and pooled policies, judged by each
    labeler group in turn) would draw exactly the same completions; it takes them from here instead. A
    change of any of those settings (``key``) starts it afresh. Models are known by the name given, so
    keep one only while the models it names stay as they are."""

    key: tuple[Any, ...] | None = None
    samples: dict[str, PolicySamples] = field(default_factory=dict)
    kl: dict[str, float] = field(default_factory=dict)

    def use_for(self, key: tuple[Any, ...]) -> None:
        """Keep what was drawn for ``key``; forget it when the prompts or settings are not those."""
        if key != self.key:
            self.key, self.samples, self.kl = key, {}, {}


def sample_policy(
    model: nn.Module,  # a causal LM, peft-wrapped or not
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    params: SamplingParams,
    seeds: list[int],
    batch_size: int = SAMPLING_ROWS,
    *,
    with_logp: bool = True,
    on_rows: RowsDone | None = None,
) -> PolicySamples:
    """Sample ``len(seeds) // len(prompt_ids)`` completions of each prompt and score them under ``model``.

    A prompt's rows are consecutive and batches hold whole groups of them, so the sampler
    and the scoring forward prefill each prompt once and copy its KV cache to its rows.
    ``on_rows`` hears of each finished batch, of sampling and then of scoring (so twice the rows in all
    when ``with_logp``).

    A float32 model's log-probabilities are the sampler's own, summed: they differ from a scoring pass's only
    by float32 rounding (the two compute the same distribution), and that pass cost as much as a third of an
    evaluation. In bf16 the sampler's cached decode and a pass over the whole sequence round differently (the
    gap an RL run reports as ``logprob_gap``), so the model is scored by the same kind of pass as the reference,
    and a KL estimate compares like with like.
    """
    import torch

    from alignloop.backends import HFBackend

    per_prompt = len(seeds) // len(prompt_ids)
    if per_prompt * len(prompt_ids) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds for {len(prompt_ids)} prompts")
    rows = [ids for ids in prompt_ids for _ in range(per_prompt)]
    batch = whole_groups(batch_size, per_prompt)
    backend = HFBackend(model, tokenizer, batch_size=batch)
    sampler_logp = with_logp and next(model.parameters()).dtype == torch.float32
    sampled = backend.sample(rows, params, seeds, with_logprobs=sampler_logp, on_rows=on_rows)
    completions = sampled.ids
    texts = [tokenizer.decode(c, skip_special_tokens=True).strip() for c in completions]
    logp: list[float] = []
    if sampled.logprobs is not None:  # zero past each row's end, so a row's sum is its completion's
        logp = sampled.logprobs.double().sum(-1).tolist()
        if on_rows is not None:
            on_rows(len(rows))  # scored with the sampling
    elif with_logp:
        logp = completion_logprobs(
            model,
            rows,
            completions,
            backend.pad_id,
            params.temperature,
            rows=scoring_rows(batch_size, per_prompt),
            on_rows=on_rows,
        )
    return PolicySamples(per_prompt, rows, completions, texts, logp)


def kl_per_row(
    reference: nn.Module,  # a causal LM
    reference_prompt_ids: list[list[int]],
    drawn: PolicySamples,
    pad_id: int,
    temperature: float,
    batch_size: int = SAMPLING_ROWS,
    on_rows: RowsDone | None = None,
) -> list[float]:
    """log π(y) − log π_ref(y) of each sampled row: its mean over rows estimates KL(π ‖ π_ref).

    ``reference_prompt_ids`` are the prompts (one per prompt, not per row) in the reference's tokenizer;
    ``batch_size`` is the one ``drawn`` was sampled with, so the reference is scored in the model's passes.
    """
    rows = [ids for ids in reference_prompt_ids for _ in range(drawn.per_prompt)]
    batch = scoring_rows(batch_size, drawn.per_prompt)
    ref = completion_logprobs(reference, rows, drawn.completion_ids, pad_id, temperature, rows=batch, on_rows=on_rows)
    return [own - r for own, r in zip(drawn.logp, ref)]


def judge_rows(judge_fn: Callable[[str, str], float], prompts: list[str], texts: list[str]) -> list[float]:
    return [float(judge_fn(p, c)) for p, c in zip(prompts, texts)]


def progress_printer(progress: bool) -> Callable[[str], None]:
    """Print a stage's progress lines to stderr for a person watching, or nothing."""
    if not progress:
        return lambda message: None
    from rich.console import Console

    console = Console(stderr=True)
    return console.print


def score_rows(
    scorer: RewardModel,
    prompts: list[str],
    texts: list[str],
    on_rows: RowsDone | None = None,
    chunk: int = 256,
    group: str | None = None,
) -> list[float]:
    """``scorer.score`` in chunks of ``chunk`` rows (as labeler ``group`` judges, for a per-group model), telling
    ``on_rows`` after each (a row's score does not depend on the rows scored with it, so chunking changes nothing
    but how often progress is shown)."""
    scores: list[float] = []
    for start in range(0, len(texts), chunk):
        scores.extend(scorer.score(prompts[start : start + chunk], texts[start : start + chunk], group=group))
        if on_rows is not None:
            on_rows(len(texts[start : start + chunk]))
    return scores


class RowProgress:
    """A rich progress display for a person watching an evaluation: one bar per step (sampling a model,
    its KL, scoring), counted in rows. Disabled, every method does nothing. Use it as a context manager."""

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self) -> RowProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def say(self, message: str) -> None:
        """A line above the bars."""
        if self._bar is not None:
            self._bar.console.print(message)

    def rows(self, description: str, total: int) -> RowsDone | None:
        """A new bar of ``total`` rows; returns its advance callback (None when disabled)."""
        if self._bar is None:
            return None
        task = self._bar.add_task(description, total=total)
        return lambda n: self._bar.advance(task, n)
