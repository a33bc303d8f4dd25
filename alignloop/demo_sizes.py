"""What the demo runs at: its default taste, its simulated labelers' noise and its three sizes.

Every number here was chosen by a measurement on the 2-core CPU machine (the comment beside it
says which; the tables are in docs/benchmarks.md), so the full size fits 20 minutes, ``quick``
5 and ``tiny`` (random 2-layer models, for tests) about one.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignloop.models import ALL_LINEAR, POLICY_LORA_TARGETS

JUDGE = "alignloop.judges:sentiment"
# Plackett–Luce temperature of the simulated labelers, in units of the judge's spread over the answers they
# rank (simulate.judge_spread), so a judge's scale does not decide how often they agree: a judge scoring in
# [0, 0.1] would otherwise get coin-flipping labelers, one in words counted never-erring ones. 0.45 of the
# spread is VADER's former 0.15; two labelers then agree on 0.75 (concise) to 0.91 (follows_format) of pairs.
NOISE = 0.45
# Below this held-out accuracy a reward model trained on the test split's labels is too unsure of
# the taste to choose among checkpoints (measured: 0.72 for a readability taste, 0.53 for one
# that depends on what each prompt asks); the KL budget chooses instead.
HOLDOUT_MIN_ACCURACY = 0.6


@dataclass(frozen=True)
class DemoSize:
    prompts: int  # prompts sampled and labelled in the first round (both splits; test ones become held-out pairs)
    round_prompts: int  # fresh train prompts sampled and labelled in each later round
    round_test_prompts: int  # fresh test prompts sampled with them, so the held-out reward model learns the new policy
    k: int  # completions per prompt
    max_new_tokens: int
    # The labelers may place answers level (`labeling.allow_ties`), as the ranking guidelines ask for answers
    # that are truly equally good; a simulated labeler does so where its judge scores two answers the same.
    allow_ties: bool
    reward_epochs: int
    reward_lr: float  # reward-model learning rate
    reward_pooling: str  # `mean` or `cls` (see RewardConfig.pooling)
    reward_ensemble: int  # reward models trained with seeds seed … seed + n − 1, scored as one (RewardConfig.ensemble)
    rl_steps: int
    rl_seconds: float | None  # RL time budget; None: steps only (load changes the time, not the result)
    rl_prompts: int  # prompts per RL step
    rl_group: int  # GRPO's group: answers sampled per prompt in a step, each judged against the others
    rl_minibatch: int  # completions per optimiser step (two epochs over each batch)
    rl_lora_targets: tuple[str, ...]  # the policy's LoRA adapters (`lora_targets`): module names, or ALL_LINEAR
    rl_kl_coef: float  # GRPO's β: the weight of its k3 KL(policy‖reference) loss term
    learning_rate: float  # RL (LoRA) learning rate
    kl_budget: float  # the checkpoint pick stays within this KL when the held-out reward model is too unsure
    save_every: int  # RL steps between checkpoints (the points of the over-optimisation curve)
    curve_prompts: int  # held-out prompts each checkpoint answers for the curve
    curve_samples: int  # samples per curve prompt (a prompt's score is their mean)
    eval_prompts: int  # held-out prompts in the before/after evaluation
    eval_samples: int  # samples per held-out prompt (each prompt's score is their mean)
    best_of: int  # N of the best-of-N baseline
    eval_tokens: int


SIZES = {
    "full": DemoSize(
        # 144 train and 48 test prompts: the sentiment reward model gains about 4.5 points of held-out accuracy per
        # fourfold of labelled prompts and is 6 points under the labelers at 72 (bench/reward_scaling.py); the
        # 48 test prompts teach the held-out reward model that picks the checkpoint
        prompts=192,
        round_prompts=48,
        round_test_prompts=16,
        k=8,
        max_new_tokens=48,
        # forced to order answers its judge ties (60 % of a prompt's pairs for `follows_format`), a labeler flips
        # coins that the reward model is trained and scored on; with ties follows_format gained in all three seeds,
        # the demo's outcome over seven runs measured both ways did not move (benchmarks.md)
        allow_ties=True,
        reward_epochs=3,
        reward_lr=1e-4,
        reward_pooling="mean",
        reward_ensemble=1,
        rl_steps=24,
        rl_seconds=None,
        # 4 prompts × 4 answers: the 16 completions a step PPO had at 16 prompts × 1; GRPO cleared both bars in 12 of
        # 14 runs of five tastes where PPO did in 11, at a mean judge gain +0.046 higher (benchmarks.md, "GRPO")
        rl_prompts=4,
        rl_group=4,
        rl_minibatch=8,
        # LoRA on every linear layer (the MLPs too) and GRPO's β 0.12: both bars in 9 of 9 runs of seven
        # tastes where q, v with β 0.04 cleared 5, the judge's gain +0.029 higher (95 % CI
        # [−0.053, +0.110]), KL at most 9.9 (benchmarks.md, "Adapters on every linear layer")
        rl_lora_targets=(ALL_LINEAR,),
        rl_kl_coef=0.12,
        learning_rate=2e-4,
        kl_budget=6.0,
        save_every=8,
        # the pick compares held-out reward-model means between checkpoints: at 24 prompts x 1 sample their sampling
        # noise was the size of the differences (it kept the start once); at 48 x 2, replayed on nine runs' saved
        # checkpoints, it moved four picks, two up and two a little down by the demo's evaluation (+0.011 on
        # average), and all nine cleared both bars, for 25-45 s more (benchmarks.md, "A steadier pick")
        curve_prompts=48,
        curve_samples=2,
        eval_prompts=64,
        # a prompt's score is the mean of its samples: at 2 a real gain hid in the sampling noise (on_topic seed 1,
        # win-rate bound 0.47 at 2, 0.67 at 8 on the same checkpoint); best-of-4 picks among these 8, no extra draws
        eval_samples=8,
        best_of=4,
        eval_tokens=48,
    ),
    "quick": DemoSize(
        prompts=32,
        round_prompts=16,
        round_test_prompts=4,
        k=8,
        max_new_tokens=32,
        allow_ties=True,
        reward_epochs=2,
        reward_lr=1e-4,
        reward_pooling="mean",
        reward_ensemble=1,
        rl_steps=16,
        rl_seconds=150,
        rl_prompts=2,
        rl_group=4,
        rl_minibatch=4,
        rl_lora_targets=POLICY_LORA_TARGETS,  # all-linear adapters were validated at the full size only
        rl_kl_coef=0.04,
        # at 3e-4 sixteen steps of four prompts moved the policy by 1 nat and the judge not at all (measured)
        learning_rate=6e-4,
        kl_budget=6.0,
        save_every=4,
        curve_prompts=16,
        curve_samples=1,
        eval_prompts=48,  # at 16 prompts the evaluation's noise (±0.16) hid what the curve showed
        eval_samples=4,
        best_of=2,
        eval_tokens=32,
    ),
    "tiny": DemoSize(
        prompts=12,
        round_prompts=6,
        round_test_prompts=2,
        k=4,
        max_new_tokens=8,
        allow_ties=False,  # a random model's text ties under most judges: no pairs would be left
        reward_epochs=1,
        reward_lr=1e-4,
        reward_pooling="mean",
        reward_ensemble=1,
        rl_steps=2,
        rl_seconds=None,
        rl_prompts=2,
        rl_group=2,
        rl_minibatch=4,
        rl_lora_targets=POLICY_LORA_TARGETS,
        rl_kl_coef=0.04,
        learning_rate=1e-3,
        kl_budget=6.0,
        save_every=1,
        curve_prompts=4,
        curve_samples=2,  # more than one, so the tests see a curve average a prompt's samples
        eval_prompts=4,
        eval_samples=1,
        best_of=2,
        eval_tokens=8,
    ),
}
