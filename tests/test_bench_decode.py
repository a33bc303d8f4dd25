"""The decode-step arithmetic `bench/generate.py` states its roofline with, checked against torch's own count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from alignloop.backends import DecodeStats

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_decode_flops_match_torchs_count_of_one_decode_step(tiny_lm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.syspath_prepend(str(BENCH))
    from generate import decode_flops

    # eager attention: its products are matmuls the counter sees (a fused kernel may go uncounted on a CPU)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm, attn_implementation="eager").eval()
    rows, cached = 3, 40
    with torch.inference_mode():
        cache = model(torch.randint(5, 500, (rows, cached)), use_cache=True).past_key_values
        with FlopCounterMode(display=False) as counter:
            model(torch.randint(5, 500, (rows, 1)), cache=cache, use_cache=True)
    # the step's rows attend to their cached positions and to the new one, as the sampler counts them
    stats = DecodeStats(decode_forwards=1, row_steps=rows, cached_positions=rows * (cached + 1))
    assert decode_flops(model, stats) == pytest.approx(counter.get_total_flops(), rel=0.01)
