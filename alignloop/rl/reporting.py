"""What an RL run leaves for people: samples, plots, the summary, the saved policy, the live display."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignloop.model_card import write_model_card
from alignloop.rl.config import RLConfig
from alignloop.rl.rollout import ActorCritic, Rollout
from alignloop.runs import RunDir

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SAMPLES_PER_LOG = 4  # completions written to samples.jsonl each time
VALUE_HEAD_FILE = "value_head.safetensors"  # beside the final model: the critic's head, not part of the policy


def write_samples(run: RunDir, step: int, rollout: Rollout, rewards: list[float]) -> None:
    with (run.path / "samples.jsonl").open("a", encoding="utf-8") as f:
        for i in range(min(SAMPLES_PER_LOG, rollout.n_rows)):
            row = {
                "step": step,
                "prompt": rollout.prompts[i],
                "completion": rollout.completions[i],
                "reward": rewards[i],
                "ended": bool(rollout.ended[i]),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def save_policy(policy: nn.Module, tokenizer: PreTrainedTokenizerBase, directory: Path, merge: bool) -> None:
    """The policy and its tokenizer: with ``merge``, a LoRA adapter merged into a copy of the weights
    (a plain model the next round can sample from); otherwise the adapter alone, or the full model."""
    if merge and hasattr(policy, "merge_and_unload"):
        import copy

        policy = copy.deepcopy(policy).merge_and_unload()
        policy.config.use_cache = True  # training may have switched it off; the saved model samples with it
    policy.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    write_model_card(directory, Path(directory).parent)


def save_final_model(
    actor_critic: ActorCritic, tokenizer: PreTrainedTokenizerBase, run: RunDir, config: RLConfig
) -> None:
    """``run/model``: the policy (merged with its adapter on request), its tokenizer, and the value head."""
    save_policy(actor_critic.policy, tokenizer, run.model_dir, config.merge_lora)
    if actor_critic.value_head is not None:
        from safetensors.torch import save_file

        save_file(
            {k: v.contiguous() for k, v in actor_critic.value_head.state_dict().items()},
            str(run.model_dir / VALUE_HEAD_FILE),
        )


def save_plots(run: RunDir, ns: str) -> None:
    from alignloop.runs import series

    metrics = run.read_metrics()
    run.plot("reward", {"reward (mean)": series(metrics, "step", f"{ns}/reward_mean")}, xlabel="step", ylabel="reward")
    run.plot("kl", {"KL to reference": series(metrics, "step", f"{ns}/kl")}, xlabel="step", ylabel="KL (nats)")


def write_summary(run: RunDir, step: int, reason: str, record: dict[str, Any], group: str | None = None) -> None:
    """``summary.json``; a labeler group's run names its ``group``, as its ``config.yaml`` does."""
    summary: dict[str, Any] = {"steps": step, "stop_reason": reason, "final": record, "model": str(run.model_dir)}
    if group is not None:
        summary["group"] = group
    (run.path / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def record_in_round(config: RLConfig, run: RunDir, step: int, reason: str, reward: float | None) -> None:
    """Note the run on the project's current round; a full model (merged or fully fine-tuned) becomes
    the policy that ``round next`` samples from. An unmerged LoRA adapter is noted but not used.

    A labeler group's run is noted apart, under ``groups[<group>]`` with its ``trained_policy`` (an
    adapter too): it is that group's policy beside the pooled one, never the one ``round next`` samples from."""
    from alignloop.rounds import record_in_project

    notes: dict[str, Any] = {
        "rl_run": str(run.path),
        "rl_algo": config.algo,
        "rl_steps": step,
        "rl_stop_reason": reason,
    }
    if reward is not None:
        notes["rl_reward_mean"] = reward
    if config.group is not None:
        record_in_project(config.project, group=config.group, **notes, trained_policy=str(run.model_dir))
        return
    if (run.model_dir / "config.json").exists():
        notes["trained_policy"] = str(run.model_dir)
    else:
        log.warning(
            "the policy in %s is a LoRA adapter; pass --merge-lora for a model the next round can use", run.model_dir
        )
    record_in_project(config.project, **notes)


class LiveDisplay:
    """A rich progress bar with the step's headline numbers, for a person watching."""

    def __init__(self, config: RLConfig, start_step: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn(f"[bold]{config.algo}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[summary]}"),
        )  # fmt: skip
        self.task = self.progress.add_task("rl", total=config.max_steps, completed=start_step, summary="")
        self.progress.start()

    def update(self, step: int, record: dict[str, Any], ns: str) -> None:
        kl = record.get(f"{ns}/kl", float("nan"))
        summary = (
            f"reward {record[f'{ns}/reward_mean']:+.3f}  kl {kl:.3f}  len {record[f'{ns}/response_length']:.0f}  "
            f"{record['time/step']:.1f}s/step  {record['perf/tokens_per_s']:.0f} tok/s"
        )
        self.progress.update(self.task, completed=step, summary=summary)

    def close(self) -> None:
        self.progress.stop()
