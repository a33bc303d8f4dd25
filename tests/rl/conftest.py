"""Fixtures of the RL tests: a prompt file and reward-model run directories built from the tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain how a rainbow forms.",
    "Give me three tips for sleeping better.",
    "What is a good way to learn a new language?",
    "Tell me about the weather today.",
    "Say something kind.",
    "Count from one to ten.",
    "Describe a small robot who paints.",
]


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    rows = [{"prompt": p} for p in PROMPTS[:-1]] + [{"messages": [{"role": "user", "content": PROMPTS[-1]}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _reward_run(backbone: Path, out: Path) -> Path:
    """A reward-model run directory as ``train-reward`` writes it, with an untrained score head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    (out / "normalization.json").write_text(json.dumps({"mean": 0.0, "std": 1.0}), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def encoder_reward_run(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT-tokenizer reward model: not the policy's tokenizer."""
    return _reward_run(tiny_encoder, tmp_path_factory.mktemp("rm-encoder"))


@pytest.fixture(scope="session")
def decoder_reward_run(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A score-head reward model on the policy's own architecture and tokenizer."""
    return _reward_run(tiny_lm, tmp_path_factory.mktemp("rm-decoder"))
