"""The reward stage's configs, each knob documented once: ``RewardConfig`` (training), ``ScoreConfig``
(``alignloop score``) and ``PrioritizeConfig`` (``alignloop prioritize``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from alignloop.config import LoraSettings, StageConfig, run_dir_help
from alignloop.pairs.formats import FORMATS
from alignloop.tracking import REPORT_TO_HELP, ReportTo


class RewardConfig(StageConfig, LoraSettings):
    """Training a reward model on comparisons with the pairwise Bradley–Terry loss."""

    renamed_keys: ClassVar[dict[str, str]] = {"save_every_steps": "save_every"}

    backbone: str = Field(
        "default",
        description="Encoder or decoder to fine-tune: `default` (all-MiniLM-L6-v2), a local path or a hub id.",
    )
    pairs: str | None = Field(
        None, description=f"Pairs file (JSONL in the {FORMATS.choices()} format); or give `project`."
    )
    project: str | None = Field(
        None, description="Project directory whose consensus pairs are used when no pairs file is given."
    )
    output: str | None = Field(None, description=run_dir_help("reward"))
    epochs: int = Field(3, ge=1, description="Passes over the training pairs.")
    batch_size: int = Field(
        16, ge=1, description="Pairs per forward step, summed over all processes (each pair is two sequences)."
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Forward steps per optimiser step; pairs per update = batch_size x this."
    )
    learning_rate: float = Field(
        5e-5, gt=0, description="Peak AdamW learning rate, reached after warm-up, then decayed linearly to 0."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    warmup_ratio: float = Field(
        0.1, ge=0, lt=1, description="Share of optimiser steps spent warming the learning rate up from 0."
    )
    max_grad_norm: float = Field(1.0, ge=0, description="Clip the gradient norm to this (0 = no clipping).")
    max_length: int = Field(
        512,
        ge=8,
        description="Longest input in tokens (prompt + completion + special tokens); capped by the backbone's context.",
    )
    too_long: Literal["skip", "truncate", "error"] = Field(
        "skip",
        description="A pair over max_length: `skip` it or `truncate` its completion (both counted) or `error`.",
    )
    use_margin: bool = Field(
        False, description="Subtract each pair's margin inside the loss: -log sigmoid(r_chosen - r_rejected - margin)."
    )
    soft_labels: bool = Field(
        True,
        description=(
            "Train toward each pair's agreement (the share of its labelers' votes for chosen, a tie half a vote) "
            "instead of certainty: cross-entropy against p = agreement, as if every labeler's vote were a pair."
        ),
    )
    train_on_ties: bool = Field(
        False,
        description=(
            "Also train on the pairs the labelers' consensus placed level, toward equal rewards (target: their "
            "agreement, about 1/2): they teach what the labelers do not care about. Never held out or scored."
        ),
    )
    eval_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="If no pair is in the test split, hold out this share of prompts (by prompt hash).",
    )
    train_split: Literal["train", "test"] = Field(
        "train",
        description=(
            "Split whose pairs to train on; the other is held out. `test` trains a held-out reward model, one "
            "an RL run on the train split never optimised, for picking checkpoints (`curve --holdout-reward-model`)."
        ),
    )
    early_stopping_patience: int = Field(
        2,
        ge=0,
        description="Stop after this many evaluations without a lower held-out loss (0 = never); the best is kept.",
    )
    save_every: int = Field(
        0, ge=0, description="Also checkpoint every this many optimiser steps (0 = only at the end of each epoch)."
    )
    log_every_steps: int = Field(10, ge=1, description="Write training metrics every N optimiser steps.")
    group_by_prompt: bool = Field(
        True,
        description="Keep all comparisons of a prompt in one batch, so each completion is scored once per step.",
    )
    length_bucketing: bool = Field(
        True, description="Group pairs of similar length into a batch, so little time is spent on padding."
    )
    packing: bool = Field(
        True,
        description="Pack short sequences side by side in one row (block-diagonal attention) instead of padding them.",
    )
    disable_dropout: bool = Field(
        True,
        description="Turn dropout off, so both sides of a pair see one network and runs are reproducible.",
    )
    freeze_embeddings: bool = Field(
        True,
        description=(
            "Keep the backbone's token embeddings as they are: no gradient and no optimiser state for the largest "
            "matrix of a small encoder (half of MiniLM's weights), a faster step; `false` trains them too."
        ),
    )
    pooling: Literal["cls", "mean"] = Field(
        "cls",
        description="Encoder backbones: score the pooled [CLS] (`cls`) or the mean of the answer's tokens (`mean`).",
    )
    lora_r: int = Field(
        0,
        ge=0,
        description="LoRA rank for the backbone (0 = fine-tune all weights); the score head is always fully trained.",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description=(
            "Training precision: `auto` is bf16 autocast (float32 weights and optimiser state) on a GPU that "
            "supports it and on a CPU that computes bf16 natively and measured it faster (a cached probe), "
            "else float32."
        ),
    )
    eval_batch_size: int = Field(64, ge=1, description="Sequences per forward pass in evaluation and scoring.")
    seed: int = Field(0, description="Seed of the head initialisation, the data order and the held-out split salt.")
    ensemble: int = Field(
        1,
        ge=1,
        description=(
            "Reward models trained alike on the same pairs, member i with seed + i (head and data order), "
            "scored as the mean of their normalised scores."
        ),
    )
    per_group: bool = Field(
        False,
        description=(
            "One shared backbone with a score head per labeler group, trained on pairs that carry a `group` "
            "(`export-pairs --by-group`); held-out metrics per group; score with `group=`."
        ),
    )
    report_to: ReportTo = Field("none", description=REPORT_TO_HELP)


class ScoringConfig(StageConfig):
    """What every use of a trained reward model outside training shares."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {"reward_model": ("--reward-model", "-r")}

    batch_size: int = Field(32, ge=1, description="Sequences per forward pass.")


class ScoreConfig(ScoringConfig):
    """Scoring a JSONL file with a trained reward model (``alignloop score``)."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {
        **ScoringConfig.flags,
        "input": ("--input", "-i"),
        "output": ("--output", "-o"),
    }

    reward_model: Path = Field(..., description="Run directory of a trained reward model.")
    input: Path = Field(..., description="JSONL with prompt+completion or prompt+chosen+rejected rows.")
    output: Path | None = Field(None, description="Write the scored rows here (default: standard output).")
    group: str | None = Field(
        None, description="Score as this labeler group judges (a per-group reward model's head); needed by one."
    )


class PrioritizeConfig(ScoringConfig):
    """Active labeling (``alignloop prioritize``): which reward models judge the open prompts, of which round."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {**ScoringConfig.flags, "round_index": ("--round",)}

    reward_model: list[Path] = Field(
        ..., min_length=1, description="Run directory of a trained reward model; repeat it for an ensemble."
    )
    round_index: int | None = Field(None, description="Round to prioritise (default: the newest training round).")
    top: int = Field(5, ge=0, description="How many of the highest priorities to show.")

    @field_validator("reward_model", mode="before")
    @classmethod
    def _one_or_several(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value
