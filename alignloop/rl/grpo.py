"""GRPO (Shao et al. 2024): no critic; a completion's advantage is its reward relative to its group.

For the G completions of a prompt, A = (r − mean(r)) / std(r) (the division is skipped with
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

    def advantages(self, rollout: Rollout, scores: torch.Tensor) -> dict[str, float]:
        grouped = scores.view(-1, self.config.group_size)  # (prompts, G)
        advantages = losses.group_advantages(grouped, scale=self.settings.scale_rewards).reshape(-1)  # (B,)
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
        mask = batch["mask"]
        policy_loss, metrics = self.clipped_policy_loss(out, batch)
        loss = policy_loss
        if self.uses_reference:
            kl = losses.masked_mean(losses.kl_estimate(out["logprobs"], batch["ref_logprobs"], "k3"), mask)
            assert self.kl is not None
            loss = loss + self.kl.value * kl
            metrics["kl_loss"] = kl.detach()
        return loss, metrics
