"""Building what an RL run trains: the policy (LoRA-wrapped or full), the reference, the critic."""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from alignloop.errors import AlignloopError
from alignloop.rl.algorithm import Algorithm
from alignloop.rl.config import ALGORITHMS, RLConfig
from alignloop.rl.rollout import ActorCritic
from alignloop.rl.value_head import ValueHead, critic_from_reward_model


@dataclass
class Models:
    actor_critic: ActorCritic  # what trains: policy (+ value head or critic)
    reference: ActorCritic | None  # frozen copy under full fine-tuning; None with LoRA (adapter disabled) or no KL
    tokenizer: Any  # the policy's tokenizer (PreTrainedTokenizerBase), left padding


def make_algorithm(config: RLConfig) -> Algorithm:
    """The registered algorithm ``config.algo``, its module imported now."""
    module_name, _, class_name = ALGORITHMS[config.algo].implementation.partition(":")
    return getattr(importlib.import_module(module_name), class_name)(config)


def build_models(config: RLConfig, algorithm: Algorithm, device: str) -> Models:
    """Load the policy; add LoRA (reference = adapter disabled) or keep a frozen copy as the reference."""
    from alignloop.models import add_lora, load_policy

    # an optimiser updates these weights: float32 everywhere, bf16 meaning a sampling copy and autocast
    # (trainer.py); bf16 weights would lose most small updates, and a float32 value head could not read them
    policy, tokenizer = load_policy(config.policy, device=device, dtype="float32")
    reference = None
    if config.lora_r > 0:
        policy = add_lora(policy, config, name=config.policy)
    elif algorithm.uses_reference:
        frozen = copy.deepcopy(policy).eval()
        frozen.requires_grad_(False)
        reference = ActorCritic(frozen, config.temperature)
    if hasattr(policy.config, "use_cache"):
        policy.config.use_cache = True
    value_head, critic = None, None
    if algorithm.uses_values:
        settings = algorithm.settings  # an algorithm that learns values has `critic` in its section
        if settings.critic == "policy":
            value_head = ValueHead(policy.config.hidden_size).to(device)
        else:
            run_dir = Path(config.reward_model.strip())
            if not run_dir.is_dir():
                raise AlignloopError(
                    f"{config.algo}.critic=reward_model needs the reward to be one reward-model run directory"
                )
            critic = critic_from_reward_model(run_dir, tokenizer, config).to(device)
    actor_critic = ActorCritic(policy, config.temperature, value_head=value_head, critic=critic)
    return Models(actor_critic, reference, tokenizer)


def parameter_groups(actor_critic: nn.Module, config: RLConfig) -> list[dict]:
    """The policy's trainable weights at ``learning_rate``; the critic's, where the algorithm learns values,
    at its section's ``value_learning_rate``."""
    policy_params = [p for p in actor_critic.policy.parameters() if p.requires_grad]
    value_params = [
        p
        for module in (actor_critic.value_head, actor_critic.critic)
        if module is not None
        for p in module.parameters()
        if p.requires_grad
    ]
    groups = [{"params": policy_params, "lr": config.learning_rate}]
    if value_params:
        groups.append({"params": value_params, "lr": config.settings.value_learning_rate or config.learning_rate})
    return groups
