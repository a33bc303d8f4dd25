"""The CPU kernels of the inference passes: the same results as the plain ``nn.Linear``, LoRA merged only while
sampling, kept reordered weights that follow their weights, a probe that measures once, and no patch left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import alignloop.cpu_linears as cpu_linears
from alignloop.cpu_linears import kept_reorders, sampler_linears, scoring_linears
from alignloop.models import load_policy
from alignloop.rl.config import RLConfig
from alignloop.rl.rollout import pad_rollout_tensors, score_tokens
from alignloop.rl.setup import build_models, make_algorithm

PROMPT = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])  # a prefill, then a decode step (one position per row)


def no_patch_left(model: torch.nn.Module) -> bool:
    return not any("forward" in vars(m) for m in model.modules())


def prefill_and_step(model: torch.nn.Module) -> list[torch.Tensor]:
    return [model(PROMPT).logits, model(PROMPT[:, :1]).logits]


def lora_policy(tiny_lm: Path, algo: str = "grpo") -> torch.nn.Module:
    """The RL set-up's LoRA policy, its adapters moved away from zero as training would move them."""
    config = RLConfig(algo=algo, policy=str(tiny_lm), reward_model="x:y", lora_r=4)
    torch.manual_seed(0)
    models = build_models(config, make_algorithm(config), "cpu")
    with torch.no_grad():
        for name, param in models.actor_critic.policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return models.actor_critic


@pytest.mark.parametrize(
    ("dtype", "kernel"), [("float32", "onednn"), ("float32", "weight_first"), ("bfloat16", "onednn")]
)
def test_sampler_linears_compute_what_the_plain_linears_do(
    tiny_lm: Path, dtype: str, kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if dtype == "bfloat16" and not cpu_linears.bf16_prepacking_supported():
        pytest.skip("oneDNN cannot reorder bf16 weights on this CPU")
    monkeypatch.setattr(cpu_linears, "float32_kernel", lambda: kernel)
    model, _ = load_policy(str(tiny_lm), dtype=dtype)
    with torch.inference_mode():
        plain = prefill_and_step(model)
        with sampler_linears(model, rows=2):
            assert not no_patch_left(model)
            patched = prefill_and_step(model)
        after = model(PROMPT).logits
    for ours, theirs in zip(patched, plain):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert torch.equal(after, plain[0])
    assert no_patch_left(model)


@pytest.mark.parametrize("kernel", ["onednn", "weight_first"])
def test_a_lora_policy_samples_with_its_adapters_merged_and_disabled_ones_stay_off(
    tiny_lm: Path, kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_linears, "float32_kernel", lambda: kernel)
    policy = lora_policy(tiny_lm).policy
    with torch.inference_mode():
        adapted = prefill_and_step(policy)
        with policy.disable_adapter():
            base = prefill_and_step(policy)
            with sampler_linears(policy, rows=2):
                base_patched = prefill_and_step(policy)
        with sampler_linears(policy, rows=2):
            merged = [m for m in policy.modules() if "forward" in vars(m) and hasattr(m, "lora_A")]
            adapted_patched = prefill_and_step(policy)
    assert merged  # the LoRA layers themselves run one product each
    assert not torch.allclose(adapted[1], base[1], atol=1e-3)  # the adapters matter here
    for ours, theirs in zip(adapted_patched + base_patched, adapted + base):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    assert no_patch_left(policy)


def test_a_kept_reordered_weight_is_reused_until_its_weight_changes_and_dropped_after(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_linears, "float32_kernel", lambda: "onednn")
    model, _ = load_policy(str(tiny_lm), dtype="float32")
    model.requires_grad_(False)  # frozen, as a LoRA policy's base and a reference are
    layer = model.model.layers[0].mlp.down_proj
    with kept_reorders(), torch.inference_mode():
        with sampler_linears(model, rows=2):
            model(PROMPT)
        first = cpu_linears._kept[id(layer.weight)][2]
        with scoring_linears(model, rows=8):
            model(PROMPT)
        assert cpu_linears._kept[id(layer.weight)][2] is first  # not reordered again
        with torch.no_grad():
            layer.weight.mul_(3.0)  # an in-place change, as a sampler-copy sync makes
        wanted = prefill_and_step(model)
        with sampler_linears(model, rows=2):
            got = prefill_and_step(model)
    for ours, theirs in zip(got, wanted):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert cpu_linears._kept is None  # the copies went with the context
    with torch.inference_mode(), sampler_linears(model, rows=2):
        model(PROMPT)
    assert cpu_linears._kept is None  # and outside one nothing is kept


def test_rollout_scores_on_reordered_weights_match_and_the_reference_stays_the_base(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor_critic = lora_policy(tiny_lm, algo="ppo")  # PPO scores policy log-probs and values in the rollout too
    tensors = pad_rollout_tensors([[5, 6, 7], [9, 10, 11, 12]], [[13, 14, 2], [15, 16]], pad_id=0)

    def scores(kernel: str) -> dict[str, torch.Tensor]:
        monkeypatch.setattr(cpu_linears, "float32_kernel", lambda: kernel)
        return score_tokens(actor_critic, tensors, None, need_reference=True)

    plain, reordered = scores("weight_first"), scores("onednn")  # weight_first leaves scoring alone
    assert set(reordered) >= {"logprobs", "ref_logprobs", "values"}
    for key in plain:
        torch.testing.assert_close(reordered[key], plain[key], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(
        reordered["logprobs"], reordered["ref_logprobs"], atol=1e-3
    )  # adapters off for the reference
    assert no_patch_left(actor_critic)
    with scoring_linears(actor_critic, rows=8):  # only what does not train is patched
        patched = [m for m in actor_critic.modules() if "forward" in vars(m)]
        assert patched and all(not p.requires_grad for m in patched for p in m.parameters())


def test_the_float32_kernel_is_measured_once_per_machine(tmp_path: Path) -> None:
    path = tmp_path / "linear-probe.json"
    calls = []

    def measure() -> dict[str, float]:
        calls.append(1)
        return {"onednn": 0.009, "weight_first": 0.006}

    if not torch.backends.mkldnn.is_available():
        assert cpu_linears.float32_kernel(measure, path) == "weight_first" and not calls
        return
    assert cpu_linears.float32_kernel(measure, path) == "weight_first"
    assert cpu_linears.float32_kernel(measure, path) == "weight_first" and len(calls) == 1
    path.write_text(json.dumps({next(iter(json.loads(path.read_text()))): {"onednn": "fast"}}))  # another version's
    assert cpu_linears.float32_kernel(lambda: {"onednn": 0.001, "weight_first": 0.002}, path) == "onednn"


def test_the_real_probe_times_both_kernels() -> None:
    seconds = cpu_linears.timed_kernels(rounds=1)
    assert set(seconds) == {"onednn", "weight_first"} and all(0 < s < 10 for s in seconds.values())


def test_a_cpu_that_cannot_reorder_bf16_weights_samples_with_the_plain_linears(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = load_policy(str(tiny_lm), dtype="bfloat16")
    monkeypatch.setattr(cpu_linears, "bf16_prepacking_supported", lambda: False)  # an AVX2-only CPU
    with torch.inference_mode(), sampler_linears(model, rows=2):
        assert no_patch_left(model)  # nothing reordered, so nothing to raise
        model(torch.tensor([[5, 6, 7, 8]]))
    monkeypatch.undo()
    if cpu_linears.bf16_prepacking_supported():
        with sampler_linears(model, rows=2):
            assert not no_patch_left(model)
