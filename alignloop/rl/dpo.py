"""DPO: fine-tune the policy directly on chosen/rejected pairs, no reward model and no sampling.

The loss (``alignloop.losses.dpo_loss``) compares how much more likely the policy makes
the chosen completion than the rejected one, relative to the reference model, whose
log-probabilities are computed once and cached (``dpo_logps``). Pairs are read, split and
tokenised by ``dpo_data``.

One step, for B pairs (``dpo_logps.batch_logps``)::

    cache   = model(prompts)                       # (B, P) left-padded, once per pair, keeps its KV cache
    cache   = repeat each row twice                # the chosen and the rejected answer share it
    logits  = model([c_1, r_1, .., c_B, r_B], cache)   # (2B, C): both completions in one forward
    logps   = completion_logps(logits, completion, mask)   # (2B,), prompt tokens never scored
    loss    = dpo_loss(logps_chosen, logps_rejected, ref_chosen, ref_rejected, beta)

Runs under ``accelerate launch``: each process takes its slice of every global batch. On a CPU-only
machine, start several processes with ``accelerate launch --multi_gpu --num_processes N`` (torchrun
underneath; they talk over gloo): accelerate's ``--cpu`` flag starts a single process unless MPI is
installed.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from alignloop import tracking
from alignloop.errors import AlignloopError, InputError, TrainingDiverged
from alignloop.records import Comparison
from alignloop.rl.dpo_config import DPOConfig
from alignloop.rl.dpo_data import collate, encode_pairs, load_pairs, split_pairs
from alignloop.rl.dpo_logps import PairLogps, cached_reference_logps, distributed_logps
from alignloop.rl.reporting import save_policy
from alignloop.rounds import record_in_project
from alignloop.runs import RunDir, series, stage_run_dir
from alignloop.schedules import warmup_schedule

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase


@dataclass
class DPORunResult:
    """What ``train_dpo`` returns: where the run lives, how it ended, and its last metrics."""

    run_dir: Path
    steps: int
    stop_reason: str
    final_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)


def global_order(n_pairs: int, epoch: int, seed: int) -> list[int]:
    """The shuffled order of the training pairs in an epoch; the same on every process."""
    order = list(range(n_pairs))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


# ---------------------------------------------------------------- training


def step_indices(step: int, n_pairs: int, global_batch: int, seed: int) -> list[int]:
    """The pairs of optimisation step ``step``: the next ``global_batch`` of an endless stream of
    shuffled epochs, so every step is full and any step can be recomputed on resume."""
    start = step * global_batch
    indices: list[int] = []
    while len(indices) < global_batch:
        epoch, offset = divmod(start + len(indices), n_pairs)
        order = global_order(n_pairs, epoch, seed)
        indices.extend(order[offset : offset + global_batch - len(indices)])
    return indices


def total_steps(config: DPOConfig, n_pairs: int, global_batch: int) -> int:
    steps = max(1, math.ceil(config.epochs * n_pairs / global_batch))
    return min(steps, config.max_steps) if config.max_steps else steps


def build_policy(config: DPOConfig, device: torch.device) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Load the policy (right-padding is not needed: ``collate`` lays rows out itself) and add LoRA."""
    from alignloop.models import add_lora, load_policy

    model, tokenizer = load_policy(config.policy, device=str(device), dtype="float32")  # master weights
    if config.lora_r:
        torch.manual_seed(config.seed)  # the adapter's initialisation
        model = add_lora(model, config, name=config.policy)
    model.config.use_cache = False
    return model, tokenizer


def save_dpo_checkpoint(
    run: RunDir,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    step: int,
    elapsed: float,
) -> None:
    """Through the RL stage's checkpoint writer: the trained weights (adapter, or every weight), optimiser,
    scheduler and loop state from the main process, each process's RNG states, published atomically."""
    from alignloop.rl.checkpoint import save_checkpoint, trainable_state

    state: dict[str, Any] = {}
    if accelerator.is_main_process:
        state = {
            "weights": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "elapsed": elapsed,
        }
    save_checkpoint(
        run, step, state, accelerator.process_index, accelerator.is_main_process, accelerator.wait_for_everyone
    )


def preference_metrics(policy: torch.Tensor, reference: torch.Tensor, beta: float, prefix: str) -> dict[str, float]:
    """Loss, accuracy (chosen's implicit reward above rejected's) and margins from (n, 2) log-probs."""
    from alignloop.losses import dpo_loss

    loss, chosen, rejected = dpo_loss(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1], beta)
    return {
        f"{prefix}/loss": loss.item(),
        f"{prefix}/accuracy": (chosen > rejected).float().mean().item(),
        f"{prefix}/margin": (chosen - rejected).mean().item(),
        f"{prefix}/chosen_reward": chosen.mean().item(),
        f"{prefix}/rejected_reward": rejected.mean().item(),
    }


def train_dpo(
    config: DPOConfig,
    *,
    pairs: list[Comparison] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> DPORunResult:
    """Train with DPO and write the run directory; ``pairs`` overrides ``config.pairs``/``config.project``."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    from alignloop.frozen_casts import FrozenCasts
    from alignloop.losses import dpo_loss
    from alignloop.models import pick_dtype, training_autocast
    from alignloop.precision import differentiated_attention

    # cpu=True on a machine without CUDA: that is what makes accelerate set up gloo when the
    # processes come from `accelerate launch --multi_gpu` / torchrun (its --cpu flag starts one process).
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), **tracking.accelerator_options(config.report_to))
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    pairs = pairs if pairs is not None else load_pairs(config)
    train_pairs, eval_pairs = split_pairs(pairs, config.eval_fraction, config.seed)
    if not train_pairs:
        raise InputError(
            "no training pairs (all are held out or the input is empty)",
            file=config.pairs or config.project,
        )
    if config.batch_size % accelerator.num_processes:
        raise AlignloopError(
            f"batch_size {config.batch_size} must be divisible by the {accelerator.num_processes} processes"
        )

    # numbered on the main process alone, so every process writes to the same directory
    main_choice = (
        stage_run_dir(config.output, config.project, "dpo", resume=resume) if accelerator.is_main_process else None
    )
    output = broadcast_object_list([main_choice])[0]
    config = config.model_copy(update={"output": str(output)})
    run = RunDir(output)
    if accelerator.is_main_process:
        run = RunDir.create(output, resume=resume, overwrite=overwrite)
        run.save_config(config)
    accelerator.wait_for_everyone()
    tracking.start(accelerator, config.report_to, run.path, config)

    model, tokenizer = build_policy(config, accelerator.device)
    compute = pick_dtype(config.dtype, accelerator.device)
    autocast = training_autocast(compute, accelerator.device)  # the reference's passes too (see `dtype`)
    casts = FrozenCasts(model, compute)  # under LoRA every base weight, cast once instead of in every pass
    pad_id = tokenizer.pad_token_id
    train_enc = encode_pairs(tokenizer, train_pairs, config.max_length, config.max_prompt_length)
    eval_enc = encode_pairs(tokenizer, eval_pairs, config.max_length, config.max_prompt_length)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=0.0,
    )
    scheduler = warmup_schedule(optimizer, config.warmup_steps)

    step, elapsed = 0, 0.0
    latest = run.latest_checkpoint() if resume else None
    if latest is not None:
        from alignloop.rl.checkpoint import restore_training

        state = restore_training(latest, accelerator.process_index, model, optimizer, scheduler, "weights")
        step, elapsed = state["step"], state["elapsed"]
        if accelerator.is_main_process:
            run.truncate_metrics("step", step)
    with autocast, casts.applied():
        reference = cached_reference_logps(run, accelerator, model, train_enc + eval_enc, config, pad_id, step)
    ref_train, ref_eval = reference[: len(train_enc)], reference[len(train_enc) :]

    policy = model  # unwrapped, for evaluation, checkpoints and the final save
    pair_logps, optimizer = accelerator.prepare(PairLogps(model), optimizer)
    world, rank = accelerator.num_processes, accelerator.process_index
    step_pairs = config.batch_size * config.gradient_accumulation_steps  # per optimisation step, all processes
    n_steps = total_steps(config, len(train_enc), step_pairs)
    micro = config.batch_size // world  # this process's share of each forward pass
    last: dict[str, float] = {}
    eval_last: dict[str, float] = {}
    stop_reason = "completed"
    started = time.perf_counter() - elapsed
    bar = _progress(progress and accelerator.is_main_process, n_steps, step)

    while step < n_steps:
        t0 = time.perf_counter()
        all_indices = step_indices(step, len(train_enc), step_pairs, config.seed)
        indices = [  # this process's share of each of the step's forward passes
            i
            for start in range(0, step_pairs, config.batch_size)
            for i in all_indices[start + rank * micro : start + (rank + 1) * micro]
        ]
        chosen_r, rejected_r, losses, tokens = [], [], [], 0
        for k in range(0, len(indices), micro):
            idx = indices[k : k + micro]
            batch = {key: v.to(accelerator.device) for key, v in collate([train_enc[i] for i in idx], pad_id).items()}
            ref = ref_train[idx].to(accelerator.device)
            sync = k + micro >= len(indices)
            with contextlib.nullcontext() if sync else accelerator.no_sync(pair_logps):
                with autocast, casts.applied(), differentiated_attention(accelerator.device, compute):
                    logps = pair_logps(batch)
                loss, chosen, rejected = dpo_loss(
                    logps[: len(idx)], logps[len(idx) :], ref[:, 0], ref[:, 1], config.beta
                )
                accelerator.backward(loss * len(idx) / len(indices))
            chosen_r.append(chosen)
            rejected_r.append(rejected)
            losses.append(loss.detach() * len(idx) / len(indices))
            tokens += int(batch["prompt_mask"].sum() + batch["completion_mask"].sum())
        grad_norm = accelerator.clip_grad_norm_(pair_logps.parameters(), config.max_grad_norm)
        loss_value = accelerator.reduce(torch.stack(losses).sum(), "mean")
        if not torch.isfinite(loss_value) or not torch.isfinite(grad_norm):
            raise TrainingDiverged(
                f"DPO loss or gradient became {loss_value.item()} / {grad_norm.item()} at step {step + 1}; "
                f"the last good checkpoint is kept in {run.checkpoints} (try a lower learning_rate or a higher beta)"
            )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        chosen_all = accelerator.gather(torch.cat(chosen_r))
        rejected_all = accelerator.gather(torch.cat(rejected_r))
        step_s = time.perf_counter() - t0
        last = {
            "dpo/loss": loss_value.item(),
            "dpo/accuracy": (chosen_all > rejected_all).float().mean().item(),
            "dpo/margin": (chosen_all - rejected_all).mean().item(),
            "dpo/chosen_reward": chosen_all.mean().item(),
            "dpo/rejected_reward": rejected_all.mean().item(),
            "dpo/grad_norm": grad_norm.item(),
            "dpo/lr": scheduler.get_last_lr()[0],
        }
        record: dict[str, Any] = {
            "step": step,
            "epoch": step * step_pairs / len(train_enc),
            **last,
        }
        record.update({"time/step_s": step_s, "time/tokens_per_s": tokens * world / step_s})
        out_of_time = config.max_time is not None and time.perf_counter() - started >= config.max_time
        if eval_enc and (step % config.eval_every == 0 or step == n_steps or out_of_time):
            with autocast, casts.applied():
                eval_logps = distributed_logps(accelerator, policy, eval_enc, pad_id, 2 * config.batch_size)
            eval_last = preference_metrics(eval_logps, ref_eval, config.beta, "eval")
            record.update(eval_last)
        if accelerator.is_main_process:
            run.log(record)
            tracking.log(accelerator, record, step)
        if bar is not None:
            bar.update(1, description=f"loss {last['dpo/loss']:.3f} acc {last['dpo/accuracy']:.2f}")
        if step % config.save_every == 0 or step == n_steps or out_of_time:
            save_dpo_checkpoint(run, accelerator, policy, optimizer, scheduler, step, time.perf_counter() - started)
        if out_of_time and step < n_steps:
            stop_reason = "max_time"
            break
    if bar is not None:
        bar.close()
    tracking.finish(accelerator)

    if accelerator.is_main_process:
        if stop_reason == "completed":
            save_policy(policy, tokenizer, run.model_dir, bool(config.lora_r) and config.merge_lora)
        save_plots(run)
        run.log({"step": step, "stop_reason": stop_reason})
        if config.project:
            record_in_project(config.project, trained_policy=str(run.model_dir), dpo_run=str(run.path))
    accelerator.wait_for_everyone()
    return DPORunResult(run.path, step, stop_reason, last, eval_last)


# Each plot: its name, a line per label drawn from that metric, and the y axis.
PLOTS = (
    ("dpo_loss", {"train": "dpo/loss", "held-out": "eval/loss"}, "DPO loss"),
    ("dpo_accuracy", {"train": "dpo/accuracy", "held-out": "eval/accuracy"}, "preference accuracy"),
    (
        "dpo_rewards",
        {"chosen": "dpo/chosen_reward", "rejected": "dpo/rejected_reward", "held-out margin": "eval/margin"},
        "implicit reward β·log(π/ref)",
    ),
)


def save_plots(run: RunDir) -> None:
    """Loss/accuracy and implicit-reward curves, training and held-out, as PNG."""
    metrics = run.read_metrics()
    for name, lines, ylabel in PLOTS:
        run.plot(
            name, {label: series(metrics, "step", key) for label, key in lines.items()}, xlabel="step", ylabel=ylabel
        )


class _Progress:
    """A rich progress bar for a person watching the run (metrics go to metrics.jsonl, not here)."""

    def __init__(self, total: int, done: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("DPO"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
        )
        self._task = self._progress.add_task("", total=total, completed=done)
        self._progress.start()

    def update(self, n: int, description: str) -> None:
        self._progress.update(self._task, advance=n, description=description)

    def close(self) -> None:
        self._progress.stop()


def _progress(enabled: bool, total: int, done: int) -> _Progress | None:
    return _Progress(total, done) if enabled else None
