"""`dtype: auto`: bf16 where the machine computes it natively and a cached probe measured it faster."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from alignloop import precision
from alignloop.backends import HFBackend, SamplingParams, encode_prompts
from alignloop.models import load_policy, pick_dtype
from alignloop.precision import CPUInfo, auto_dtype, cached_probe, cpu_info, run_probe

BF16_CPU = CPUInfo("Test EPYC", ("avx2", "avx512f", "avx512_bf16"), 2)
AVX2_CPU = CPUInfo("Test Xeon", ("avx2",), 2)
CPU = torch.device("cpu")


def fake_timer(float32: dict[str, float], bfloat16: dict[str, float], calls: list | None = None):
    """A probe timer returning fixed seconds per (shape, dtype); records each call in ``calls``."""

    def measure(shape: str, dtype: str) -> float:
        if calls is not None:
            calls.append((shape, dtype))
        return (float32 if dtype == "float32" else bfloat16)[shape]

    return measure


@pytest.fixture(autouse=True)
def probe_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "dtype-probe.json"
    monkeypatch.setattr(precision, "probe_path", lambda: path)
    return path


def test_bf16_is_chosen_per_purpose_only_where_it_measured_faster() -> None:
    # decode 3x faster in bf16, the training matmul only 1.1x (below MIN_SPEEDUP)
    timer = fake_timer({"decode": 0.009, "train": 0.011}, {"decode": 0.003, "train": 0.010})
    assert auto_dtype(CPU, "sampling", cpu=BF16_CPU, measure=timer) == "bfloat16"
    assert auto_dtype(CPU, "training", cpu=BF16_CPU, measure=timer) == "float32"


def test_slower_bf16_on_a_cpu_that_claims_it_stays_float32() -> None:
    timer = fake_timer({"decode": 0.004, "train": 0.004}, {"decode": 0.030, "train": 0.030})
    assert auto_dtype(CPU, "sampling", cpu=BF16_CPU, measure=timer) == "float32"
    assert auto_dtype(CPU, "training", cpu=BF16_CPU, measure=timer) == "float32"


def test_a_cpu_without_native_bf16_is_float32_without_probing(probe_cache: Path) -> None:
    def never(shape: str, dtype: str) -> float:
        raise AssertionError("an AVX2-only CPU must not be probed")

    assert auto_dtype(CPU, "sampling", cpu=AVX2_CPU, measure=never) == "float32"
    assert auto_dtype(CPU, "training", cpu=AVX2_CPU, measure=never) == "float32"
    assert not probe_cache.exists()


def test_the_probe_runs_once_per_machine_and_is_cached(probe_cache: Path) -> None:
    calls: list = []
    timer = fake_timer({"decode": 0.009, "train": 0.011}, {"decode": 0.003, "train": 0.003}, calls)
    first = cached_probe(BF16_CPU, timer)
    measured = len(calls)
    assert measured == 3 * 2 * 2  # rounds x shapes x precisions, interleaved
    assert cached_probe(BF16_CPU, timer) == first and len(calls) == measured
    stored = json.loads(probe_cache.read_text())
    assert list(stored) == [first.key] and "avx512_bf16" in first.key and torch.__version__ in first.key
    # another machine (other CPU model) gets its own entry, the first one is kept
    other = CPUInfo("Other EPYC", BF16_CPU.flags, 2)
    cached_probe(other, timer)
    assert len(calls) == 2 * measured and len(json.loads(probe_cache.read_text())) == 2


def test_a_corrupt_cache_file_is_measured_again(probe_cache: Path) -> None:
    probe_cache.write_text("{not json")
    timer = fake_timer({"decode": 0.009, "train": 0.011}, {"decode": 0.003, "train": 0.003})
    assert cached_probe(BF16_CPU, timer).choice("sampling") == "bfloat16"
    assert json.loads(probe_cache.read_text())


def test_the_probe_keeps_the_fastest_of_interleaved_rounds() -> None:
    # per round: decode float32, decode bf16, train float32, train bf16
    seconds = iter([0.05, 0.02, 0.05, 0.025, 0.01, 0.04, 0.01, 0.04, 0.03, 0.03, 0.03, 0.03])
    result = run_probe("k", lambda shape, dtype: next(seconds))
    assert result.float32_s == {"decode": 0.01, "train": 0.01}
    assert result.bfloat16_s == {"decode": 0.02, "train": 0.025}


def test_an_explicit_dtype_always_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(*args: object, **kwargs: object) -> str:
        raise AssertionError("an explicit dtype must not consult the probe")

    monkeypatch.setattr(precision, "auto_dtype", no_probe)
    assert pick_dtype("float32", CPU, "sampling") == torch.float32
    assert pick_dtype("float32", CPU, "training") == torch.float32
    assert pick_dtype("bfloat16", CPU, "sampling") == torch.bfloat16


def test_auto_weights_that_are_trained_stay_float32_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "auto_dtype", lambda device, purpose: "bfloat16")
    assert pick_dtype("auto", CPU) == torch.float32  # no purpose: weights an optimiser updates
    assert pick_dtype("auto", CPU, "sampling") == torch.bfloat16
    assert pick_dtype("auto", CPU, "training") == torch.bfloat16


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    text = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n"
    info = cpu_info(text)
    assert info.model == "AMD EPYC 9R14"
    assert info.flags == ("avx2", "avx512f", "avx512_bf16", "amx_tile") and info.native_bf16
    assert not cpu_info("model name : Intel Xeon\nflags : sse avx avx2 fma\n").native_bf16


def test_sampling_in_bf16_on_a_tiny_model_gives_sensible_tokens(tiny_lm: Path) -> None:
    model32, tokenizer = load_policy(str(tiny_lm), dtype="float32")
    model16, _ = load_policy(str(tiny_lm), dtype="bfloat16")
    assert next(model16.parameters()).dtype == torch.bfloat16
    prompts = ["Write a short poem about the sea.", "What is a rainbow?", "What is a rainbow?"]
    ids = encode_prompts(tokenizer, [[{"role": "user", "content": p}] for p in prompts])
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=8)
    sampled = HFBackend(model16, tokenizer, batch_size=3).generate_ids(ids, params, [1, 2, 3])
    vocab = model16.config.vocab_size
    assert all(1 <= len(row) <= 8 and all(0 <= t < vocab for t in row) for row in sampled)
    # bf16 weights approximate the float32 model: the next-token distributions nearly agree
    with torch.inference_mode():
        batch = torch.tensor([ids[0]], device=model32.device)
        p32 = model32(batch).logits[0, -1].float().log_softmax(-1)
        p16 = model16(batch).logits[0, -1].float().log_softmax(-1)
    assert torch.isfinite(p16).all()
    kl = float((p32.exp() * (p32 - p16)).sum())
    assert kl < 0.05, f"KL(float32 || bf16) of the next token is {kl:.4f} nats"
    # a row's sample still depends on its seed only, not on its batch
    alone = HFBackend(model16, tokenizer, batch_size=1).generate_ids([ids[0]], params, [1])[0]
    assert alone == sampled[0]


def attention_kernels(query_dtype: torch.dtype, context: contextlib.AbstractContextManager[None]) -> set[str]:
    """The scaled-dot-product-attention kernels one differentiated attention call runs under ``context``."""
    from torch.profiler import ProfilerActivity, profile

    q, k, v = (torch.randn(2, 4, 16, 32, dtype=query_dtype, requires_grad=True) for _ in range(3))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with context:
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        out.sum().backward()
    return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}


def test_a_bf16_training_forward_on_a_cpu_runs_the_math_attention_kernel() -> None:
    """The flash kernel's backward is 2-3x slower than the math kernel's in bf16 on a CPU; in float32 it is faster."""
    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    bf16 = attention_kernels(torch.bfloat16, precision.differentiated_attention(CPU, torch.bfloat16))
    assert flash not in bf16 and "aten::_scaled_dot_product_attention_math" in bf16
    assert flash in attention_kernels(torch.float32, precision.differentiated_attention(CPU, torch.float32))
    assert isinstance(precision.differentiated_attention(torch.device("cuda"), torch.bfloat16), contextlib.nullcontext)


def test_the_reward_models_bf16_training_forward_on_a_cpu_runs_eager_attention_and_switches_back(
    tiny_encoder: Path,
) -> None:
    """Eager attention skips the math kernel's masked-row checks; in float32, or on a GPU, nothing changes."""
    from torch.profiler import ProfilerActivity, profile

    from alignloop.reward.model import load_backbone

    model, _ = load_backbone(str(tiny_encoder))  # as the reward model loads its backbone
    ids, mask = torch.randint(0, 64, (3, 10)), torch.ones(3, 10, dtype=torch.long)
    mask[0, 6:] = 0

    def run(dtype: torch.dtype, device: torch.device = CPU) -> tuple[str, set[str], torch.Tensor]:
        with profile(activities=[ProfilerActivity.CPU]) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
            with precision.eager_training_attention(model, device, dtype):
                inside = model.config._attn_implementation
                scores = model(input_ids=ids, attention_mask=mask).logits.float()
        return inside, {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}, scores

    inside, kernels, eager = run(torch.bfloat16)
    assert inside == "eager" and kernels == set()
    assert model.config._attn_implementation == "sdpa"
    inside, kernels, sdpa = run(torch.float32)
    assert inside == "sdpa" and kernels
    assert torch.allclose(eager, sdpa, atol=0.05)  # the same attention, rounded at another point
    assert run(torch.bfloat16, torch.device("cuda"))[0] == "sdpa"
