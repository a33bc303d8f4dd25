"""The reward model stage: train a scalar scorer on comparisons, evaluate it, score texts with it.

``RewardConfig`` (config.py) → ``train_reward`` (ensemble.py: one model, or an ensemble of several, each
trained by train.py) → a run directory that ``RewardModel.load(run).score(prompts, completions)`` (model.py) reads;
``saved_groups`` and ``check_group`` say, without loading it, whether a run can score as a labeler group judges.
"""

from alignloop.reward.config import RewardConfig
from alignloop.reward.ensemble import train_reward
from alignloop.reward.model import RewardModel, check_group, saved_groups
from alignloop.reward.train import RewardRunResult

__all__ = ["RewardConfig", "RewardModel", "RewardRunResult", "check_group", "saved_groups", "train_reward"]
