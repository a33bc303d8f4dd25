"""Rollout scoring: one prompt pass per group, and the single-update shortcut, agree with the plain computation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignloop.backends import HFBackend, SamplingParams, encode_prompts, shared_prompts
from alignloop.models import load_policy
from alignloop.rl.config import RLConfig
from alignloop.rl.rollout import ActorCritic, collect_rollout, pad_rollout_tensors
from alignloop.rl.setup import build_models, make_algorithm

KEYS = ("input_ids", "attention_mask", "position_ids", "completion_ids")


def lora_actor_critic(tiny_lm: Path) -> tuple[ActorCritic, object]:
    config = RLConfig(algo="grpo", policy=str(tiny_lm), reward_model="x:y", lora_r=4, temperature=0.7)
    torch.manual_seed(0)
    models = build_models(config, make_algorithm(config), "cpu")
    for name, param in models.actor_critic.named_parameters():
        if "lora_B" in name:  # a trained adapter, so the policy differs from the reference
            param.data.normal_(0, 0.5)
    return models.actor_critic, models.tokenizer


def group_tensors(tokenizer: object) -> dict[str, torch.Tensor]:
    """Two prompts of different lengths, three completions each of different lengths."""
    long, short = encode_prompts(
        tokenizer, [[{"role": "user", "content": "Say something kind to me."}], [{"role": "user", "content": "Hi"}]]
    )
    completions = [[5, 6, 7, 8], [9], [10, 11], [12, 13, 14], [15, 16], [17]]
    return pad_rollout_tensors([long] * 3 + [short] * 3, completions, tokenizer.pad_token_id)


def test_shared_prompts_finds_each_distinct_prompt_and_its_first_row() -> None:
    ids = torch.tensor([[0, 1, 2, 7], [3, 4, 5, 8], [0, 1, 2, 9], [9, 1, 2, 9]])
    mask = torch.ones_like(ids)
    first, inverse = shared_prompts(ids, mask, 3)
    assert first.tolist() == [0, 1, 3]
    assert first[inverse].tolist() == [0, 1, 0, 3]
    assert shared_prompts(ids[:2], mask[:2], 3) is None
    # the same ids under a different mask (a pad token that is also a real token) are not the same prompt
    assert shared_prompts(ids[[0, 2]], torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]]), 3) is None


def test_a_group_runs_its_prompt_once_with_the_same_logprobs_and_gradients(tiny_lm: Path) -> None:
    actor_critic, tokenizer = lora_actor_critic(tiny_lm)
    tensors = group_tensors(tokenizer)
    shared = actor_critic(**{k: tensors[k] for k in KEYS}, with_values=False)["logprobs"]
    (shared * tensors["mask"]).sum().backward()
    grads = {n: p.grad.clone() for n, p in actor_critic.named_parameters() if p.grad is not None}
    actor_critic.zero_grad()
    total = torch.zeros(())
    for row in range(tensors["input_ids"].shape[0]):  # one row at a time: nothing to share
        alone = actor_critic(**{k: tensors[k][row : row + 1] for k in KEYS}, with_values=False)["logprobs"]
        assert torch.allclose(alone, shared[row : row + 1], atol=1e-5)
        total = total + (alone * tensors["mask"][row]).sum()
    total.backward()
    assert grads and any("lora_A" in n for n in grads)
    for name, param in actor_critic.named_parameters():
        if name in grads:
            assert torch.allclose(grads[name], param.grad, atol=1e-5), name


def test_the_training_forward_gives_the_log_probs_the_scoring_pass_would(tiny_lm: Path) -> None:
    actor_critic, tokenizer = lora_actor_critic(tiny_lm)
    backend = HFBackend(actor_critic.policy, tokenizer, batch_size=8)
    prompt_ids = encode_prompts(tokenizer, [[{"role": "user", "content": "Count to three."}]])
    params = SamplingParams(temperature=0.7, top_p=1.0, max_new_tokens=6)
    args = (backend, prompt_ids, ["Count to three."], 4, params, [1, 2, 3, 4], None, True)
    scored = collect_rollout(actor_critic, *args)
    lazy = collect_rollout(actor_critic, *args, policy_scores="training")
    assert lazy.logprobs is None and lazy.entropy is None
    assert torch.equal(lazy.completion_ids, scored.completion_ids)
    assert torch.allclose(lazy.ref_logprobs, scored.ref_logprobs)
    actor_critic.train()
    out = actor_critic(**{k: getattr(lazy, k) for k in KEYS}, with_values=False, with_entropy=True)
    lazy.set_policy_scores(out)
    assert not lazy.logprobs.requires_grad
    assert torch.allclose(lazy.logprobs, scored.logprobs, atol=1e-5)
    assert torch.allclose(lazy.entropy, scored.entropy, atol=1e-5)


def test_the_samplers_own_scores_are_those_a_scoring_pass_gives_and_spare_that_pass(tiny_lm: Path) -> None:
    config = RLConfig(algo="ppo", policy=str(tiny_lm), reward_model="x:y", lora_r=4, temperature=0.7)
    torch.manual_seed(0)
    models = build_models(config, make_algorithm(config), "cpu")
    actor_critic, tokenizer = models.actor_critic, models.tokenizer
    with torch.no_grad():  # a trained adapter and value head, so neither gives zeros or the base model's numbers
        for name, param in actor_critic.named_parameters():
            if "lora_B" in name or "value_head" in name:
                param.normal_(0, 0.5)
    forwards = []
    actor_critic.register_forward_hook(lambda *_: forwards.append(1))
    backend = HFBackend(actor_critic.policy, tokenizer, batch_size=8)
    texts = ["Count to three.", "Hi"]
    prompt_ids = encode_prompts(tokenizer, [[{"role": "user", "content": t}] for t in texts])
    params = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=6)
    args = (backend, prompt_ids, texts, 3, params, [1, 2, 3, 4, 5, 6], None, False)
    scored = collect_rollout(actor_critic, *args)
    assert forwards and scored.values is not None and scored.values.abs().sum() > 0
    forwards.clear()
    sampled = collect_rollout(actor_critic, *args, policy_scores="sampler")
    assert not forwards  # no scoring pass
    assert torch.equal(sampled.completion_ids, scored.completion_ids)
    for field in ("logprobs", "entropy", "values"):
        assert torch.allclose(getattr(sampled, field), getattr(scored, field), atol=1e-5), field
    assert not sampled.logprobs.requires_grad and not sampled.values.requires_grad
    # its log-probs are the sampler's, so the gap is measured by the trainer's first forward instead
    assert sampled.policy_from_sampler and sampled.logprob_gap() is None and scored.logprob_gap() is not None


def test_a_bf16_training_forward_on_a_cpu_runs_the_math_attention_kernel_and_a_scoring_pass_flash(
    tiny_lm: Path,
) -> None:
    """The CPU flash kernel's backward is the slow one in bf16 (alignloop.precision); its forward is the fast one."""
    from torch.profiler import ProfilerActivity, profile

    actor_critic, tokenizer = lora_actor_critic(tiny_lm)
    actor_critic.compute_in(torch.bfloat16)
    inputs = {k: v for k, v in group_tensors(tokenizer).items() if k in KEYS}

    def kernels(grad: bool) -> set[str]:
        with profile(activities=[ProfilerActivity.CPU]) as prof, torch.set_grad_enabled(grad):
            actor_critic(**inputs, with_values=False)
        return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}

    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert flash not in kernels(grad=True) and "aten::_scaled_dot_product_attention_math" in kernels(grad=True)
    assert flash in kernels(grad=False)


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (1.0, 0.8), (0.0, 1.0)])
def test_a_prompt_repeated_in_the_batch_samples_what_each_row_samples_alone(
    tiny_lm: Path, temperature: float, top_p: float
) -> None:
    model, tokenizer = load_policy(str(tiny_lm))
    torch.manual_seed(0)
    with torch.no_grad():  # larger weights than the initialiser's, so the next token depends on the prompt
        for param in model.parameters():
            param.normal_(0, 0.3)
    ids = encode_prompts(tokenizer, [[{"role": "user", "content": p}] for p in ("Hello there", "Tell me a story")])
    rows = [ids[0], ids[1], ids[0], ids[0], ids[1]]
    seeds = [3, 4, 5, 6, 7]
    params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=8)
    together = HFBackend(model, tokenizer, batch_size=8).generate_ids(rows, params, seeds)
    alone = [HFBackend(model, tokenizer, batch_size=1).generate_ids([r], params, [s])[0] for r, s in zip(rows, seeds)]
    assert together == alone
    assert together[0] != together[1]
