"""The RL stage: fine-tune a policy against a reward with PPO, GRPO or RLOO on one shared skeleton.

``trainer.train_rl`` runs the loop (rollout → scoring → optimisation, logging,
checkpoints, stopping); an algorithm is a small module defining its advantages and
its loss (``ppo.py``, ``grpo.py``, ``rloo.py``), registered in ``ALGORITHMS``.
"""

from __future__ import annotations

from alignloop.rl.config import GRPOConfig, PPOConfig, RLConfig, RLOOConfig

ALGORITHMS = {"ppo": "alignloop.rl.ppo:PPO", "grpo": "alignloop.rl.grpo:GRPO", "rloo": "alignloop.rl.rloo:RLOO"}

__all__ = ["ALGORITHMS", "GRPOConfig", "PPOConfig", "RLConfig", "RLOOConfig"]
