"""GRPO (Shao et al. 2024): no critic; a completion's advantage is its reward relative to its group.

For the k completions of a prompt, A = (r − mean(r)) / std(r) (the division is skipped with
``scale_rewards: false``), the same for every token. The loss is the clipped surrogate,
averaged over all completion tokens of the batch, plus β · KL(π‖π_ref) with the k3
estimator as a separate term (not folded into the reward). With ``target_kl`` set, β adapts
toward it each step (``kl.py``), from this step's rollout, before the step trains on it; β's
floor defaults to its start, so the controller only brakes a run whose KL overshoots.
"""

from __future__ import annotations

import torch

from alignloop import losses
from alignloop.rl.algorithm import Algorithm, broadcast_to_tokens
from alignloop.rl.rollout import Rollout


class GRPO(Algorithm):
    name = "grpo"
    uses_values = False

    def group_advantages(self, grouped: torch.Tensor) -> torch.Tensor:
        """Advantages shaped like the rewards (prompts, k)."""
        return losses.group_advantages(grouped, scale=self.settings.scale_rewards)

    def advantages(self, rollout: Rollout, scores: torch.Tensor) -> dict[str, float]:
        grouped = scores.view(-1, self.config.group_size)  # (prompts, k)
        advantages = self.group_advantages(grouped).reshape(-1)  # (B,)
        rollout.extras["advantages"] = broadcast_to_tokens(advantages, rollout.mask)
        metrics = {"reward_std_in_group": float(grouped.std(dim=1).mean()) if grouped.shape[1] > 1 else 0.0}
        if rollout.ref_logprobs is not None and self.kl is not None:
            kl = losses.kl_estimate(rollout.logprobs, rollout.ref_logprobs, "k3") * rollout.mask
            metrics["kl"] = float(kl.sum(-1).mean())  # nats per completion, as PPO and RLOO report it
            self.kl.update(metrics["kl"])
            metrics["beta"] = self.kl.value
        return metrics

    def loss(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        policy_loss, metrics = self.clipped_policy_loss(out, batch)
        return self.with_kl_term(policy_loss, metrics, out, batch)

    def with_kl_term(
        self,
        policy_loss: torch.Tensor,
        metrics: dict[str, torch.Tensor],
        out: dict[str, torch.Tensor],
        batch: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The policy loss plus β · the k3 KL to the reference over every completion token of the minibatch."""
        if not self.uses_reference:
            return policy_loss, metrics
        kl = losses.masked_mean(losses.kl_estimate(out["logprobs"], batch["ref_logprobs"], "k3"), batch["mask"])
        assert self.kl is not None
        metrics["kl_loss"] = kl.detach()
        return policy_loss + self.kl.value * kl, metrics
