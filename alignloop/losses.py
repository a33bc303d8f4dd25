"""The loss math of every stage, as small pure functions on tensors, each tested on hand-worked numbers.

Reward model: ``pairwise_loss``. RL and DPO losses live here too, beside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None) -> torch.Tensor:
    """Bradley–Terry loss: mean of −log σ(r_chosen − r_rejected − margin). Shapes: (batch,)."""
    delta = r_chosen - r_rejected
    if margin is not None:
        delta = delta - margin
    return -F.logsigmoid(delta).mean()
