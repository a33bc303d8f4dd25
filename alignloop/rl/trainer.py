"""The shared RL loop: rollout → scoring → optimisation, then logging, checkpoints and stopping.

Read top to bottom, one step is:

1. take this step's prompts (each process its share) and sample ``group_size``
   completions per prompt through the generation backend (``collect_rollout``), which
   also gives the policy's and the reference's log-probs for every completion token;
2. score the decoded completions with the reward (its own tokenizer; a per-group reward
   model with the head of ``config.group``), subtract the penalty for completions that
   never ended;
3. let the algorithm turn rewards into advantages, then run its loss over minibatches
   for its number of epochs (gradients all-reduced across processes, clipped). When
   that is a single optimiser step (one epoch, one minibatch: GRPO's and RLOO's
   defaults), the training forward also supplies the sampling policy's log-probs,
   which are the same numbers, so the rollout's own policy pass is skipped; with
   several steps, a sampler that ran the trained weights in the training precision
   supplies them (and the values, from its hidden states), so it is skipped too;
4. log metrics, write samples, checkpoint, and check the stopping rules.

Algorithms (``ppo.py``, ``grpo.py``, ``raft.py``, ``rloo.py``) only define advantages and loss.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alignloop import tracking
from alignloop.cpu_linears import kept_reorders
from alignloop.errors import AlignloopError, InputError, TrainingDiverged
from alignloop.models import pick_dtype
from alignloop.rl import checkpoint as ckpt
from alignloop.rl import reporting
from alignloop.rl.config import RLConfig
from alignloop.rl.prompts import RLPrompt, project_prompts, read_prompt_file
from alignloop.rl.rewards import check_finite, load_reward, preference_as_reward, reference_rewards
from alignloop.rl.rollout import ActorCritic, Rollout, collect_rollout, token_gap
from alignloop.rl.sampler_copy import SamplerCopy
from alignloop.rl.setup import build_models, make_algorithm, parameter_groups
from alignloop.runs import RunDir, stage_run_dir, truncate_jsonl
from alignloop.schedules import warmup_schedule

if TYPE_CHECKING:
    from accelerate import Accelerator

    from alignloop.rl.algorithm import Algorithm

log = logging.getLogger(__name__)


@dataclass
class RLRunResult:
    run_dir: Path
    model_dir: Path  # the final policy (save_pretrained): the next round's model
    steps: int  # steps completed, over all sessions of the run
    stop_reason: str  # "target_reward" | "max_steps" | "max_time"
    algo: str  # the algorithm that ran (``config.algo``)
    final_metrics: dict[str, Any] = field(default_factory=dict)  # the last step's record


def load_prompts(config: RLConfig) -> list[RLPrompt]:
    if bool(config.prompts) == bool(config.project):
        raise AlignloopError("give the prompts as --prompts FILE or --project DIR (exactly one)")
    return read_prompt_file(config.prompts) if config.prompts else project_prompts(str(config.project))


def step_prompt_indices(n_prompts: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Global prompt indices of step ``step`` (1-based): a fresh permutation per pass over the prompts."""
    indices = []
    for position in range((step - 1) * batch_size, step * batch_size):
        epoch, offset = divmod(position, n_prompts)
        order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        indices.append(int(order[offset]))
    return indices


def row_seed(seed: int, step: int, row: int) -> int:
    """Sampling seed of one completion: a function of the run seed, the step and its global row only."""
    return (seed * 1_000_003 + step * 65_537 + row) % (2**63 - 1)


def train_rl(config: RLConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = False) -> RLRunResult:
    """Fine-tune ``config.policy`` against ``config.reward_model`` with ``config.algo``; see the module docs."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    from alignloop.backends import HFBackend, SamplingParams, encode_prompts

    if not config.reward_model.strip():
        raise AlignloopError("no reward given: pass --reward-model RUN_DIR or MODULE:FUNCTION")
    accelerator = Accelerator(
        cpu=config.device == "cpu" or not torch.cuda.is_available(), **tracking.accelerator_options(config.report_to)
    )
    world, rank, is_main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    if config.batch_size % world:
        raise AlignloopError(f"batch_size {config.batch_size} must be divisible by the {world} processes")
    local_prompts = config.batch_size // world
    group = config.group_size

    prompts = load_prompts(config)
    reward_fn = load_reward(config.reward_model, device=str(accelerator.device), group=config.group)
    if config.reward_shaping == "par":  # the labelled answers are scored once, by the main process
        reference = reference_rewards(config.project, reward_fn) if is_main else None
        reward_fn = preference_as_reward(reward_fn, broadcast_object_list([reference])[0])
    # numbered on the main process alone, so every process writes to the same directory
    main_choice = stage_run_dir(config.output, config.project, config.algo, resume=resume) if is_main else None
    config = config.model_copy(update={"output": str(broadcast_object_list([main_choice])[0])})
    run = RunDir(config.output)
    if is_main:
        run = RunDir.create(run.path, resume=resume, overwrite=overwrite)
        run.save_config(config)
    accelerator.wait_for_everyone()

    _seed_everything(config.seed)
    algorithm = make_algorithm(config)
    models = build_models(config, algorithm, str(accelerator.device))
    actor_critic = models.actor_critic
    optimizer = torch.optim.AdamW(parameter_groups(actor_critic, config), eps=1e-8)
    scheduler = warmup_schedule(optimizer, config.warmup_steps)
    model, optimizer = accelerator.prepare(actor_critic, optimizer)
    # Precision (docs/config.md): sampling from a bf16 copy and training under bf16 autocast where `dtype` says so
    weights = next(actor_critic.policy.parameters()).dtype
    sampling, compute = (pick_dtype(config.dtype, accelerator.device, use) for use in ("sampling", "training"))
    sampler = SamplerCopy(actor_critic.policy, sampling) if sampling != weights else None
    if compute != weights:
        for module in (actor_critic, models.reference):
            if module is not None:
                module.compute_in(compute)
    importance_cap = config.importance_cap if sampler is not None else None
    log.info("RL precision: weights %s, sampling %s, training compute %s", weights, sampling, compute)
    sampler_model = sampler.model if sampler is not None else actor_critic.policy
    backend = HFBackend(sampler_model, models.tokenizer, batch_size=local_prompts * group)
    params = SamplingParams(temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens)
    prompt_ids = encode_prompts(models.tokenizer, [p.messages for p in prompts])
    _check_context(prompt_ids, config, getattr(actor_critic.policy.config, "max_position_embeddings", None))

    step, elapsed_before, history = 0, 0.0, []
    if resume and (latest := run.latest_checkpoint()) is not None:
        state = ckpt.restore_training(latest, rank, actor_critic, optimizer, scheduler, "trainable")
        algorithm.load_state_dict(state["algorithm"])
        step, elapsed_before, history = state["step"], state["elapsed"], state["reward_history"]
        if is_main:
            run.truncate_metrics("step", step)
            truncate_jsonl(run.path / "samples.jsonl", "step", step)
        log.info("resumed %s at step %d", run.path, step)
    accelerator.wait_for_everyone()

    rows = local_prompts * group
    single_update = algorithm.epochs == 1 and (algorithm.minibatch_size or rows) >= rows
    # the sampler runs the trained weights in the training precision: its log-probs are the policy's
    same_forward = sampler is None and compute == weights and actor_critic.critic is None
    policy_scores = "training" if single_update else "sampler" if same_forward else "pass"
    display = reporting.LiveDisplay(config, step) if progress and is_main else None
    tracking.start(accelerator, config.report_to, run.path, config)
    started = time.perf_counter()
    last_good: dict[str, Any] = {}
    ns = algorithm.name

    def checkpoint() -> None:
        state = {
            "trainable": ckpt.trainable_state(actor_critic),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "algorithm": algorithm.state_dict(),
            "step": step,
            "elapsed": elapsed_before + time.perf_counter() - started,
            "reward_history": history,
        }
        ckpt.save_checkpoint(run, step, state, rank, is_main, accelerator.wait_for_everyone, config.keep_checkpoints)

    try:
        while True:
            elapsed = elapsed_before + time.perf_counter() - started
            stop_reason = _stop_reason(config, step, elapsed, history)
            if stop_reason:
                break
            step += 1

            # 1. Rollout: this process's prompts, k completions each, scored token by token.
            t0, cpu0 = time.perf_counter(), time.process_time()
            global_indices = step_prompt_indices(len(prompts), config.batch_size, step, config.seed)
            mine = global_indices[rank * local_prompts : (rank + 1) * local_prompts]
            first_row = rank * local_prompts * group
            seeds = [row_seed(config.seed, step, first_row + i) for i in range(local_prompts * group)]
            if sampler is not None:
                sampler.sync()  # the copy samples from the weights as trained so far
            with kept_reorders():  # the frozen weights reordered once for sampling and scoring, dropped before learning
                rollout = collect_rollout(
                    actor_critic, backend, [prompt_ids[i] for i in mine], [prompts[i].text for i in mine],
                    group, params, seeds, models.reference, algorithm.uses_reference, policy_scores,
                )  # fmt: skip
            t1 = time.perf_counter()

            # 2. Reward of each decoded completion; a completion that never ended pays a penalty.
            raw = reward_fn(rollout.prompts, rollout.completions)
            _raise_if_any(accelerator, _nonfinite_rewards(raw, config.reward_model), step, run)
            raw_scores = torch.tensor(raw, dtype=torch.float32, device=rollout.mask.device)
            scores = raw_scores - config.missing_eos_penalty * (~rollout.ended).float()
            t2 = time.perf_counter()

            # 3. Advantages, then the algorithm's loss over minibatches.
            if single_update:
                algo_metrics, learn_metrics = _learn_once(
                    model, optimizer, accelerator, rollout, scores, algorithm, config, step, run, importance_cap
                )
            else:
                if importance_cap is not None:
                    rollout.set_importance_weights(importance_cap)
                algo_metrics = algorithm.advantages(rollout, scores)
                learn_metrics = _optimise(model, optimizer, accelerator, rollout, algorithm, config, step, run)
            scheduler.step()
            t3 = time.perf_counter()

            # 4. Metrics (averaged over processes), samples, checkpoint.
            all_scores = accelerator.gather(raw_scores)
            local = {
                **algo_metrics,
                **learn_metrics,
                "entropy": float(rollout.entropy.mean()),
                "response_length": float(rollout.lengths.mean()),
                "ended_fraction": float(rollout.ended.float().mean()),
                "score_mean": float(scores.mean()),
            }
            if (gap := rollout.logprob_gap()) is not None:
                local["logprob_gap"] = gap  # sampler vs training log-probs of the sampled tokens, mean |Δ| in nats
            merged = _mean_over_processes(accelerator, local)
            tokens = float(accelerator.reduce(rollout.lengths.sum(), "sum"))
            record = {
                "step": step,
                f"{ns}/reward_mean": float(all_scores.mean()),
                f"{ns}/reward_std": float(all_scores.std()) if all_scores.numel() > 1 else 0.0,
                f"{ns}/completions": all_scores.numel(),
                **{f"{ns}/{k}": v for k, v in merged.items()},
                f"{ns}/lr": scheduler.get_last_lr()[0],
                "time/generate": t1 - t0,
                "time/score": t2 - t1,
                "time/learn": t3 - t2,
                "time/step": t3 - t0,
                "time/cpu_step": time.process_time() - cpu0,  # CPU seconds of this process (all threads)
                "perf/tokens_per_s": tokens / (t3 - t0),
                "perf/learn_tokens": float(accelerator.reduce(rollout.attention_mask.sum(), "sum")) * algorithm.epochs,
                "elapsed": elapsed_before + time.perf_counter() - started,
            }
            history.append(record[f"{ns}/reward_mean"])
            last_good = record
            if is_main:
                run.log(record)
                tracking.log(accelerator, record, step)
                if step % config.sample_every == 0 or step == 1:
                    reporting.write_samples(run, step, rollout, raw)
                if display is not None:
                    display.update(step, record, ns)
            if step % config.save_every == 0:
                checkpoint()
    finally:
        if display is not None:
            display.close()
        tracking.finish(accelerator)

    log.info("stopping at step %d: %s", step, stop_reason)
    latest = run.latest_checkpoint()
    if last_good and (latest is None or latest.name != run.checkpoint_dir(step).name):
        checkpoint()
    if is_main:
        reporting.save_final_model(actor_critic, models.tokenizer, run, config)
        reporting.save_plots(run, ns)
        reporting.write_summary(run, step, stop_reason, last_good, config.group)
        if config.project:
            reporting.record_in_round(config, run, step, stop_reason, last_good.get(f"{ns}/reward_mean"))
    accelerator.wait_for_everyone()
    return RLRunResult(run.path, run.model_dir, step, stop_reason, config.algo, last_good)


def _optimise(
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    rollout: Rollout,
    algorithm: Algorithm,
    config: RLConfig,
    step: int,
    run: RunDir,
) -> dict[str, float]:
    """``algorithm.epochs`` passes over the rollout in shuffled minibatches, one optimiser step each.

    A prompt's completions stay together (``group_order``), so a minibatch runs each of its
    prompts once (``rollout.completion_hidden``) instead of once per row: 16 % less time for a
    minibatch of 8 rows from 4 prompts × 4 on SmolLM2, where random rows held 3.85 prompts on average.
    When the rollout's policy log-probs are the sampler's, the sampling/training gap is measured
    on the first minibatch, whose forward still runs the weights that sampled.
    """
    n = rollout.n_rows
    size = min(algorithm.minibatch_size or n, n)
    order_rng = torch.Generator().manual_seed(config.seed * 7_919 + step)
    sums: dict[str, float] = defaultdict(float)
    count = 0
    gap: dict[str, float] = {}
    model.train()
    for _ in range(algorithm.epochs):
        order = group_order(rollout.group, order_rng).to(rollout.mask.device)
        for start in range(0, n, size):
            batch = rollout.select(order[start : start + size])
            out = _forward(model, batch, algorithm, with_entropy=False)
            if count == 0 and rollout.policy_from_sampler:
                gap["logprob_gap"] = token_gap(out["logprobs"], batch["sampler_logprobs"], batch["mask"])
            loss, metrics = algorithm.loss(out, batch)
            metrics["grad_norm"] = _update(optimizer, accelerator, loss, algorithm, config, step, run)
            for key, value in metrics.items():
                sums[key] += float(value)
            count += 1
    return {**{key: value / count for key, value in sums.items()}, **gap}


def group_order(group: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Row indices for an epoch: the groups (``Rollout.group``) in a random order, each group's rows together.

    With one row per group (PPO's usual k = 1) this is exactly ``torch.randperm(rows, generator=generator)``.
    """
    n_groups = int(group.max()) + 1 if group.numel() else 0
    shuffled = torch.randperm(n_groups, generator=generator)
    rank = torch.empty_like(shuffled)
    rank[shuffled] = torch.arange(n_groups)  # where each group comes in the epoch
    return torch.sort(rank[group.cpu()], stable=True).indices


def _learn_once(
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    rollout: Rollout,
    scores: torch.Tensor,
    algorithm: Algorithm,
    config: RLConfig,
    step: int,
    run: RunDir,
    importance_cap: float | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """The single optimiser step of an on-policy rollout: one forward gives the old log-probs and the loss."""
    model.train()
    out = _forward(model, vars(rollout), algorithm, with_entropy=True)
    rollout.set_policy_scores(out)
    if importance_cap is not None:
        rollout.set_importance_weights(importance_cap)
    algo_metrics = algorithm.advantages(rollout, scores)
    loss, metrics = algorithm.loss(out, rollout.select(torch.arange(rollout.n_rows, device=rollout.mask.device)))
    metrics["grad_norm"] = _update(optimizer, accelerator, loss, algorithm, config, step, run)
    return algo_metrics, {key: float(value) for key, value in metrics.items()}


def _forward(
    model: ActorCritic, batch: dict[str, Any], algorithm: Algorithm, with_entropy: bool
) -> dict[str, torch.Tensor]:
    return model(
        batch["input_ids"], batch["attention_mask"], batch["position_ids"], batch["completion_ids"],
        with_values=algorithm.uses_values, with_entropy=with_entropy,
    )  # fmt: skip


def _update(
    optimizer: torch.optim.Optimizer,
    accelerator: Accelerator,
    loss: torch.Tensor,
    algorithm: Algorithm,
    config: RLConfig,
    step: int,
    run: RunDir,
) -> float:
    """Backward, clip and step; stops every process on a non-finite loss. Returns the gradient norm."""
    problem = None if torch.isfinite(loss) else f"the {algorithm.name} loss is {loss.item()}"
    _raise_if_any(accelerator, problem, step, run)
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    return float(grad_norm)


def _check_context(prompt_ids: list[list[int]], config: RLConfig, context: int | None) -> None:
    """Refuse a prompt that leaves no room for ``max_new_tokens`` in the policy's context."""
    for number, ids in enumerate(prompt_ids, start=1):
        if context and len(ids) + config.max_new_tokens > context:
            raise InputError(
                f"prompt {number} has {len(ids)} tokens; with max_new_tokens {config.max_new_tokens} it exceeds "
                f"the policy's context of {context} tokens (shorten it or lower max_new_tokens)",
                file=config.prompts or config.project,
                field="prompt",
            )


def _stop_reason(config: RLConfig, step: int, elapsed: float, history: list[float]) -> str | None:
    if config.target_reward is not None and len(history) >= config.window:
        if sum(history[-config.window :]) / config.window >= config.target_reward:
            return "target_reward"
    if step >= config.max_steps:
        return "max_steps"
    if config.max_time is not None and elapsed >= config.max_time:
        return "max_time"
    return None


def _nonfinite_rewards(values: list[float], spec: str) -> str | None:
    try:
        check_finite(values, spec)
    except ValueError as exc:
        return str(exc)
    return None


def _raise_if_any(accelerator: Accelerator, problem: str | None, step: int, run: RunDir) -> None:
    """Stop every process together when any of them saw a NaN/inf (one raising alone would hang the rest)."""
    if accelerator.num_processes > 1:
        flag = torch.tensor([1.0 if problem else 0.0], device=accelerator.device)
        if float(accelerator.reduce(flag, "sum")) == 0:
            return
        problem = problem or "another process saw a non-finite loss or reward"
    elif problem is None:
        return
    latest = run.latest_checkpoint()
    kept = f"the last good checkpoint is {latest}" if latest else "no checkpoint was written before it"
    raise TrainingDiverged(
        f"step {step}: {problem}; stopped, {kept} (resume from it with a lower learning rate or a fixed reward)"
    )


def _mean_over_processes(accelerator: Accelerator, metrics: dict[str, float]) -> dict[str, float]:
    if accelerator.num_processes == 1:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    values = accelerator.reduce(values, "mean")
    return dict(zip(keys, values.tolist()))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
