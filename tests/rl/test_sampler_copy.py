"""The bf16 sampling copy follows the trained weights; truncated importance weights, by hand."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from alignloop import losses
from alignloop.rl.config import RLConfig
from alignloop.rl.sampler_copy import SamplerCopy
from alignloop.rl.setup import build_models, make_algorithm


def policy(tiny_lm: Path, lora_r: int) -> torch.nn.Module:
    config = RLConfig(algo="grpo", policy=str(tiny_lm), reward_model="x:y", lora_r=lora_r)
    torch.manual_seed(0)
    return build_models(config, make_algorithm(config), "cpu").actor_critic.policy


def next_token_logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([[1, 5, 9, 13, 17]])).logits[0, -1].float()


def test_the_copy_samples_from_the_merged_adapter_after_each_sync(tiny_lm: Path) -> None:
    trained = policy(tiny_lm, lora_r=4)
    copy = SamplerCopy(trained, torch.bfloat16)
    assert next(copy.model.parameters()).dtype == torch.bfloat16 and len(copy.pairs) > 0
    # buffers keep their precision, as loading in bf16 keeps them: rotary frequencies rounded to
    # bf16 would turn late positions by a visible angle
    assert {b.dtype for _, b in copy.model.named_buffers()} == {b.dtype for _, b in trained.named_buffers()}
    for name, param in trained.named_parameters():
        if "lora_B" in name:  # an optimiser step: the adapter moves, the base weights do not
            param.data.normal_(0, 0.5)
    before = next_token_logits(copy.model)
    copy.sync()
    after, wanted = next_token_logits(copy.model), next_token_logits(trained)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, wanted, atol=0.05 * wanted.abs().max().item())


def test_under_full_fine_tuning_every_weight_is_copied(tiny_lm: Path) -> None:
    trained = policy(tiny_lm, lora_r=0)
    copy = SamplerCopy(trained, torch.bfloat16)
    with torch.no_grad():
        for param in trained.parameters():
            param.add_(0.01)
    copy.sync()
    for target, source in zip(copy.model.parameters(), trained.parameters()):
        assert torch.equal(target, source.to(torch.bfloat16))


def test_truncated_importance_weights_by_hand() -> None:
    train = torch.tensor([[0.0, math.log(3.0), -1.0]])
    sampler = torch.zeros(1, 3)
    weights = losses.truncated_importance_weights(train.requires_grad_(), sampler, cap=2.0)
    assert torch.allclose(weights, torch.tensor([[1.0, 2.0, math.exp(-1.0)]]))
    assert not weights.requires_grad
    # the policy loss is the weighted mean of the per-token clipped surrogate: at ratio 1 it is −A·w
    advantages, mask = torch.tensor([[1.0, 1.0, -2.0]]), torch.ones(1, 3)
    loss, _, _ = losses.clipped_policy_loss(train.detach(), train.detach(), advantages, mask, 0.2, weights)
    assert math.isclose(loss.item(), (-1.0 - 2.0 + 2.0 * math.exp(-1.0)) / 3, rel_tol=1e-6)
