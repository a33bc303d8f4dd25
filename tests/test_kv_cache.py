"""The sampler's preallocated KV cache: what transformers' own cache gives, rows dropped and copied included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignloop.kv_cache import preallocated_cache
from alignloop.models import load_policy


def _decode(model: torch.nn.Module, cache: object) -> list[torch.Tensor]:
    """Prefill two prompts, copy the first to two rows, step, drop the middle row, step: the logits of each forward."""
    device = next(model.parameters()).device
    prompts = torch.tensor([[0, 5, 6, 7], [8, 9, 10, 11]], device=device)
    attention = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]], device=device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=prompts, attention_mask=attention, position_ids=positions, cache=cache, use_cache=True)
    logits, cache = [out.logits], out.cache
    rows = torch.tensor([0, 0, 1], device=device)
    cache.reorder_cache(rows)
    attention, next_pos = attention[rows], positions[rows, -1:] + 1
    for step, keep in enumerate([None, torch.tensor([0, 2], device=device)]):
        if keep is not None:
            cache.batch_select_indices(keep)
            attention, next_pos = attention[keep], next_pos[keep]
        attention = torch.cat([attention, attention.new_ones((len(attention), 1))], dim=-1)
        tokens = torch.full((len(attention), 1), 20 + step, device=device)
        out = model(input_ids=tokens, attention_mask=attention, position_ids=next_pos, cache=cache, use_cache=True)
        logits.append(out.logits)
        cache, next_pos = out.cache, next_pos + 1
    return logits


def test_preallocated_cache_gives_the_logits_of_transformers_cache(tiny_lm: Path) -> None:
    model, _ = load_policy(str(tiny_lm), dtype="float32")
    with torch.inference_mode():
        ours = _decode(model, preallocated_cache(model.config, capacity=6))
        theirs = _decode(model, None)
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)


def test_writing_past_the_capacity_is_refused(tiny_lm: Path) -> None:
    model, _ = load_policy(str(tiny_lm), dtype="float32")
    with torch.inference_mode(), pytest.raises(ValueError, match="holds 3 positions"):
        model(
            input_ids=torch.tensor([[1, 2, 3, 4]], device=model.device),
            cache=preallocated_cache(model.config, capacity=3),
        )


def test_models_with_sliding_window_layers_keep_transformers_cache() -> None:
    from transformers import Qwen2Config

    sliding = Qwen2Config(num_hidden_layers=2, use_sliding_window=True, sliding_window=8, max_window_layers=0)
    assert preallocated_cache(sliding, capacity=16) is None
    assert preallocated_cache(Qwen2Config(num_hidden_layers=2), capacity=16) is not None
