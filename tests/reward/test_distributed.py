"""The same reward training under ``accelerate launch --num_processes 2 --cpu`` (gloo DDP) as in one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignloop.runs import RunDir


def _train_command(tiny_encoder: Path, pairs_file: Path, output: Path) -> list[str]:
    return [
        "train-reward", "--pairs", str(pairs_file), "--backbone", str(tiny_encoder), "--output", str(output),
        "--epochs", "2", "--batch-size", "8", "--learning-rate", "1e-3", "--gradient-accumulation-steps", "2",
        "--dtype", "float32",  # arithmetic compared across process counts: auto may pick bf16 on this CPU
    ]  # fmt: skip


def _curve(run: Path) -> list[dict]:
    keys = ("step", "rm/loss", "rm/accuracy", "rm/eval_loss", "rm/eval_accuracy", "rm/ece")
    return [{k: m[k] for k in keys if k in m} for m in RunDir(run).read_metrics()]


@pytest.mark.timeout(300)
def test_two_process_run_gives_the_metrics_of_one_process_at_the_same_global_batch(
    tiny_encoder: Path, pairs_file: Path, tmp_path: Path
) -> None:
    cli = Path(sys.executable).parent / "alignloop"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launch = [
        # --multi_gpu starts the processes with torchrun; without CUDA they train on CPU over gloo
        # (`--cpu --num_processes 2` needs mpirun on one machine, which accelerate does not start itself)
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
        "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29547", str(cli),
    ]  # fmt: skip
    two = subprocess.run(
        [*launch, *_train_command(tiny_encoder, pairs_file, tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "on 2 processes" in two.stderr
    one = subprocess.run(
        [str(cli), *_train_command(tiny_encoder, pairs_file, tmp_path / "one")], env=env, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-3000:]

    single, double = _curve(tmp_path / "one"), _curve(tmp_path / "two")
    assert len(single) == len(double) and any("rm/eval_loss" in m for m in single)
    for a, b in zip(single, double):
        assert a.keys() == b.keys()
        # training accuracy counts r_chosen > r_rejected: the processes pack their distinct completions
        # into other rows than one process does, and float noise of 1e-7 may flip one near-tie of the
        # tiny random model; everything continuous must match
        if "rm/accuracy" in a:
            assert abs(a.pop("rm/accuracy") - b.pop("rm/accuracy")) <= 1 / 50
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    assert (tmp_path / "two" / "model" / "config.json").exists()
