"""DPO under ``accelerate launch`` with two CPU processes (gloo) matches one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from alignloop.jsonl import write_jsonl
from alignloop.records import Comparison
from alignloop.rl import dpo
from alignloop.rl.dpo_config import DPOConfig
from alignloop.runs import RunDir


def synthetic_pairs(n: int) -> list[Comparison]:
    """Cheerful answers preferred to gloomy ones (as in test_dpo)."""
    return [
        Comparison(prompt=f"Question {i}", chosen="I love this wonderful idea", rejected="awful sad news")
        for i in range(n)
    ]


def test_two_process_accelerate_run_equals_one_process_with_the_same_global_batch(
    tiny_lm: Path, tmp_path: Path
) -> None:
    pairs_file = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_file, (p.to_json() for p in synthetic_pairs(40)))
    common = ["--policy", str(tiny_lm), "--learning-rate", "1e-3", "--max-steps", "3", "--pairs", str(pairs_file)]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1"]
    # --multi_gpu means torchrun; on a machine without CUDA the processes train on CPU over gloo
    launch += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533"]
    script = str(Path(sys.executable).parent / "alignloop")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*launch, script, "train-dpo", *common, "--batch-size", "8", "--output", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    single = dpo.train_dpo(
        DPOConfig(
            policy=str(tiny_lm),
            pairs=str(pairs_file),
            learning_rate=1e-3,
            max_steps=3,
            batch_size=8,
            output=str(tmp_path / "one"),
        )
    )
    two = torch.load(tmp_path / "two" / "checkpoints" / "step-00000003" / "state.pt", weights_only=False)["weights"]
    one = torch.load(single.run_dir / "checkpoints" / "step-00000003" / "state.pt", weights_only=False)["weights"]
    assert two.keys() == one.keys()
    assert all(torch.allclose(two[k], one[k], atol=1e-5) for k in one)
    assert any(v.abs().sum() > 0 for k, v in two.items() if "lora_B" in k)  # the adapter was trained
    metrics_two, metrics_one = RunDir(tmp_path / "two").read_metrics(), RunDir(single.run_dir).read_metrics()
    for a, b in zip(metrics_two[:3], metrics_one[:3], strict=True):
        assert abs(a["dpo/loss"] - b["dpo/loss"]) < 1e-5
        assert abs(a["dpo/margin"] - b["dpo/margin"]) < 1e-5  # (accuracy at step 1 compares float noise)
    assert (tmp_path / "two" / "model" / "config.json").exists()
