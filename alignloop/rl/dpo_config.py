"""The DPO stage's typed config: every field has a default and one line of help (see docs/config.md)."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from alignloop.config import MERGE_LORA_HELP, LoraSettings, StageConfig, run_dir_help
from alignloop.pairs.formats import FORMATS
from alignloop.tracking import REPORT_TO_HELP, ReportTo


class DPOConfig(StageConfig, LoraSettings):
    """Direct preference optimisation on chosen/rejected pairs (Rafailov et al., 2023)."""

    retired_keys: ClassVar[dict[str, str]] = {
        "grad_accum": (
            "replaced by gradient_accumulation_steps, which multiplies batch_size (now summed over all processes): "
            "batch_size B with grad_accum G is batch_size B/G with gradient_accumulation_steps G"
        ),
    }

    @model_validator(mode="before")
    @classmethod
    def _old_lora_and_accumulation(cls, data: Any) -> Any:
        """A config written before ``lora_r`` and ``gradient_accumulation_steps`` (a saved run's, when
        resuming) still loads where its old keys mean the same: ``lora: false`` is ``lora_r: 0``,
        ``lora: true`` the rank given, and ``grad_accum: 1`` the default; a larger ``grad_accum`` is refused."""
        if not isinstance(data, dict) or not ("lora" in data or data.get("grad_accum") == 1):
            return data
        data = dict(data)
        if data.get("grad_accum") == 1:
            del data["grad_accum"]
        if "lora" in data and not data.pop("lora"):
            data["lora_r"] = 0
        warnings.warn(
            "lora and grad_accum are replaced by lora_r and gradient_accumulation_steps", FutureWarning, stacklevel=2
        )
        return data

    policy: str = Field(
        "default",
        description="Policy to fine-tune: `default`, a local model directory or a hub id.",
    )
    pairs: str | None = Field(None, description=f"Pairs file ({FORMATS.choices()} JSONL); or use `project`.")
    project: str | None = Field(None, description="Project directory whose consensus pairs (all rounds) are used.")
    output: str | None = Field(None, description=run_dir_help("dpo"))
    beta: float = Field(
        0.1,
        gt=0,
        description="β: strength of the implicit KL constraint to the reference (higher stays closer).",
    )
    learning_rate: float = Field(5e-5, gt=0, description="AdamW learning rate (after warm-up; constant afterwards).")
    batch_size: int = Field(
        8, ge=1, description="Pairs per forward pass, summed over all processes (each takes an equal share)."
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Forward passes per optimisation step; pairs per update = batch_size x this."
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the training pairs (fractions allowed).")
    max_steps: int | None = Field(
        None,
        ge=1,
        description="Stop after this many optimisation steps (default: as many as `epochs` needs).",
    )
    max_time: float | None = Field(
        None, gt=0, description="Stop (with a checkpoint) after this many seconds of training."
    )
    max_length: int = Field(
        512, ge=8, description="Longest prompt + completion, in tokens; longer completions are cut."
    )
    max_prompt_length: int = Field(256, ge=4, description="Longest prompt, in tokens; longer prompts keep their end.")
    merge_lora: bool = Field(True, description=MERGE_LORA_HELP)
    warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warm-up, in optimisation steps.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold (global L2 norm).")
    eval_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of prompts held out for evaluation when no pair is marked split=test.",
    )
    eval_every: int = Field(
        50,
        ge=1,
        description="Evaluate on the held-out pairs every this many steps (and at the end).",
    )
    save_every: int = Field(50, ge=1, description="Write a checkpoint every this many steps (and at the end).")
    seed: int = Field(0, description="Seed of the shuffling, the held-out split and the initialisation of LoRA.")
    report_to: ReportTo = Field("none", description=REPORT_TO_HELP)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description=(
            "Training precision. Weights and optimiser state stay float32; `bfloat16` runs the forward passes "
            "(the reference's too) under bf16 autocast; `auto` is bf16 on a GPU that has it, float32 on a CPU."
        ),
    )
