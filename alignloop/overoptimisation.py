"""The over-optimisation curve of an RL run (Gao et al. 2022): proxy and gold score against √KL.

Every saved checkpoint of a run (and the base policy, step 0) answers the same held-out
prompts with the same seeds; each point is its mean reward-model score (the proxy that
RL optimised), its judge score (the gold standard, when there is one) and its KL to the
base policy, estimated as ``evaluate`` does. Plotted against √KL, the proxy keeps rising
while the gold score rises, peaks and falls: the policy learnt the reward model's
mistakes.

Choosing a checkpoint must not look at the judge: in real use the judge is people,
whose scores are what the choice is meant to predict. ``select_checkpoint`` sees only
``Candidate`` records — step, KL, reward-model score and the score of a held-out reward
model that RL did not optimise — and picks

* ``kl_budget``: the highest reward-model score among checkpoints with KL ≤ the budget;
* ``holdout_reward_model``: where the held-out reward model peaks, among the checkpoints no
  other dominates. A checkpoint with more KL and a lower score by the reward model RL
  optimised than another is worse for every β of the KL-regularised objective RL maximises:
  its extra KL bought the proxy nothing on held-out prompts, and a held-out model of the same
  labels, which shares the proxy's blind spots, may still favour it (measured: a concise-taste
  run whose answers shrank to a dozen tokens, the proxy flat from step 16 to 24 while the KL
  nearly doubled, and the held-out model's peak at 24 where the judge had fallen by half).

The curve also records where the judge peaked, so a reader sees how good the pick was.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from alignloop.config import SAMPLING_ROWS
from alignloop.errors import AlignloopError
from alignloop.eval_config import HeldOutSampling
from alignloop.eval_sampling import judge_rows, kl_per_row, progress_printer, row_seeds, sample_policy
from alignloop.evaluate import Conversation, mean_ci, per_prompt_means

CURVE_FILE = "curve.json"
PLOT_FILE = "overoptimisation.png"


class CurveConfig(HeldOutSampling):
    """The over-optimisation curve of an RL run (``alignloop curve``): which prompts every checkpoint answers,
    how they are sampled and scored, and how a checkpoint is picked (never by the judge)."""

    reward_model: Path = Field(..., description="Reward-model run directory the RL run optimised.")
    holdout_reward_model: Path | None = Field(
        None,
        description=(
            "A reward model RL did not optimise: pick the checkpoint where it peaks, among those no checkpoint "
            "with less KL beats by the optimised reward model."
        ),
    )
    kl_budget: float | None = Field(
        None, ge=0, description="Pick the best reward-model score among checkpoints with KL ≤ this (nats)."
    )
    group: str | None = Field(
        None,
        description="Labeler group of a per-group reward model (a group's RL run): its head scores every checkpoint, "
        "and the curve and kept checkpoint are recorded as the group's.",
    )
    policy: str | None = Field(None, description="Base policy (default: the one in the run's config).")
    temperature: float | None = Field(None, gt=0, description="Sampling temperature (default: the run's).")
    output: Path | None = Field(
        None, description="Directory for curve.json and overoptimisation.png (default RUN_DIR/curve)."
    )
    keep: Path | None = Field(
        None, description="Save the picked checkpoint here as a model; the round's policy from now on."
    )


@dataclass
class CurvePoint:
    step: int  # RL step of the checkpoint; 0 is the base policy
    kl: float  # nats per completion to the base policy
    reward_mean: float  # mean over prompts of the reward model's (normalised) score
    reward_ci: tuple[float, float]  # its 95% t-interval
    judge_mean: float | None = None
    holdout_reward_mean: float | None = None  # the held-out reward model's mean score, when one is given

    @property
    def sqrt_kl(self) -> float:
        return math.sqrt(max(self.kl, 0.0))  # the estimate can dip below 0 by sampling noise


@dataclass(frozen=True)
class Candidate:
    """What a checkpoint selector may see of a checkpoint: deliberately no judge score."""

    step: int
    kl: float
    reward: float
    holdout_reward: float | None = None


@dataclass
class Curve:
    run: str
    reward_model: str
    judge: str | None
    holdout_reward_model: str | None
    kl_budget: float | None
    prompts: int
    samples_per_prompt: int
    points: list[CurvePoint]
    picks: dict[str, int | None] = field(default_factory=dict)  # criterion → chosen step
    judge_peak: int | None = None  # step where the judge scored highest (for reading the picks, never for picking)
    kept: str | None = None  # model directory the kept checkpoint was saved to (``keep``), if any
    group: str | None = None  # the labeler group whose reward-model head scored it

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for point, row in zip(self.points, data["points"]):
            row["sqrt_kl"] = point.sqrt_kl
        return data


def select_checkpoint(candidates: list[Candidate], *, kl_budget: float | None = None) -> dict[str, int | None]:
    """The step each held-out criterion picks (see the module docs); a criterion without its input is absent,
    and ``kl_budget`` maps to None when no checkpoint stays within the budget."""
    picks: dict[str, int | None] = {}
    if kl_budget is not None:
        within = [c for c in candidates if c.kl <= kl_budget]
        picks["kl_budget"] = max(within, key=lambda c: c.reward).step if within else None
    scored = [c for c in undominated(candidates) if c.holdout_reward is not None]
    if scored:
        picks["holdout_reward_model"] = max(scored, key=lambda c: c.holdout_reward or 0.0).step
    return picks


def undominated(candidates: list[Candidate]) -> list[Candidate]:
    """The checkpoints on the reward-versus-KL frontier: none has another with less KL and a higher reward."""
    return [c for c in candidates if not any(o.kl < c.kl and o.reward > c.reward for o in candidates)]


def kept_step(picks: dict[str, int | None]) -> int:
    """The step to keep: the held-out reward model's pick when there is one, else the KL budget's, else 0 (the base)."""
    for criterion in ("holdout_reward_model", "kl_budget"):
        if picks.get(criterion) is not None:
            return int(picks[criterion])  # type: ignore[arg-type]
    return 0


def judge_peak(points: list[CurvePoint]) -> int | None:
    judged = [p for p in points if p.judge_mean is not None]
    return max(judged, key=lambda p: p.judge_mean or 0.0).step if judged else None


def saved_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint of an RL run, oldest first."""
    found = []
    for path in (run_dir / "checkpoints").glob("step-*"):
        if path.is_dir() and (path / "state.pt").exists():
            found.append((int(path.name.removeprefix("step-")), path))
    return sorted(found)


def checkpoint_curve(
    run_dir: str | Path,
    reward_model: str | Path,
    conversations: list[Conversation],
    *,
    judge: str | None = None,
    holdout_reward_model: str | Path | None = None,
    kl_budget: float | None = None,
    group: str | None = None,
    policy: str | None = None,
    k: int = 1,
    max_new_tokens: int = 64,
    temperature: float | None = None,
    seed: int = 0,
    batch_size: int = SAMPLING_ROWS,
    device: str | None = None,
    dtype: str = "auto",
    progress: bool = False,
) -> Curve:
    """Evaluate the base policy and every checkpoint of the RL run ``run_dir`` (see the module docs).

    The policy is loaded once, as the trainer built it (LoRA or full fine-tuning, from the
    run's ``config.yaml``); each checkpoint only swaps in its trained weights. The KL
    reference is the base policy: the adapter switched off, or a second copy under full
    fine-tuning. ``policy`` overrides the run's base policy (a moved model directory);
    ``temperature`` defaults to the run's sampling temperature, the one its KL was measured at.
    ``group`` scores with that labeler group's head of a per-group reward model (checked before sampling;
    a per-group held-out model scores with it too).
    ``dtype`` is the precision checkpoints sample in (``auto``: the probe's choice for sampling):
    in another precision than the trained weights, each checkpoint is written into a sampling
    copy (``rl.sampler_copy``) and the reference is the base policy loaded in that precision.
    """
    import torch

    from alignloop.backends import SamplingParams, encode_prompts
    from alignloop.models import load_policy, pick_device, pick_dtype
    from alignloop.reward import RewardModel, check_group
    from alignloop.rl import checkpoint as ckpt
    from alignloop.rl.sampler_copy import SamplerCopy

    run = Path(run_dir)
    if not (run / "config.yaml").exists():
        raise AlignloopError(f"{run} is not an RL run directory (no config.yaml)")
    checkpoints = saved_checkpoints(run)
    if not checkpoints:
        raise AlignloopError(f"{run} has no saved checkpoints (checkpoints/step-*/state.pt)")
    if not conversations:
        raise AlignloopError("no prompts to evaluate on (the project's test split is empty?)")
    dev = str(pick_device(device))
    say = progress_printer(progress)
    config, actor_critic, tokenizer = _run_policy(run, policy, dev)
    base_weights = ckpt.trainable_state(actor_critic)  # step 0: LoRA's B starts at zero, so this is the base policy
    sampling = pick_dtype(dtype, torch.device(dev), "sampling")
    weights = next(actor_critic.policy.parameters()).dtype
    copy = SamplerCopy(actor_critic.policy, sampling) if sampling != weights else None
    reference_on: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    if config.lora_r > 0 and copy is None:
        reference, reference_on = actor_critic.policy, actor_critic.policy.disable_adapter
    else:
        reference, _ = load_policy(config.policy, device=dev, dtype=dtype, purpose="sampling")
    params = SamplingParams(temperature=temperature or config.temperature, top_p=1.0, max_new_tokens=max_new_tokens)
    prompt_ids = encode_prompts(tokenizer, conversations)
    seeds = row_seeds(seed, len(conversations), k)
    row_prompts = [conv[-1]["content"] for conv in conversations for _ in range(k)]
    scorer = RewardModel.load(reward_model, device=device)
    check_group(scorer.groups, group, f"reward model {reward_model}")
    holdout = RewardModel.load(holdout_reward_model, device=device) if holdout_reward_model else None
    holdout_group = group if holdout is not None and holdout.groups else None
    if holdout is not None:
        check_group(holdout.groups, holdout_group, f"held-out reward model {holdout_reward_model}")
    judge_fn = None
    if judge:
        from alignloop.judges import load_judge

        judge_fn = load_judge(judge)

    def prompt_mean(rows: list[float]) -> float:
        return statistics.fmean(per_prompt_means(rows, k))

    points = []
    for step, path in [(0, None), *checkpoints]:
        say(f"curve: step {step}")
        weights = base_weights if path is None else torch.load(path / "state.pt", map_location="cpu")["trainable"]
        try:
            ckpt.restore_trainable(actor_critic, weights)
        except ValueError as exc:
            raise AlignloopError(f"{path}: {exc}") from None
        if copy is not None:
            copy.sync()
        model = copy.model if copy is not None else actor_critic.policy
        # step 0 is the starting policy, which is the reference: its KL to it is exactly zero, as in `evaluate`
        drawn = sample_policy(model, tokenizer, prompt_ids, params, seeds, batch_size, with_logp=step > 0)
        kl = [0.0] * len(drawn.texts)
        if step > 0:
            with reference_on():
                kl = kl_per_row(reference, prompt_ids, drawn, tokenizer.pad_token_id, params.temperature, batch_size)
        scores = scorer.score(row_prompts, drawn.texts, group=group)
        reward, reward_ci = mean_ci(per_prompt_means(scores, k))
        points.append(
            CurvePoint(
                step=step,
                kl=statistics.fmean(kl),
                reward_mean=reward,
                reward_ci=reward_ci,
                judge_mean=prompt_mean(judge_rows(judge_fn, row_prompts, drawn.texts)) if judge_fn else None,
                holdout_reward_mean=prompt_mean(holdout.score(row_prompts, drawn.texts, group=holdout_group))
                if holdout
                else None,
            )
        )
    candidates = [Candidate(p.step, p.kl, p.reward_mean, p.holdout_reward_mean) for p in points]
    return Curve(
        run=str(run),
        reward_model=str(reward_model),
        judge=judge,
        holdout_reward_model=str(holdout_reward_model) if holdout_reward_model else None,
        kl_budget=kl_budget,
        prompts=len(conversations),
        samples_per_prompt=k,
        points=points,
        picks=select_checkpoint(candidates, kl_budget=kl_budget),
        judge_peak=judge_peak(points),
        group=group,
    )


def _run_policy(run: Path, policy: str | None, device: str) -> tuple[Any, Any, Any]:
    """(config, actor-critic, tokenizer) of an RL run's policy as its trainer built it, before training."""
    from alignloop.config import load_config
    from alignloop.rl.config import RLConfig
    from alignloop.rl.setup import build_models

    config = load_config(RLConfig, run / "config.yaml")
    if policy is not None:
        config = config.model_copy(update={"policy": policy})
    models = build_models(config, _POLICY_ONLY, device)  # type: ignore[arg-type]
    return config, models.actor_critic, models.tokenizer


def export_checkpoint(run_dir: str | Path, step: int, output: str | Path, *, policy: str | None = None) -> Path:
    """Save the policy of checkpoint ``step`` of an RL run as a plain model directory (LoRA merged),
    so the picked checkpoint can be evaluated and sampled from like any policy. Step 0 is the base.

    When ``step`` is the run's last and its final model was saved merged, that model is the same policy: its
    files are hard-linked (copied where the file system cannot link) instead of written a second time, which
    saves a full model's size on disk (about 0.5 GB at the demo's 135M parameters in float32)."""
    import torch

    from alignloop.rl import checkpoint as ckpt
    from alignloop.rl.reporting import VALUE_HEAD_FILE, save_policy

    run, output = Path(run_dir), Path(output)
    found = dict(saved_checkpoints(run))
    if step != 0 and step not in found:
        raise AlignloopError(f"{run} has no checkpoint of step {step} (saved: {sorted(found) or 'none'})")
    final = _final_full_model(run, step)
    if final is not None:
        return _link_files(final, output, leave_out={VALUE_HEAD_FILE})
    _, actor_critic, tokenizer = _run_policy(run, policy, "cpu")
    if step:
        ckpt.restore_trainable(actor_critic, torch.load(found[step] / "state.pt", map_location="cpu")["trainable"])
    _unlink_shared(output)
    save_policy(actor_critic.policy, tokenizer, output, merge=True)
    return output


def _final_full_model(run: Path, step: int) -> Path | None:
    """``run/model`` when it holds the policy of checkpoint ``step`` as a plain model: the run ended at that step
    (``summary.json``) and saved its final model merged, or fully fine-tuned, not as an adapter."""
    summary = run / "summary.json"
    model = run / "model"
    if step == 0 or not summary.exists() or not (model / "config.json").exists():
        return None
    if json.loads(summary.read_text())["steps"] != step or (model / "adapter_config.json").exists():
        return None
    return model


def _unlink_shared(directory: Path) -> None:
    """Remove the files of ``directory`` that are hard links (an earlier export linked them to a run's final
    model): saving a model rewrites some files in place (``config.json``, the tokenizer's), which would change
    that other model too."""
    if directory.is_dir():
        for file in directory.iterdir():
            if file.is_file() and file.stat().st_nlink > 1:
                file.unlink()


def _link_files(source: Path, output: Path, *, leave_out: set[str]) -> Path:
    """``output`` with a hard link to each file of ``source`` (a copy where linking fails), replacing any there."""
    import os
    import shutil

    output.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.name in leave_out or not file.is_file():
            continue
        target = output / file.name
        target.unlink(missing_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)
    return output


class _PolicyOnly:
    """What ``build_models`` asks of an algorithm, answered for evaluation: no critic, no frozen copy."""

    uses_reference = False
    uses_values = False


_POLICY_ONLY = _PolicyOnly()


def run_curve(run_dir: str | Path, config: CurveConfig, *, progress: bool = False) -> Curve:
    """The ``curve`` stage from its settings: check the run and the reward models, compute the curve,
    save the picked checkpoint when ``keep`` asks, write the curve into ``output`` (default
    ``<run_dir>/curve``) and record it (and a kept checkpoint, as the trained policy) on the project's round."""
    from alignloop.prompts import evaluation_conversations
    from alignloop.rounds import record_in_project
    from alignloop.runs import require_reward_run

    if not Path(run_dir).is_dir():
        raise AlignloopError(f"{run_dir}: no such RL run directory")
    require_reward_run(config.reward_model, "--reward-model")
    if config.holdout_reward_model is not None:
        require_reward_run(config.holdout_reward_model, "--holdout-reward-model")
    conversations = evaluation_conversations(config.project, config.prompts, config.limit)
    result = checkpoint_curve(
        run_dir,
        config.reward_model,
        conversations,
        holdout_reward_model=config.holdout_reward_model,
        kl_budget=config.kl_budget,
        group=config.group,
        policy=config.policy,
        temperature=config.temperature,
        progress=progress,
        **config.sampling_keywords(),
    )
    if config.keep is not None:
        result.kept = str(export_checkpoint(run_dir, kept_step(result.picks), config.keep, policy=config.policy))
    path = write_curve(result, config.output or Path(run_dir) / "curve")
    kept = {"trained_policy": result.kept} if result.kept is not None else {}
    record_in_project(config.project, group=config.group, curve=str(path), **kept)
    return result


def write_curve(curve: Curve, output: str | Path) -> Path:
    """``output/curve.json`` and ``output/overoptimisation.png``; returns the JSON's path."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CURVE_FILE
    path.write_text(json.dumps(curve.to_json(), indent=2), encoding="utf-8")
    plot_curve(curve, out / PLOT_FILE)
    return path


def plot_curve(curve: Curve, path: Path) -> None:
    """Reward-model score (left axis) and judge score (right axis) against √KL, with the picks marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p.sqrt_kl for p in curve.points]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    ax.plot(xs, [p.reward_mean for p in curve.points], "o-", color="tab:blue", label="reward model (optimised)")
    if curve.holdout_reward_model:
        holdout = [p.holdout_reward_mean for p in curve.points]
        ax.plot(xs, holdout, "s--", color="tab:purple", label="held-out reward model")
    ax.set_xlabel("√KL to the base policy (√nats)")
    ax.set_ylabel("reward-model score")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if curve.judge:
        twin = ax.twinx()
        twin.plot(xs, [p.judge_mean for p in curve.points], "^-", color="tab:orange", label=f"judge ({curve.judge})")
        twin.set_ylabel("judge score")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    sqrt_kl = {p.step: p.sqrt_kl for p in curve.points}
    marks = {"kl_budget": ("green", "pick: KL budget"), "holdout_reward_model": ("tab:purple", "pick: held-out RM")}
    for criterion, step in curve.picks.items():
        if step is not None:
            color, label = marks[criterion]
            handles.append(ax.axvline(sqrt_kl[step], color=color, linestyle=":", linewidth=1.5))
            labels.append(f"{label} (step {step})")
    if curve.judge_peak is not None:
        handles.append(ax.axvline(sqrt_kl[curve.judge_peak], color="tab:orange", linestyle="--", alpha=0.6))
        labels.append(f"judge peak (step {curve.judge_peak})")
    ax.legend(handles, labels, fontsize=7, loc="best")
    ax.set_title("Over-optimisation: proxy and gold score against √KL", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
