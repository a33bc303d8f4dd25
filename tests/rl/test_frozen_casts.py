"""Frozen weights cast once: the same products as autocast's per-pass casts, fewer casts, never stale."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from alignloop.frozen_casts import FrozenCasts
from alignloop.precision import differentiated_attention
from alignloop.rl.rollout import ActorCritic

from .test_rollout import KEYS, group_tensors, lora_actor_critic


def _pass(
    actor_critic: ActorCritic, inputs: dict[str, torch.Tensor], *, autocast: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Log-probs of one training pass and the gradients it leaves on the trainable weights; ``autocast``: the
    forward under bf16 autocast and the math attention kernel, as a bf16 training pass runs them."""
    actor_critic.zero_grad()
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    with bf16, differentiated_attention(torch.device("cpu"), torch.bfloat16 if autocast else torch.float32):
        out = actor_critic(**inputs, with_values=False)["logprobs"]
    out.sum().backward()
    grads = {n: p.grad.clone() for n, p in actor_critic.named_parameters() if p.grad is not None}
    return out.detach(), grads


def _casts_of_weights(actor_critic: ActorCritic, inputs: dict[str, torch.Tensor]) -> int:
    """How many tensors of a frozen weight's shape one bf16 scoring pass casts."""
    trainable = {tuple(p.shape) for p in actor_critic.parameters() if p.requires_grad}
    shapes = {tuple(p.shape) for p in actor_critic.parameters() if p.dim() == 2} - trainable
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof, torch.no_grad(), bf16:
        actor_critic(**inputs, with_values=False)
    return sum(
        e.count
        for e in prof.key_averages(group_by_input_shape=True)
        if e.key == "aten::_to_copy" and e.input_shapes and tuple(e.input_shapes[0]) in shapes
    )


def test_a_lora_policy_computes_the_same_logprobs_and_gradients_with_each_frozen_weight_cast_once(
    tiny_lm: Path,
) -> None:
    actor_critic, tokenizer = lora_actor_critic(tiny_lm)
    inputs = {k: v for k, v in group_tensors(tokenizer).items() if k in KEYS}
    expected, expected_grads = _pass(actor_critic, inputs, autocast=True)  # every frozen weight cast in the pass
    recast = _casts_of_weights(actor_critic, inputs)

    actor_critic.compute_in(torch.bfloat16)
    assert _pass(actor_critic, inputs)[0].dtype == torch.float32
    logprobs, grads = _pass(actor_critic, inputs)
    assert torch.equal(logprobs, expected)
    assert grads.keys() == expected_grads.keys() and grads  # the adapters learn, nothing else
    assert all(torch.equal(grads[n], expected_grads[n]) for n in grads)
    assert recast > 0 and _casts_of_weights(actor_critic, inputs) == 0  # the kept casts, nothing cast again


def test_a_frozen_weight_written_in_place_or_replaced_is_cast_again(tiny_lm: Path) -> None:
    actor_critic, tokenizer = lora_actor_critic(tiny_lm)
    inputs = {k: v for k, v in group_tensors(tokenizer).items() if k in KEYS}
    actor_critic.compute_in(torch.bfloat16)
    with torch.no_grad():
        before = actor_critic(**inputs, with_values=False)["logprobs"]
        frozen = [m for m in actor_critic.modules() if type(m) is torch.nn.Linear and not m.weight.requires_grad]
        frozen[0].weight.mul_(3.0)
        in_place = actor_critic(**inputs, with_values=False)["logprobs"]
        frozen[1].weight.data = frozen[1].weight.data * 3.0
        replaced = actor_critic(**inputs, with_values=False)["logprobs"]
        actor_critic.casts = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = actor_critic(**inputs, with_values=False)["logprobs"]
    assert not torch.equal(before, in_place) and not torch.equal(in_place, replaced)
    assert torch.equal(replaced, plain)


def test_trainable_weights_are_left_to_autocast_and_float32_patches_nothing(tiny_lm: Path) -> None:
    actor_critic, tokenizer = lora_actor_critic(tiny_lm)
    actor_critic.requires_grad_(True)  # full fine-tuning: every weight learns
    inputs = {k: v for k, v in group_tensors(tokenizer).items() if k in KEYS}
    actor_critic.compute_in(torch.bfloat16)
    _, grads = _pass(actor_critic, inputs)
    assert grads and all(m.weight.grad is not None for m in actor_critic.modules() if type(m) is torch.nn.Linear)
    assert FrozenCasts(actor_critic, torch.float32).forwards == []


def test_the_casts_can_be_applied_inside_themselves(tiny_lm: Path) -> None:
    actor_critic, _ = lora_actor_critic(tiny_lm)
    casts = FrozenCasts(actor_critic, torch.bfloat16)
    module = casts.forwards[0][0]
    with casts.applied():
        with casts.applied():
            assert "forward" in vars(module)
        assert "forward" in vars(module)
    assert "forward" not in vars(module)


def test_casts_made_in_an_inference_mode_pass_serve_a_later_training_pass(tiny_lm: Path) -> None:
    """A rollout scores under inference mode before the first training pass (which saves the casts for backward)."""
    actor_critic, tokenizer = lora_actor_critic(tiny_lm)
    inputs = {k: v for k, v in group_tensors(tokenizer).items() if k in KEYS}
    expected, expected_grads = _pass(actor_critic, inputs, autocast=True)
    actor_critic.compute_in(torch.bfloat16)
    with torch.inference_mode():  # it makes the casts (and runs another attention kernel: no gradient)
        actor_critic(**inputs, with_values=False)
    logprobs, grads = _pass(actor_critic, inputs)
    assert torch.equal(logprobs, expected)
    assert all(torch.equal(grads[n], expected_grads[n]) for n in expected_grads)
