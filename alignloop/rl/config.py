"""Typed config of the RL stage, and the registry of RL algorithms.

Each algorithm is declared once, in ``ALGORITHMS``: its name, its config section (a
``StageConfig`` below) and the ``Algorithm`` subclass that holds its advantages and loss
(imported only when a run starts, so this module stays free of torch). ``RLConfig`` is
the settings every algorithm shares (``RLCommonConfig``) plus one section per registered
algorithm, and ``algo`` accepts exactly the registered names; ``train-rl --algo`` lists
them. Adding an algorithm: docs/architecture.md.

A YAML file and CLI flags fill the same model (``load_config``); the resolved config is
saved as ``config.yaml`` in the run directory, so a run can always be repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field, create_model, model_validator

from alignloop.config import MERGE_LORA_HELP, LoraSettings, StageConfig, run_dir_help
from alignloop.registry import Registry
from alignloop.tracking import REPORT_TO_HELP, ReportTo


def kl_control(target: float | None, horizon: float, floor: float) -> type[StageConfig]:
    """The settings of β's controller (``rl/kl.py``), with one algorithm's defaults: the base of its section.

    Declared here once for every algorithm whose β can adapt, so each has the same keys and help."""
    return create_model(
        "KLControl",
        __base__=StageConfig,
        __module__=__name__,
        target_kl=(
            float | None,
            Field(
                target,
                gt=0,
                description="Adaptive β steers the KL (nats per completion) toward this; null keeps β fixed.",
            ),
        ),
        kl_horizon=(
            float,
            Field(
                horizon,
                gt=0,
                description=(
                    "Adaptive β: steps to react; each step β is multiplied by exp(clip(KL/target−1, ±1)/horizon)."
                ),
            ),
        ),
        min_kl_coef=(
            float,
            Field(
                floor,
                ge=0,
                description=(
                    "Adaptive β never falls below this: while the KL is under target β shrinks, and from far below it "
                    "needs many steps to climb back once the KL overshoots."
                ),
            ),
        ),
    )


class PPOConfig(kl_control(target=6.0, horizon=5.0, floor=0.02)):
    """PPO: GAE advantages from a learned value, clipped policy and value losses, KL in the reward."""

    epochs: int = Field(2, ge=1, description="Optimisation passes over each batch of rollouts.")
    minibatch_size: int = Field(4, ge=1, description="Completions per optimiser step (per process).")
    clip: float = Field(0.2, gt=0, description="Policy ratio clip range ε: ρ is kept within [1−ε, 1+ε].")
    value_clip: float = Field(
        0.2, gt=0, description="Value clip range: a value moves at most this far from its rollout estimate per update."
    )
    value_coef: float = Field(0.1, ge=0, description="Weight of the value loss in the total loss.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount γ of GAE.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ: 1 is Monte-Carlo returns, 0 is one-step TD.")
    whiten_advantages: bool = Field(True, description="Normalise advantages to mean 0, std 1 per batch.")
    kl_coef: float = Field(0.05, ge=0, description="Initial β of the per-token KL penalty in the reward.")
    critic: Literal["policy", "reward_model"] = Field(
        "policy",
        description="Value head on the policy's hidden states, or a separate critic initialised from the reward model.",
    )
    value_learning_rate: float | None = Field(
        None, gt=0, description="Learning rate of the value head/critic (default: the policy's)."
    )


class GroupSurrogateConfig(kl_control(target=None, horizon=2.0, floor=0.04)):
    """What GRPO and RAFT share: a clipped surrogate over each prompt's group, KL to the reference as a loss term."""

    epochs: int = Field(1, ge=1, description="Optimisation passes over each batch.")
    minibatch_size: int | None = Field(
        None, ge=1, description="Completions per optimiser step (default: the whole batch, one step per batch)."
    )
    clip: float = Field(0.2, gt=0, description="Policy ratio clip range ε.")
    kl_coef: float = Field(
        0.04,
        ge=0,
        description="β (its start, with `target_kl`): weight of the KL(policy‖reference) loss term (k3 estimator); "
        "0 skips the reference.",
    )


class GRPOConfig(GroupSurrogateConfig):
    """GRPO: group-relative advantages, clipped surrogate, KL to the reference as a loss term."""

    scale_rewards: bool = Field(True, description="Divide advantages by the group's reward std (off: Dr. GRPO).")


class RAFTConfig(GroupSurrogateConfig):
    """RAFT: fine-tune on the highest-scored completion of each prompt's group, KL to the reference as a loss term."""


class RLOOConfig(StageConfig):
    """RLOO: REINFORCE with a leave-one-out baseline; the KL penalty is subtracted from the reward."""

    epochs: int = Field(1, ge=1, description="Optimisation passes over each batch.")
    minibatch_size: int | None = Field(
        None, ge=1, description="Completions per optimiser step (default: the whole batch)."
    )
    clip: float = Field(
        0.2, gt=0, description="Ratio clip for the passes after the first (the first pass is plain REINFORCE)."
    )
    kl_coef: float = Field(
        0.05,
        ge=0,
        description="β: the completion's summed KL to the reference, times β, is subtracted from its reward.",
    )
    whiten_advantages: bool = Field(False, description="Normalise advantages to mean 0, std 1 per batch.")


@dataclass(frozen=True)
class AlgorithmSpec:
    """One RL algorithm as the rest of alignloop sees it."""

    name: str  # `--algo NAME`, the config section `NAME:` and the metric namespace `NAME/...`
    settings: type[StageConfig]  # its config section
    implementation: str  # "module:Class" of its ``Algorithm`` subclass (``rl/algorithm.py``)
    default_group_size: int = 1  # completions per prompt when `k` is not set
    min_group_size: int = 1  # 2 for an algorithm that compares the completions of a prompt


ALGORITHMS: Registry[AlgorithmSpec] = Registry("algorithm")
ALGORITHMS.register(AlgorithmSpec("ppo", PPOConfig, "alignloop.rl.ppo:PPO"))
ALGORITHMS.register(AlgorithmSpec("grpo", GRPOConfig, "alignloop.rl.grpo:GRPO", default_group_size=4, min_group_size=2))
ALGORITHMS.register(AlgorithmSpec("raft", RAFTConfig, "alignloop.rl.raft:RAFT", default_group_size=4, min_group_size=2))
ALGORITHMS.register(AlgorithmSpec("rloo", RLOOConfig, "alignloop.rl.rloo:RLOO", default_group_size=4, min_group_size=2))

AlgorithmName = ALGORITHMS.literal()
_GROUP_DEFAULTS = ", ".join(f"{a.default_group_size} for {a.name}" for a in ALGORITHMS.entries())
_COMPARING = ALGORITHMS.choices([a.name for a in ALGORITHMS.entries() if a.min_group_size >= 2], last="and")


class RLCommonConfig(StageConfig, LoraSettings):
    """The settings every RL algorithm shares; ``RLConfig`` adds each algorithm's section."""

    renamed_keys: ClassVar[dict[str, str]] = {"reward": "reward_model", "samples_per_prompt": "k"}

    algo: AlgorithmName = Field("ppo", description=f"Algorithm: {ALGORITHMS.choices()}.")  # type: ignore[valid-type]
    policy: str = Field("default", description="Policy to fine-tune: `default`, a model directory or a hub id.")
    reward_model: str = Field(
        "",
        description="Reward: a reward-model run dir, MODULE:FUNCTION, or a weighted sum (`0.7*runs/rm+0.3*MOD:FN`).",
    )
    reward_shaping: Literal["none", "par"] = Field(
        "none",
        description=(
            "`par`: each reward r becomes σ(r − r_ref), r_ref the mean reward of the prompt's newest labelled "
            "answers in `project` (in its first round, the policy's own): bounded, so outdoing those answers by far "
            "pays little more than outdoing them clearly. Needs `project`."
        ),
    )
    group: str | None = Field(
        None,
        description=(
            "Labeler group of a per-group reward model (`train-reward --per-group`): rollouts are scored by that "
            "group's head, and the run trains the group's own policy (a LoRA adapter on `policy` by default)."
        ),
    )
    prompts: str | None = Field(
        None, description="JSONL file of prompts (`prompt` or `messages` field); or use `project`."
    )
    project: str | None = Field(None, description="Project directory: train on its train-split prompts.")
    output: str | None = Field(None, description=run_dir_help("<algo>"))
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate of the policy (constant after warm-up).")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear learning-rate warm-up.")
    batch_size: int = Field(8, ge=1, description="Prompts per step, over all processes.")
    k: int | None = Field(
        None,
        ge=1,
        description=f"K, completions per prompt (default: {_GROUP_DEFAULTS}; {_COMPARING} need at least 2).",
    )
    max_new_tokens: int = Field(48, ge=1, description="Longest completion, in tokens.")
    temperature: float = Field(
        1.0, gt=0, description="Sampling temperature (log-probabilities use the same temperature)."
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass during rollouts.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description=(
            "Precision of sampling and training. The weights and optimiser state stay float32; `bfloat16` "
            "samples from a bf16 copy and trains under bf16 autocast, `auto` does each on a GPU that has bf16 "
            "and, on a CPU, where the precision probe measured bf16 faster."
        ),
    )
    importance_cap: float = Field(
        2.0,
        ge=1,
        description=(
            "C of the truncated importance weight min(exp(logp_train - logp_sampler), C) on each token's policy loss "
            "when the sampler is a copy in another precision."
        ),
    )
    missing_eos_penalty: float = Field(
        1.0,
        ge=0,
        description="Subtracted from the reward of a completion that never ended (no end token within max_new_tokens).",
    )
    max_grad_norm: float = Field(
        1.0, gt=0, description="Gradient clipping: the global gradient norm is scaled down to at most this."
    )
    max_steps: int = Field(20000, ge=1, description="Stop after this many steps.")
    max_time: float | None = Field(
        None, gt=0, description="Stop after this many seconds of training (resumed runs count earlier time)."
    )
    target_reward: float | None = Field(
        None, description="Stop when the moving-average reward over `window` steps reaches this."
    )
    window: int = Field(10, ge=1, description="Steps in the moving average that `target_reward` is compared with.")
    save_every: int = Field(50, ge=1, description="Write a checkpoint every this many steps (and at the end).")
    keep_checkpoints: int = Field(
        2, ge=0, description="Newest checkpoints kept on disk; 0 keeps every one (for `alignloop curve`)."
    )
    sample_every: int = Field(10, ge=1, description="Write sample completions to samples.jsonl every this many steps.")
    merge_lora: bool = Field(False, description=MERGE_LORA_HELP)
    seed: int = Field(0, description="Seed of prompt order, sampling and initialisation.")
    report_to: ReportTo = Field("none", description=REPORT_TO_HELP)
    device: str | None = Field(
        None, description="Torch device (default: cuda when available, else cpu); under accelerate, its choice."
    )

    @model_validator(mode="after")
    def _par_needs_a_project(self) -> RLCommonConfig:
        if self.reward_shaping == "par" and not self.project:
            raise ValueError("reward_shaping par centres each reward on the project's answers: give `project`")
        return self

    @model_validator(mode="after")
    def _group_sizes(self) -> RLCommonConfig:
        least = ALGORITHMS[self.algo].min_group_size
        if self.k is not None and self.k < least:
            raise ValueError(f"{self.algo} compares the completions of a prompt: k must be at least {least}")
        return self

    @property
    def group_size(self) -> int:
        """K, completions per prompt (the group GRPO, RAFT and RLOO compare), the algorithm's default if unset."""
        if self.k is not None:
            return self.k
        return ALGORITHMS[self.algo].default_group_size

    @property
    def settings(self) -> StageConfig:
        """The section of the chosen algorithm (``config.ppo`` when ``algo`` is ppo)."""
        return getattr(self, self.algo)


RLConfig = create_model(
    "RLConfig",
    __base__=RLCommonConfig,
    __module__=__name__,
    __doc__="Fine-tuning a policy with reinforcement learning against a reward (``train-rl``, ``train-ppo``).",
    **{  # one section per registered algorithm, named after it
        a.name: (a.settings, Field(default_factory=a.settings, description=f"{a.name.upper()} settings."))
        for a in ALGORITHMS.entries()
    },
)
