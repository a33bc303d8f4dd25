"""Synthetic preference data for the reward tests: the completion that contains the marker word wins."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from alignloop.jsonl import write_jsonl
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
def make_pairs() -> Callable[..., list[Comparison]]:
    """``make_pairs(n_prompts=40, per_prompt=3, seed=0)``: marker-word preference pairs."""
    return marker_pairs


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    """The default marker pairs as an alignloop-format pairs file."""
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, (p.to_json() for p in marker_pairs()))
    return path


def _train_small(backbone: Path, output: Path, **fields: object) -> Path:
    from alignloop.reward import RewardConfig, train_reward

    config = RewardConfig(
        backbone=str(backbone), output=str(output), epochs=2, batch_size=8, learning_rate=1e-3, **fields
    )
    return train_reward(config, pairs=marker_pairs(n_prompts=20, per_prompt=2)).run_dir


@pytest.fixture(scope="session")
def encoder_run(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward run trained for two epochs on marker pairs from the tiny encoder."""
    return _train_small(tiny_encoder, tmp_path_factory.mktemp("rm") / "encoder")


@pytest.fixture(scope="session")
def decoder_run(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward run trained for two epochs on marker pairs from the tiny decoder LM."""
    return _train_small(tiny_lm, tmp_path_factory.mktemp("rm") / "decoder")


@pytest.fixture(scope="session")
def mean_pooled_run(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward run of the tiny encoder that scores the mean of the answer's tokens."""
    return _train_small(tiny_encoder, tmp_path_factory.mktemp("rm") / "mean", pooling="mean")


ENSEMBLE_SEED = 3  # member i trains with seed 3 + i


@pytest.fixture(scope="session")
def ensemble_run(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory):
    """An ensemble of two reward models of the tiny encoder (seeds 3 and 4) on marker pairs, a quarter held out."""
    from alignloop.reward import RewardConfig, train_reward

    config = RewardConfig(
        backbone=str(tiny_encoder),
        output=str(tmp_path_factory.mktemp("rm") / "ensemble"),
        epochs=2,
        batch_size=8,
        learning_rate=1e-3,
        eval_fraction=0.25,
        seed=ENSEMBLE_SEED,
        ensemble=2,
    )
    return train_reward(config, pairs=marker_pairs(n_prompts=20, per_prompt=2))
