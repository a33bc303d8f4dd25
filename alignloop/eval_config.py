"""The settings of the two stages that sample held-out prompts and compare what comes out:
``alignloop evaluate`` (``EvaluateConfig``) and ``alignloop curve`` (``CurveConfig``, in
``overoptimisation.py``). What they share — which prompts, how many samples of each, how
long, which seed, which precision, which judge — is declared once, in ``HeldOutSampling``,
so a key means the same in both and its flag and help text are the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from alignloop.config import StageConfig


class HeldOutSampling(StageConfig):
    """Held-out prompts, each answered K times with per-prompt seeds shared by every model compared."""

    renamed_keys: ClassVar[dict[str, str]] = {"samples_per_prompt": "k"}
    flags: ClassVar[dict[str, tuple[str, ...]]] = {"project": ("--project", "-p")}

    project: Path | None = Field(None, description="Project: evaluate on its test split.")
    prompts: Path | None = Field(None, description="Prompts file instead of a project.")
    judge: str | None = Field(
        None,
        description="MODULE:FUNCTION judge, e.g. alignloop.judges:sentiment: the gold score, reported beside the "
        "reward model's and never used to train or to pick.",
    )
    limit: int | None = Field(None, ge=1, description="Use at most this many prompts.")
    k: int = Field(1, ge=1, description="K, completions per prompt and model; a prompt's score is their mean.")
    max_new_tokens: int = Field(64, ge=1, description="Longest completion in tokens.")
    seed: int = Field(0, description="Seed of the per-prompt samples (shared by every model compared).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Sampling precision (auto: the probe's choice)."
    )

    def sampling_keywords(self) -> dict[str, Any]:
        """These shared keys as the keywords of ``evaluate_models`` and ``checkpoint_curve``; the prompts are
        passed apart, as conversations."""
        return {
            "judge": self.judge,
            "k": self.k,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "dtype": self.dtype,
        }


class EvaluateConfig(HeldOutSampling):
    """A comparison of models on held-out prompts (``alignloop evaluate``)."""

    reward_model: Path = Field(..., description="Reward-model run directory.")
    models: list[str] | None = Field(
        None,
        description="Models to compare (repeat; the first is the baseline). With `group`, default: the project's "
        "pooled policy and the group's newest policy.",
    )
    group: str | None = Field(
        None, description="Labeler group of a per-group reward model: the rewards are its head's scores."
    )
    reference: str | None = Field(None, description="Reference model of the KL (default: the first model).")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature.")
    best_of: int | None = Field(
        None, ge=2, description="Add a best-of-N row: N samples of the first model, the best by the reward model kept."
    )
    output: Path | None = Field(
        None, description="Directory for evaluation.json (default: the project's next runs/eval-N)."
    )
