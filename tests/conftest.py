"""Shared fixtures: tiny random models and reward-model runs on them (built once per session), fresh projects."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run, so CI cannot fail by chance; run
# `pytest --hypothesis-profile=explore` to search fresh random examples for new bugs.
settings.register_profile("deterministic", max_examples=60, deadline=None, derandomize=True, database=None)
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile("deterministic")

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


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A fresh, initialised project (SQLite store) in a temporary directory."""
    from alignloop.project import init_project

    handle = init_project(tmp_path / "proj", name="test-project")
    handle.close()
    return tmp_path / "proj"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port nothing listens on right now, for a server the test starts."""
    return _free_port()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on loopback (Debian's postgresql), or a skip that says why."""
    import glob
    import shutil
    import subprocess
    import tempfile

    url = os.environ.get("ALIGNLOOP_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not binaries:
        pytest.skip("PostgreSQL is not installed (scripts/test installs Debian's postgresql as root)")
    bindir = Path(binaries[-1])
    # Outside pytest's private temp folder, which another user cannot enter.
    data = Path(tempfile.mkdtemp(prefix="alignloop-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "alignloop", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-w",
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://alignloop@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> str:
    """A new, empty database on the throw-away server for one test."""
    import uuid

    from sqlalchemy import create_engine, text

    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + "/" + name
