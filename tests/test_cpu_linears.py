"""The sampler's CPU matrix products: the same results as the plain ``nn.Linear``, and gone after the call."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignloop.cpu_linears import sampler_linears
from alignloop.models import load_policy


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sampler_linears_compute_what_the_plain_linears_do(tiny_lm: Path, dtype: str) -> None:
    model, _ = load_policy(str(tiny_lm), dtype=dtype)
    prompt = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])  # a prefill, then a decode step (one position per row)
    with torch.inference_mode():
        plain = [model(prompt).logits, model(prompt[:, :1]).logits]
        with sampler_linears(model, rows=2):
            patched = [model(prompt).logits, model(prompt[:, :1]).logits]
        after = model(prompt).logits
    for ours, theirs in zip(patched, plain):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert torch.equal(after, plain[0])
    assert not any("forward" in vars(m) for m in model.modules())  # the patches are gone


def test_a_cpu_that_cannot_reorder_bf16_weights_samples_with_the_plain_linears(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alignloop.cpu_linears as cpu_linears

    model, _ = load_policy(str(tiny_lm), dtype="bfloat16")
    monkeypatch.setattr(cpu_linears, "bf16_prepacking_supported", lambda: False)  # an AVX2-only CPU
    with torch.inference_mode(), sampler_linears(model, rows=2):
        assert not any("forward" in vars(m) for m in model.modules())  # nothing reordered, so nothing to raise
        model(torch.tensor([[5, 6, 7, 8]]))
    monkeypatch.undo()
    if cpu_linears.bf16_prepacking_supported():
        with sampler_linears(model, rows=2):
            assert any("forward" in vars(m) for m in model.modules())
