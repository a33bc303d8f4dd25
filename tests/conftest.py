"""Shared fixtures: tiny random models (built once per session) and fresh projects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama (hidden 64) with a chat template, saved with save_pretrained."""
    from alignloop.testing import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (hidden 64) with a WordPiece tokenizer."""
    from alignloop.testing import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A fresh, initialised project (SQLite store) in a temporary directory."""
    from alignloop.project import init_project

    handle = init_project(tmp_path / "proj", name="test-project")
    handle.close()
    return tmp_path / "proj"
