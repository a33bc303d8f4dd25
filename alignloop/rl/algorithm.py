"""What an alignment algorithm is to the shared trainer: its advantages and its loss.

The trainer (``alignloop.rl.trainer``) owns everything else — sampling, scoring,
minibatches, the optimiser, logging, checkpoints and stopping. An algorithm module
(``ppo.py``, ``grpo.py``, ``raft.py``, ``rloo.py``) subclasses ``Algorithm`` and fills in:

* ``advantages(rollout, scores)``: turn the rollout and its rewards (one per row)
  into per-token tensors in ``rollout.extras`` (advantages, returns, ...), and
  return the metrics of this step;
* ``loss(out, batch)``: given the current policy's ``out`` (``logprobs``, and
  ``values`` when ``uses_values``) on a minibatch ``batch`` (``Rollout.select``),
  return the scalar loss and its metrics.

Register the class with its config section in ``ALGORITHMS`` (``alignloop/rl/config.py``);
``train-rl --algo NAME`` then runs it. An algorithm with ``uses_values`` has ``critic``
and ``value_learning_rate`` in its section (see ``PPOConfig``).
"""

from __future__ import annotations

from typing import Any

import torch

from alignloop.rl.config import RLConfig
from alignloop.rl.kl import FixedKLController, kl_controller
from alignloop.rl.rollout import Rollout


class Algorithm:
    """Base class; see the module docs."""

    name = "base"  # metric namespace: "<name>/reward_mean", ...
    uses_values = False  # the trainer builds a value head (or critic) and asks for values

    def __init__(self, config: RLConfig) -> None:
        self.config = config
        self.settings = getattr(config, self.name, None)  # the algorithm's own config section, when it has one
        # β's controller, for a section with the settings of one (``config.kl_control``)
        self.kl: FixedKLController | None = None
        if self.settings is not None and hasattr(self.settings, "target_kl"):
            s = self.settings
            self.kl = kl_controller(s.kl_coef, s.target_kl, s.kl_horizon, s.min_kl_coef)

    @property
    def uses_reference(self) -> bool:
        """Whether the rollout computes reference log-probs: only for a KL term that weighs something
        (the section's ``kl_coef`` β > 0); with β = 0 the reference forward would be wasted."""
        return self.settings is not None and self.settings.kl_coef > 0

    @property
    def epochs(self) -> int:
        """Optimisation passes over each rollout."""
        return self.settings.epochs if self.settings is not None else 1

    @property
    def minibatch_size(self) -> int | None:
        """Rows per optimiser step (None: the whole batch)."""
        return self.settings.minibatch_size if self.settings is not None else None

    def advantages(self, rollout: Rollout, scores: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def loss(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def clipped_policy_loss(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The clipped surrogate of ``losses.clipped_policy_loss`` on a minibatch (with its importance
        weights, when the rollout was sampled by a copy in another precision), and its metrics."""
        from alignloop import losses

        policy_loss, clipfrac, approx_kl = losses.clipped_policy_loss(
            out["logprobs"],
            batch["logprobs"],
            batch["advantages"],
            batch["mask"],
            self.settings.clip,
            batch.get("importance_weights"),
        )
        return policy_loss, {"policy_loss": policy_loss.detach(), "clipfrac": clipfrac, "approx_kl": approx_kl}

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a resume: β's controller."""
        return {"kl": self.kl.state_dict()} if self.kl is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``."""
        if self.kl is not None and "kl" in state:
            self.kl.load_state_dict(state["kl"])


def broadcast_to_tokens(per_row: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) → (B, T), zero on padding."""
    return per_row[:, None] * mask
