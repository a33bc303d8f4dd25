"""RLOO (Ahmadian et al. 2024): REINFORCE with a leave-one-out baseline; no critic.

Each completion's reward is its score minus β · its summed KL to the reference
(Σ_t log π − log π_ref). With k completions per prompt, the baseline of one is the mean
reward of the other k − 1, and A = reward − baseline for every token of it. The loss is
−A · log π averaged over tokens — on the first pass over a batch the ratio is 1, so the
clipped surrogate used here is exactly REINFORCE; the clip only guards later passes.
"""

from __future__ import annotations

import torch

from alignloop import losses
from alignloop.rl.algorithm import Algorithm, broadcast_to_tokens
from alignloop.rl.rollout import Rollout


class RLOO(Algorithm):
    name = "rloo"
    uses_values = False

    def advantages(self, rollout: Rollout, scores: torch.Tensor) -> dict[str, float]:
        metrics: dict[str, float] = {}
        rewards = scores
        if rollout.ref_logprobs is not None:
            kl = ((rollout.logprobs - rollout.ref_logprobs) * rollout.mask).sum(-1)  # (B,) nats per completion
            rewards = scores - self.settings.kl_coef * kl
            metrics["kl"] = float(kl.mean())
        grouped = rewards.view(-1, self.config.group_size)  # (prompts, k)
        advantages = (grouped - losses.leave_one_out_baseline(grouped)).reshape(-1)  # (B,)
        if self.settings.whiten_advantages:
            advantages = losses.masked_whiten(advantages, torch.ones_like(advantages))
        rollout.extras["advantages"] = broadcast_to_tokens(advantages, rollout.mask)
        metrics["rlhf_reward_mean"] = float(rewards.mean())
        return metrics

    def loss(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.clipped_policy_loss(out, batch)
