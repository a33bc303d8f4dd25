"""The RL stage: fine-tune a policy against a reward with PPO, GRPO, RAFT or RLOO on one shared skeleton.

``trainer.train_rl`` runs the loop (rollout → scoring → optimisation, logging,
checkpoints, stopping); an algorithm is a small module defining its advantages and
its loss (``ppo.py``, ``grpo.py``, ``raft.py``, ``rloo.py``), registered with its config section in
``ALGORITHMS`` (``rl/config.py``).
"""

from __future__ import annotations

from alignloop.rl.config import ALGORITHMS, AlgorithmSpec, GRPOConfig, PPOConfig, RAFTConfig, RLConfig, RLOOConfig

__all__ = ["ALGORITHMS", "AlgorithmSpec", "GRPOConfig", "PPOConfig", "RAFTConfig", "RLConfig", "RLOOConfig"]
