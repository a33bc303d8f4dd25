"""RAFT (Dong et al. 2023, reward-ranked fine-tuning): learn each prompt's best answer, as best-of-K picks it.

Of the K completions of a prompt, the highest-scored gets advantage 1 and the others 0 (a group
whose scores are all equal teaches nothing). The policy loss is the clipped surrogate averaged
over the chosen completions' tokens only: on the first pass over a batch the ratio is 1, so it is
the negative log-likelihood of the best answers, fine-tuning on them as ReST and expert iteration
do; the clip guards later passes. Unlike GRPO nothing is pushed down, so the policy moves toward
answers it already gives, the way best-of-K does at evaluation. β · the k3 KL over all completions
is the same loss term as GRPO's, with the same optional brake.
"""

from __future__ import annotations

import torch

from alignloop import losses
from alignloop.rl.grpo import GRPO


class RAFT(GRPO):
    name = "raft"

    def group_advantages(self, grouped: torch.Tensor) -> torch.Tensor:
        return losses.best_in_group(grouped)

    def loss(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        chosen = dict(batch, mask=batch["mask"] * (batch["advantages"] > 0))
        policy_loss, metrics = self.clipped_policy_loss(out, chosen)
        return self.with_kl_term(policy_loss, metrics, out, batch)
