"""The evaluate stage's log-probabilities, against a plain unpadded forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignloop.evaluate import completion_logprobs
from alignloop.models import load_policy


def test_completion_logprobs_sum_each_completion_at_the_temperature(tiny_lm: Path) -> None:
    model, tokenizer = load_policy(str(tiny_lm))
    prompts = [[5, 6, 7, 8, 9], [10, 11]]  # different lengths: left padding
    completions = [[20, 21, 22], [23]]
    got = completion_logprobs(model, prompts, completions, tokenizer.pad_token_id, temperature=0.7)
    want = []
    with torch.no_grad():
        for prompt, completion in zip(prompts, completions):
            logits = model(input_ids=torch.tensor([prompt + completion])).logits[0, len(prompt) - 1 : -1] / 0.7
            want.append(logits.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None]).sum().item())
    assert got == pytest.approx(want, abs=1e-4)
