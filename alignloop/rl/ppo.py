"""PPO for language models (Ziegler et al. 2019; Ouyang et al. 2022), in the order of the equations.

Per token t of a completion: r_t = −β·(log π(a_t) − log π_ref(a_t)), plus the reward-model
score (normalised, minus the missing-end penalty) at the last token. GAE over the critic's
values gives advantages A_t (whitened) and returns R_t = A_t + V_t. The loss is the clipped
surrogate plus ``value_coef`` × the clipped value loss. β adapts toward ``target_kl`` (``kl.py``).
"""

from __future__ import annotations

import torch

from alignloop import losses
from alignloop.rl.algorithm import Algorithm
from alignloop.rl.rollout import Rollout


class PPO(Algorithm):
    name = "ppo"
    uses_values = True
    uses_reference = True  # always: its advantages measure the KL to the reference every step, even at β = 0

    def advantages(self, rollout: Rollout, scores: torch.Tensor) -> dict[str, float]:
        mask = rollout.mask
        assert rollout.values is not None and rollout.ref_logprobs is not None and self.kl is not None
        kl = (rollout.logprobs - rollout.ref_logprobs) * mask  # (B, T) k1 per token
        beta = self.kl.value
        rewards = -beta * kl  # (B, T)
        last = (mask.sum(-1).long() - 1).clamp(min=0)  # (B,) index of each completion's last token
        rewards[torch.arange(rollout.n_rows), last] += scores
        advantages, returns = losses.gae(rewards, rollout.values, mask, self.settings.gamma, self.settings.lam)
        if self.settings.whiten_advantages:
            advantages = losses.masked_whiten(advantages, mask)
        rollout.extras["advantages"] = advantages
        rollout.extras["returns"] = returns
        kl_per_completion = kl.sum(-1)  # (B,) nats
        mean_kl = float(kl_per_completion.mean())
        self.kl.update(mean_kl)
        return {
            "kl": mean_kl,
            "beta": beta,
            "non_score_reward": float((rewards.sum(-1) - scores).mean()),
            "value_mean": float(losses.masked_mean(rollout.values, mask)),
            "returns_mean": float(losses.masked_mean(returns, mask)),
        }

    def loss(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = batch["mask"]
        policy_loss, metrics = self.clipped_policy_loss(out, batch)
        value_loss, value_clipfrac = losses.clipped_value_loss(
            out["values"], batch["values"], batch["returns"], mask, self.settings.value_clip
        )
        loss = policy_loss + self.settings.value_coef * value_loss
        return loss, {**metrics, "value_loss": value_loss.detach(), "value_clipfrac": value_clipfrac}
