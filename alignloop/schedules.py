"""The learning-rate schedule of every training loop: linear warm-up, then constant or linear decay."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def lr_multiplier(step: int, warmup_steps: int, total_steps: int | None = None) -> float:
    """The factor on the base learning rate at optimiser ``step`` (from 0).

    (step + 1) / (warmup_steps + 1) while warming up; then 1, or with ``total_steps`` a linear
    decay that reaches 0 at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if total_steps is None:
        return 1.0
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def warmup_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following ``lr_multiplier`` (its state is a step count, so checkpoints restore it)."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, warmup_steps, total_steps))
