"""The reward model stage: train a scalar scorer on comparisons, evaluate it, score texts with it.

``RewardConfig`` (config.py) → ``train_reward`` (ensemble.py: one model, or an ensemble of several, each
trained by train.py) → a run directory that ``RewardModel.load(run).score(prompts, completions)`` (model.py) reads.
"""

from alignloop.reward.config import RewardConfig
from alignloop.reward.ensemble import train_reward
from alignloop.reward.model import RewardModel
from alignloop.reward.train import RewardRunResult

__all__ = ["RewardConfig", "RewardModel", "RewardRunResult", "train_reward"]
