"""Training commands: ``train-dpo``, ``train-reward``, ``score``, ``prioritize``, ``train-rl``, ``train-ppo``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from alignloop.cli.base import (
    DPO_FLAGS,
    REWARD_FLAGS,
    RL_FLAGS,
    RUN_FLAGS,
    ConfigFile,
    Overwrite,
    ProjectDir,
    Resume,
    app,
    console,
)
from alignloop.cli_options import config_options
from alignloop.reward.config import PrioritizeConfig, RewardConfig, ScoreConfig
from alignloop.rl.config import ALGORITHMS, RLConfig
from alignloop.rl.dpo_config import DPOConfig


@app.command("train-dpo")
@config_options(DPOConfig, *DPO_FLAGS, flags=RUN_FLAGS, set_option=True)
def train_dpo(
    config: ConfigFile = None, resume: Resume = False, overwrite: Overwrite = False, *, overrides: dict[str, object]
) -> None:
    """Fine-tune the policy with DPO directly on chosen/rejected pairs."""
    from alignloop import api

    result = api.train_dpo(config=config, resume=resume, overwrite=overwrite, progress=True, **overrides)
    held_out = result.eval_metrics
    summary = (
        f"; held-out accuracy {held_out['eval/accuracy']:.3f}, margin {held_out['eval/margin']:.3f}" if held_out else ""
    )
    console.print(f"DPO stopped ({result.stop_reason}) after {result.steps} steps in {result.run_dir}{summary}")


@app.command("train-reward")
@config_options(
    RewardConfig, *REWARD_FLAGS, flags={**RUN_FLAGS, "use_margin": ("--use-margin/--no-margin",)}, set_option=True
)
def train_reward(
    config: ConfigFile = None, resume: Resume = False, overwrite: Overwrite = False, *, overrides: dict[str, object]
) -> None:
    """Train a reward model on chosen/rejected pairs (pairwise Bradley-Terry loss)."""
    from alignloop import api

    result = api.train_reward(config=config, resume=resume, overwrite=overwrite, progress=True, **overrides)
    if not result.main_process:
        return
    m = result.metrics
    console.print(f"data: {result.data.summary()}", highlight=False)
    held_out = ""
    if "rm/eval_accuracy" in m:
        held_out = (
            f"; held-out accuracy {m['rm/eval_accuracy']:.3f}, loss {m['rm/eval_loss']:.4f}, ECE {m['rm/ece']:.3f}"
        )
        if result.member_accuracy:
            members = ", ".join(f"{a:.3f}" for a in result.member_accuracy)
            held_out += f" (ensemble of {len(result.member_accuracy)}; members alone {members})"
        if "rm/inter_labeler" in m:
            held_out += f" (labelers agree with each other {m['rm/inter_labeler']:.3f})"
    stop = " (stopped early)" if result.stopped_early else ""
    where = f" on {result.processes} processes" if result.processes > 1 else ""
    console.print(
        f"reward model trained{stop}{where}: {result.steps} steps at {result.pairs_per_s:.1f} pairs/s{held_out}; "
        f"saved in {result.run_dir}",
        highlight=False,
    )
    for group in sorted(key.rsplit("/", 1)[1] for key in m if key.startswith("rm/eval_accuracy/")):
        agree = m.get(f"rm/inter_labeler/{group}")
        console.print(
            f"group {group}: held-out accuracy {m[f'rm/eval_accuracy/{group}']:.3f}"
            + (f" (its labelers agree with each other {agree:.3f})" if agree is not None else ""),
            highlight=False,
        )


@app.command()
@config_options(ScoreConfig, "reward_model", "input", "output", "batch_size", "group")
def score(*, overrides: dict[str, object]) -> None:
    """Add `reward` (and for pairs `reward_chosen`, `reward_rejected`, `p_chosen`) to each JSONL row."""
    import json

    from alignloop import api

    rows = api.score(**overrides)  # type: ignore[arg-type]
    if "output" not in overrides:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
    else:
        console.print(f"scored {len(rows)} rows into {overrides['output']}")


@app.command()
@config_options(PrioritizeConfig, "reward_model", "round_index", "top", "batch_size")
def prioritize(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Active labeling: rank the prompts still needing labels by the reward model's uncertainty."""
    from alignloop import api

    result = api.prioritize(project, **overrides)  # type: ignore[arg-type]
    console.print(f"round {result.round_index}: {result.scored} prompts still needing labels were scored")
    for item in result.top:
        text = " ".join(item.text.split())
        typer.echo(f"{item.priority:.3f}\tprompt {item.prompt_id}\t{text[:70] + '...' if len(text) > 70 else text}")
    if result.scored and result.assignment != "uncertainty":
        console.print(
            f"labeling.assignment is {result.assignment!r}: the labeling app offers these first only with "
            "`assignment: uncertainty` (then restart `alignloop serve`)"
        )


KlCoef = Annotated[
    float | None,
    typer.Option(help="β of the algorithm's KL term: sets <algo>.kl_coef (its meaning per algorithm: docs/config.md)."),
]


def _train_rl(
    config: ConfigFile = None,
    kl_coef: KlCoef = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    *,
    overrides: dict[str, object],
) -> None:
    from alignloop import api

    given = overrides.pop("algo", None)
    algo = str(given) if given is not None else None  # without --algo, the config file's (or the resumed run's)
    if kl_coef is not None:  # the chosen algorithm's β (docs/config.md: what it weighs in each)
        chosen = algo or api.rl_config(config=config, resume=resume, **overrides).algo
        overrides[f"{chosen}.kl_coef"] = kl_coef
    result = api.train_rl(algo, config=config, resume=resume, overwrite=overwrite, progress=True, **overrides)
    reward = result.final_metrics.get(f"{result.algo}/reward_mean")
    tail = f"; last reward {reward:+.3f}" if reward is not None else ""
    console.print(
        f"{result.algo} stopped ({result.stop_reason}) after {result.steps} steps{tail}; "
        f"policy saved in {result.model_dir}"
    )


@functools.wraps(_train_rl)  # its options; config_options reads them from the signature
def _train_ppo(*, overrides: dict[str, object], **given: Any) -> None:
    _train_rl(**given, overrides={**overrides, "algo": "ppo"})


# One command body, two commands: train-ppo is train-rl --algo ppo.
app.command(
    "train-rl",
    help=f"Fine-tune a policy with RL ({ALGORITHMS.choices([name.upper() for name in ALGORITHMS])}) against a reward "
    "model or a Python reward.",
)(config_options(RLConfig, "algo", *RL_FLAGS, flags=RUN_FLAGS, set_option=True)(_train_rl))
app.command("train-ppo", help="Fine-tune a policy with PPO against a reward model (train-rl --algo ppo).")(
    config_options(RLConfig, *RL_FLAGS, flags=RUN_FLAGS, set_option=True)(_train_ppo)
)
