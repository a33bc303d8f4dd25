"""Training a reward model on comparisons, top to bottom.

    pairs ──tokenise──▶ train / test PairSets ──▶ epochs of length-bucketed batches (a prompt's pairs together)
          ──one forward of the batch's distinct completions──▶ r ──▶ −log σ(r_c − r_r − margin)
          ──AdamW, linear warm-up/decay──▶ eval each epoch (accuracy, loss, ECE, ceiling)
          ──▶ best model by held-out loss + normalisation statistics in the run directory

The same code runs in one process or under ``accelerate launch`` (DDP): every process
builds the same global batches and takes its share of each (``batch[rank::world]``); the
loss is scaled so the averaged gradient is the mean over the global batch, which keeps
the metrics equal to a one-process run at the same global batch, within float tolerance.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignloop import tracking
from alignloop.errors import AlignloopError, TrainingDiverged
from alignloop.records import Comparison
from alignloop.reward.artifacts import save_model, save_normalization, save_plots
from alignloop.reward.config import RewardConfig
from alignloop.reward.data import (
    DataReport,
    PairSet,
    SequenceEncoder,
    assign_test_split,
    encode_pairs,
    epoch_batches,
    newline_marker,
    swap_splits,
)
from alignloop.reward.display import ProgressDisplay
from alignloop.reward.evaluate import pair_deltas, pair_metrics
from alignloop.reward.model import context_length, load_backbone
from alignloop.runs import RunDir, stage_run_dir
from alignloop.schedules import warmup_schedule

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


@dataclass
class RewardRunResult:
    """What a training run produced."""

    run_dir: Path
    metrics: dict[str, float]  # the last training and evaluation metrics
    data: DataReport
    steps: int  # optimiser steps taken
    pairs_per_s: float  # training throughput, evaluation and checkpointing excluded
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    processes: int = 1  # data-parallel processes that trained together
    main_process: bool = True  # False in the other processes of a distributed run (they print nothing)
    member_accuracy: list[float] = field(default_factory=list)  # an ensemble's members' held-out accuracy


@dataclass
class _Position:
    """Where training is: saved with every checkpoint so that a resumed run continues exactly."""

    epoch: int = 0
    batch: int = 0  # forward steps of this epoch already done
    step: int = 0  # optimiser steps done
    best_eval_loss: float = math.inf
    evals_without_improvement: int = 0
    pairs_seen: int = 0
    train_seconds: float = 0.0
    best_eval: dict[str, float] = field(default_factory=dict)  # held-out metrics of the model kept so far


def load_training_pairs(config: RewardConfig) -> list[Comparison]:
    """The pairs named by the config (a pairs file, or the consensus pairs of a project), their
    splits exchanged when the config trains on the test split; a project's ties (``Comparison.tied``)
    only with ``train_on_ties`` (``usable_ties`` decides which ties of a file are used)."""
    if config.pairs:
        from alignloop.pairs import read_pairs

        pairs = read_pairs(config.pairs)
    elif config.project:
        from alignloop.pairs import build_pairs
        from alignloop.project import open_project

        handle = open_project(config.project)
        try:
            pairs = build_pairs(handle, by_group=config.per_group, ties=config.train_on_ties)
        finally:
            handle.close()
    else:
        raise AlignloopError("no training pairs: give --pairs FILE or --project DIR")
    return swap_splits(pairs, config.pairs or config.project) if config.train_split == "test" else pairs


def usable_ties(pairs: list[Comparison], config: RewardConfig) -> list[Comparison]:
    """The pairs without the ties that are not trained on: all of them unless ``train_on_ties``, and the
    held-out ones always (a tie has no order to score)."""
    return [p for p in pairs if not p.tied or (config.train_on_ties and p.split != "test")]


def train_member(
    config: RewardConfig,
    *,
    pairs: list[Comparison] | None = None,
    progress: bool = False,
    resume: bool = False,
    overwrite: bool = False,
) -> RewardRunResult:
    """Train one reward model as ``config`` says, on ``pairs`` or else on the pairs the config names: the
    whole of a run with ``ensemble: 1``, or one member of an ensemble (``ensemble.train_reward`` calls it
    per member; ``config.ensemble`` is not read here).

    ``resume`` continues the run in ``config.output`` (default: the project's newest
    reward run) from its last checkpoint, ending with the same weights and metrics as an
    uninterrupted run; ``overwrite`` replaces an existing run directory.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list, gather_object

    from alignloop.losses import pairwise_loss
    from alignloop.models import pick_dtype, resolve_reward_backbone, training_autocast
    from alignloop.precision import eager_training_attention
    from alignloop.reward.grouped import GroupedScorer, group_metrics, group_names
    from alignloop.reward.packing import RewardScorer, make_batch

    # cpu=True on a machine without CUDA: processes started by torchrun then join a gloo group
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), **tracking.accelerator_options(config.report_to))
    compute = pick_dtype(config.dtype, accelerator.device, "training")  # bf16 where the probe chose it
    autocast = training_autocast(compute, accelerator.device)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    if config.batch_size < world:
        raise AlignloopError(f"batch_size {config.batch_size} is smaller than the {world} processes; raise it")

    # Data: every process reads and tokenises the same pairs, so all agree on the batches.
    pairs = assign_test_split(
        list(pairs) if pairs is not None else load_training_pairs(config), config.eval_fraction, config.seed
    )
    pairs = usable_ties(pairs, config)
    torch.manual_seed(config.seed)  # the new score head starts the same in every process and every run
    model, tokenizer = load_backbone(resolve_reward_backbone(config.backbone))
    max_length = context_length(model, tokenizer, config.max_length)
    encoder = SequenceEncoder(tokenizer, max_length, newline=newline_marker(tokenizer))
    labeler_groups = group_names(pairs) if config.per_group else None  # a head per group (grouped.py)
    train_set, test_set, report = encode_pairs(pairs, encoder, too_long=config.too_long, groups=labeler_groups)
    if len(train_set) == 0:
        raise AlignloopError(f"no usable training pairs ({report.summary()})")
    lengths = [train_set.pair_length(i) for i in range(len(train_set))]
    groups = train_set.prompt if config.group_by_prompt else None
    pad_id = tokenizer.pad_token_id

    if config.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    if config.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if config.lora_r:
        model = _with_lora(model, config)
    model = RewardScorer(model, packing=config.packing, pooling=config.pooling)  # rewards (n,); what DDP wraps
    if labeler_groups is not None:
        model = GroupedScorer(model, labeler_groups)
    mode = model.mode

    # Every epoch's batches, drawn once: whole prompts fill a batch, so how many an epoch has depends on its shuffle.
    batches_per_epoch = [
        epoch_batches(
            lengths,
            config.batch_size,
            seed=config.seed,
            epoch=epoch,
            bucketing=config.length_bucketing,
            min_size=_min_batch(config, world),
            groups=groups,
        )
        for epoch in range(config.epochs)
    ]
    # Optimiser and schedule: linear warm-up to the peak rate, then linear decay to zero at the last step.
    accumulation = config.gradient_accumulation_steps
    total_steps = sum(math.ceil(len(batches) / accumulation) for batches in batches_per_epoch)
    warmup = int(config.warmup_ratio * total_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    scheduler = warmup_schedule(optimizer, warmup, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    fingerprint_before = _fingerprint(accelerator.unwrap_model(model))

    # Run directory (the main process decides the path and writes every file).
    out = broadcast_object_list([_output_dir(config, resume) if main else None])[0]
    config = config.model_copy(update={"output": str(out)})
    run = RunDir(out)
    pos = _Position()
    if main:
        RunDir.create(out, resume=resume, overwrite=overwrite)
        run.save_config(config)
        (run.path / "data.json").write_text(json.dumps(report.to_json(), indent=2))
    accelerator.wait_for_everyone()
    tracking.start(accelerator, config.report_to, run.path, config)
    checkpoint = run.latest_checkpoint() if resume else None
    if resume and checkpoint is None:
        log.warning("%s has no checkpoint yet; starting from the beginning", out)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        pos = _Position(**json.loads((checkpoint / STATE_FILE).read_text()))
        if main:
            run.truncate_metrics("step", pos.step)

    display = ProgressDisplay(progress and main, total_steps, pos.step)
    patience = config.early_stopping_patience
    stopped_early = bool(patience) and pos.evals_without_improvement >= patience  # a resumed run may have stopped
    last: dict[str, float] = {}
    window = torch.zeros(4)  # loss sum, correct pairs, pairs, ordered (not tied) pairs since the last log
    model.train()
    while pos.epoch < config.epochs and not stopped_early:
        batches = batches_per_epoch[pos.epoch]
        while pos.batch < len(batches):
            started = time.perf_counter()
            group = batches[pos.batch : pos.batch + accumulation]
            n_pairs = sum(len(b) for b in group)  # pairs in this optimiser step, all processes together
            for k, batch_ids in enumerate(group):
                local = batch_ids[rank::world]
                # each completion is scored once, however many of the batch's pairs it is in
                seqs = sorted({train_set.chosen[i] for i in local} | {train_set.rejected[i] for i in local})
                column = {seq: j for j, seq in enumerate(seqs)}
                chosen = torch.tensor([column[train_set.chosen[i]] for i in local])
                rejected = torch.tensor([column[train_set.rejected[i]] for i in local])
                inputs = {
                    key: v.to(accelerator.device)
                    for key, v in make_batch(train_set.sequences, seqs, pad_id, mode).items()
                }
                margin = (
                    torch.tensor([train_set.margin[i] for i in local], device=accelerator.device)
                    if config.use_margin
                    else None
                )
                tied = torch.tensor([train_set.tied[i] for i in local], dtype=torch.bool)
                target = (
                    torch.tensor([_target(train_set, i, config.soft_labels) for i in local], device=accelerator.device)
                    if config.soft_labels or tied.any()
                    else None
                )
                sync = k == len(group) - 1 or world == 1
                with (
                    nullcontext() if sync else accelerator.no_sync(model),
                    autocast,
                    eager_training_attention(model, accelerator.device, compute),
                ):
                    rewards = model(**inputs).float()  # (unique sequences,)
                    r_chosen, r_rejected = rewards[chosen], rewards[rejected]  # (n_local,) each
                    loss = pairwise_loss(r_chosen, r_rejected, margin, target)
                    # scaled so that the gradient, averaged over processes, is the mean over the global step
                    accelerator.backward(loss * (len(local) * world / n_pairs))
                ordered = ~tied  # a tie has no side to be right about
                correct = (r_chosen > r_rejected).cpu()[ordered].sum().item()
                window += torch.tensor([loss.item() * len(local), correct, len(local), ordered.sum().item()])
            grad_norm = (
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm) if config.max_grad_norm else None
            )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            pos.step += 1
            pos.batch += len(group)
            pos.pairs_seen += n_pairs
            pos.train_seconds += time.perf_counter() - started
            display.advance(pos.pairs_seen / pos.train_seconds, last.get("rm/loss"))

            if pos.step % config.log_every_steps == 0 or pos.batch >= len(batches):
                totals = accelerator.reduce(window.to(accelerator.device), reduction="sum").cpu()
                window.zero_()
                last = {
                    "rm/loss": totals[0].item() / totals[2].item(),
                    "rm/lr": scheduler.get_last_lr()[0],
                    "rm/pairs_per_s": pos.pairs_seen / pos.train_seconds,
                }
                if totals[3] > 0:
                    last["rm/accuracy"] = totals[1].item() / totals[3].item()
                if grad_norm is not None:
                    last["rm/grad_norm"] = float(grad_norm)
                if not math.isfinite(last["rm/loss"]):
                    raise TrainingDiverged(
                        f"reward-model loss became {last['rm/loss']} at step {pos.step}; "
                        f"the last good checkpoint is kept in {run.checkpoints}"
                    )
                if main:
                    run.log({"step": pos.step, "epoch": pos.epoch + pos.batch / len(batches), **last})
                    tracking.log(accelerator, last, pos.step)
                display.advance(pos.pairs_seen / pos.train_seconds, last["rm/loss"], refresh_only=True)
            if config.save_every and pos.step % config.save_every == 0 and pos.batch < len(batches):
                _checkpoint(accelerator, run, pos)

        # End of epoch: evaluate on the held-out pairs, keep the best model, maybe stop.
        pos.epoch += 1
        pos.batch = 0
        if len(test_set):
            mine = list(range(rank, len(test_set), world))
            deltas = pair_deltas(
                accelerator.unwrap_model(model),
                test_set,
                mine,
                pad_id=pad_id,
                sequences_per_batch=config.eval_batch_size,
            )
            gathered = sorted(gather_object(list(zip(mine, deltas))))
            eval_metrics = pair_metrics(
                [d for _, d in gathered],
                test_set.margin,
                test_set.agreement,
                use_margin=config.use_margin,
                voters=test_set.voters,
            )
            if labeler_groups is not None:
                deltas = [d for _, d in gathered]
                eval_metrics.update(group_metrics(deltas, test_set, labeler_groups, use_margin=config.use_margin))
            last.update(eval_metrics)
            if main:
                run.log({"step": pos.step, "epoch": pos.epoch, **eval_metrics})
                tracking.log(accelerator, eval_metrics, pos.step)
            if eval_metrics["rm/eval_loss"] < pos.best_eval_loss:
                pos.best_eval_loss = eval_metrics["rm/eval_loss"]
                pos.best_eval = {**eval_metrics, "rm/best_epoch": float(pos.epoch)}
                pos.evals_without_improvement = 0
                if main:
                    save_model(accelerator.unwrap_model(model), tokenizer, run, encoder, config.pooling)
            else:
                pos.evals_without_improvement += 1
            stopped_early = bool(patience) and pos.evals_without_improvement >= patience
            display.note(
                f"epoch {pos.epoch}: held-out accuracy {eval_metrics['rm/eval_accuracy']:.3f}, "
                f"loss {eval_metrics['rm/eval_loss']:.4f}"
            )
        _checkpoint(accelerator, run, pos)
    display.close()
    last.update(pos.best_eval)  # the held-out metrics of the model that was kept, not of the last epoch
    tracking.finish(accelerator)

    if main:
        if not len(test_set):
            save_model(accelerator.unwrap_model(model), tokenizer, run, encoder, config.pooling)
        if _fingerprint(accelerator.unwrap_model(model)) == fingerprint_before:
            log.warning("training left every trainable parameter unchanged; check the learning rate and the data")
        save_normalization(
            run, train_set, pad_id=pad_id, sequences_per_batch=config.eval_batch_size, device=accelerator.device
        )
        history = run.read_metrics()
        save_plots(run, history)
    accelerator.wait_for_everyone()
    pairs_per_s = pos.pairs_seen / pos.train_seconds if pos.train_seconds else 0.0
    history = run.read_metrics()
    return RewardRunResult(out, last, report, pos.step, pairs_per_s, stopped_early, history, world, main)


def _target(pairs: PairSet, i: int, soft: bool) -> float:
    """Pair ``i``'s label, the probability it gives chosen ≻ rejected: with ``soft`` its labelers'
    agreement, else certainty; a tie ½ where no agreement was recorded (an imported pair) or labels are hard."""
    agreement = pairs.agreement[i]
    if pairs.tied[i] and (agreement is None or not soft):
        return 0.5
    if not soft or agreement is None:
        return 1.0
    return agreement


def _min_batch(config: RewardConfig, world: int) -> int:
    # independent of the process count where possible, so 1 and N processes batch alike
    return max(world, config.batch_size // 2)


def _output_dir(config: RewardConfig, resume: bool) -> Path:
    """The run directory: as configured, else the project's next ``runs/reward-<n>`` (its newest when resuming)."""
    return stage_run_dir(config.output, config.project, "reward", resume=resume)


def _with_lora(model: torch.nn.Module, config: RewardConfig) -> torch.nn.Module:
    from alignloop.models import ALL_LINEAR, add_lora

    return add_lora(model, config, default_targets=ALL_LINEAR, task_type="SEQ_CLS", name="the backbone")


def _checkpoint(accelerator: Any, run: RunDir, pos: _Position) -> None:
    """Model, optimiser, schedule, RNG states and the data position, published atomically."""
    staging = run.checkpoints / ".staging"
    if accelerator.is_main_process:
        staging = run.staging_dir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        (staging / STATE_FILE).write_text(json.dumps(pos.__dict__))
        run.commit_checkpoint(staging, pos.step)
    accelerator.wait_for_everyone()


def _fingerprint(model: torch.nn.Module) -> list[float]:
    """Sum and sum of squares of each trainable parameter: any update changes them, at no memory cost."""
    return [
        v
        for p in model.parameters()
        if p.requires_grad
        for v in (p.detach().double().sum().item(), p.detach().double().square().sum().item())
    ]
