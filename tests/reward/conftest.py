"""Synthetic preference data for the reward tests: the completion that contains the marker word wins."""

from __future__ import annotations

import random

import pytest

from alignloop.records import Comparison

MARKER = "wonderful"
WORDS = "the sea rainbow robot sleep language weather idea paint small light rain time day good kind".split()


def marker_pairs(n_prompts: int = 40, per_prompt: int = 3, seed: int = 0) -> list[Comparison]:
    """Pairs whose chosen side contains the marker word and whose rejected side does not; lengths vary."""
    rng = random.Random(seed)
    pairs = []
    for p in range(n_prompts):
        prompt = f"question {p}: " + " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))
        for _ in range(per_prompt):
            plain = rng.choices(WORDS, k=rng.randint(4, 14))
            marked = rng.choices(WORDS, k=rng.randint(4, 14))
            marked.insert(rng.randrange(len(marked) + 1), MARKER)
            agreement = rng.choice([None, 0.67, 1.0])
            pairs.append(
                Comparison(prompt, " ".join(marked), " ".join(plain), agreement=agreement, margin=rng.random())
            )
    return pairs


@pytest.fixture
def synthetic_pairs() -> list[Comparison]:
    return marker_pairs()
