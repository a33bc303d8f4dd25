"""The RL loop under ``accelerate launch`` with two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize("algo", ["grpo"])
def test_two_processes_split_the_prompts_and_train_one_policy(
    algo: str, tiny_lm: Path, prompts_file: Path, tmp_path: Path
) -> None:
    config = {
        "algo": algo,
        "policy": str(tiny_lm),
        "reward_model": f"{HERE / 'rewards_for_tests.py'}:space_fraction",
        "prompts": str(prompts_file),
        "output": str(tmp_path / "run"),
        "batch_size": 4,
        "k": 2,
        "max_new_tokens": 6,
        "max_steps": 3,
        "save_every": 2,
        "sample_every": 1,
        "learning_rate": 1e-2,
    }
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    launcher = Path(sys.executable).parent / "accelerate"
    # --multi_gpu starts torchrun-style workers; on a machine without GPUs they join a gloo group on the CPU
    # (accelerate's --cpu flag alone runs one process, and its multi-CPU mode needs mpirun).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    command = [
        str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        str(HERE / "ddp_run.py"), str(config_file),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("report-*.json"))]
    assert sorted(r["rank"] for r in reports) == [0, 1] and all(r["world"] == 2 and r["steps"] == 3 for r in reports)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]  # only the main process writes
    assert all(r[f"{algo}/completions"] == 8 for r in records)  # 2 prompts x 2 samples on each of 2 processes
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-00000003"
    assert (tmp_path / "run" / "model" / "adapter_config.json").exists()
