"""Fixtures of the RL tests: a prompt file (the tiny reward-model runs are shared, in tests/conftest.py)."""

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
