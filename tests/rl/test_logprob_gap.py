"""The gap between the sampler's and the trainer's log-probs of the sampled tokens (`<algo>/logprob_gap`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from alignloop.backends import HFBackend, SamplingParams, encode_prompts
from alignloop.rl.config import RLConfig
from alignloop.rl.rollout import collect_rollout
from alignloop.rl.setup import build_models, make_algorithm

# Mean |log π_train − log π_sampler| per token that a float32 trainer may see from each sampler on the tiny
# model. bf16 keeps 8 bits of mantissa: its logits are off by ~1e-2 relative, far below a nat. A larger gap
# means the sampler is not sampling from the policy being trained (stale weights, wrong temperature, a bug).
FLOAT32_BOUND = 1e-4
BF16_BOUND = 0.02  # measured 0.0016 on the tiny model


def rollout_with(sampler_dtype: torch.dtype, tiny_lm: Path):
    config = RLConfig(algo="grpo", policy=str(tiny_lm), reward_model="x:y", lora_r=4, temperature=0.7)
    torch.manual_seed(0)
    models = build_models(config, make_algorithm(config), "cpu")
    for name, param in models.actor_critic.named_parameters():
        if "lora_B" in name:  # a trained adapter, so the policy differs from its base weights
            param.data.normal_(0, 0.5)
    policy = models.actor_critic.policy
    sampler = policy if sampler_dtype == torch.float32 else copy.deepcopy(policy).merge_and_unload().to(sampler_dtype)
    backend = HFBackend(sampler, models.tokenizer, batch_size=8)
    prompts = ["Write a short poem about the sea.", "Hi"]
    ids = encode_prompts(models.tokenizer, [[{"role": "user", "content": p}] for p in prompts])
    params = SamplingParams(temperature=0.7, top_p=0.95, max_new_tokens=10)
    return collect_rollout(
        models.actor_critic, backend, ids, prompts, 4, params, list(range(8)), models.reference, need_reference=False
    )


def test_a_float32_sampler_has_no_gap_to_the_float32_trainer(tiny_lm: Path) -> None:
    rollout = rollout_with(torch.float32, tiny_lm)
    assert rollout.sampler_logprobs is not None and rollout.sampler_logprobs.shape == rollout.mask.shape
    assert (rollout.sampler_logprobs * rollout.mask <= 0).all()
    gap = rollout.logprob_gap()
    assert gap is not None and gap < FLOAT32_BOUND, f"float32 sampler vs trainer: {gap:.2e} nats per token"


def test_a_bf16_sampler_stays_within_the_bound_of_the_float32_trainer(tiny_lm: Path) -> None:
    gap = rollout_with(torch.bfloat16, tiny_lm).logprob_gap()
    assert gap is not None and 0 < gap < BF16_BOUND, f"bf16 sampler vs float32 trainer: {gap:.4f} nats per token"


def run_gaps(tiny_lm: Path, prompts_file: Path, out: Path, algo: str, dtype: str, **fields: object) -> list[float]:
    """``<algo>/logprob_gap`` of each step of a 2-step run."""
    from alignloop.rl.trainer import train_rl

    config = RLConfig.model_validate(
        dict(policy=str(tiny_lm), reward_model=f"{Path(__file__).parent / 'rewards_for_tests.py'}:space_fraction",
             prompts=str(prompts_file), output=str(out), algo=algo, batch_size=2, max_new_tokens=4, max_steps=2,
             save_every=100, dtype=dtype, **fields)
    )  # fmt: skip
    train_rl(config)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r[f"{algo}/logprob_gap"] for r in records if f"{algo}/reward_mean" in r]


@pytest.mark.parametrize(
    ("algo", "fields"),
    [
        ("grpo", {"k": 2}),  # LoRA (the default): the copy gets the merged adapter
        ("ppo", {"ppo": {"epochs": 2, "minibatch_size": 2}, "lora_r": 0}),  # full fine-tuning: every weight
    ],
)
def test_every_rl_run_reports_the_gap_per_step(
    tiny_lm: Path, prompts_file: Path, tmp_path: Path, algo: str, fields: dict
) -> None:
    gaps = run_gaps(tiny_lm, prompts_file, tmp_path / "f32", algo, "float32", **fields)
    assert len(gaps) == 2 and all(0 <= g < FLOAT32_BOUND for g in gaps), gaps
    # bf16 sampling copy + bf16 autocast training over float32 weights: a gap, within the bound
    gaps = run_gaps(tiny_lm, prompts_file, tmp_path / "bf16", algo, "bfloat16", **fields)
    assert len(gaps) == 2 and all(0 < g < BF16_BOUND for g in gaps), gaps
