"""``alignloop train-dpo`` and ``api.train_dpo``: inputs, options and the messages a user sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alignloop import api
from alignloop.cli import app
from alignloop.config import validate_config
from alignloop.errors import AlignloopError, ConfigError
from alignloop.rl import dpo
from alignloop.rl.dpo_config import DPOConfig
from alignloop.runs import RunDir


def trl_pairs_file(path: Path, n: int = 24) -> Path:
    """Pairs in TRL's conversational format, which train-dpo detects and reads."""
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Question {i}"}],
            "chosen": [{"role": "assistant", "content": "I love this wonderful idea"}],
            "rejected": [{"role": "assistant", "content": "awful sad news"}],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_trains_on_a_trl_pairs_file_and_reports_held_out_accuracy(tiny_lm: Path, tmp_path: Path) -> None:
    pairs = trl_pairs_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    args = ["train-dpo", "--pairs", str(pairs), "--policy", str(tiny_lm), "-o", str(out), "--max-steps", "2"]
    result = CliRunner().invoke(app, [*args, "--learning-rate", "1e-3", "--beta", "0.2", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "stopped (completed) after 2 steps" in result.output
    saved = (out / "config.yaml").read_text()
    assert "beta: 0.2" in saved and "batch_size: 4" in saved
    assert (out / "model" / "config.json").exists()


def test_pairs_and_project_together_or_neither_are_refused(tiny_lm: Path, tmp_path: Path) -> None:
    with pytest.raises(AlignloopError, match="one of them"):
        api.train_dpo(policy=str(tiny_lm), output=str(tmp_path / "run"))
    with pytest.raises(AlignloopError, match="one of them"):
        api.train_dpo(tmp_path / "p.jsonl", project=tmp_path, policy=str(tiny_lm), output=str(tmp_path / "r"))


def test_a_project_without_pairs_says_so(tiny_lm: Path, project_dir: Path) -> None:
    with pytest.raises(AlignloopError, match="no pairs"):
        api.train_dpo(project=project_dir, policy=str(tiny_lm))


def test_resume_without_config_reuses_the_runs_own_config(tiny_lm: Path, tmp_path: Path) -> None:
    pairs = trl_pairs_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    api.train_dpo(pairs, policy=str(tiny_lm), output=str(out), max_steps=2, batch_size=4, epochs=3.0, beta=0.3)
    result = api.train_dpo(output=str(out), resume=True, max_steps=3)
    assert result.steps == 3
    assert [m["step"] for m in RunDir(out).read_metrics() if "dpo/loss" in m] == [1, 2, 3]
    assert "beta: 0.3" in (out / "config.yaml").read_text()


def test_gradient_accumulation_matches_one_large_batch(tiny_lm: Path, tmp_path: Path) -> None:
    file = str(trl_pairs_file(tmp_path / "pairs.jsonl"))
    # float32: on a GPU `auto` is bf16 autocast, whose rounding differs between batch shapes
    common = dict(policy=str(tiny_lm), pairs=file, learning_rate=1e-3, max_steps=2, dtype="float32")
    whole = dpo.train_dpo(DPOConfig(**common, batch_size=8, output=str(tmp_path / "one")))
    split = dpo.train_dpo(
        DPOConfig(**common, batch_size=2, gradient_accumulation_steps=4, output=str(tmp_path / "four"))
    )
    a = torch.load(whole.run_dir / "checkpoints" / "step-00000002" / "state.pt", weights_only=False)["weights"]
    b = torch.load(split.run_dir / "checkpoints" / "step-00000002" / "state.pt", weights_only=False)["weights"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert whole.final_metrics["dpo/loss"] == pytest.approx(split.final_metrics["dpo/loss"], abs=1e-6)


def test_max_time_stops_with_a_checkpoint_that_resume_continues(tiny_lm: Path, tmp_path: Path) -> None:
    file = str(trl_pairs_file(tmp_path / "pairs.jsonl"))
    config = DPOConfig(policy=str(tiny_lm), pairs=file, max_time=1e-9, max_steps=3, output=str(tmp_path / "run"))
    stopped = dpo.train_dpo(config)
    assert (stopped.stop_reason, stopped.steps) == ("max_time", 1)
    assert not (tmp_path / "run" / "model").exists()  # no final model for an unfinished run
    finished = dpo.train_dpo(config.model_copy(update={"max_time": None}), resume=True)
    assert (finished.stop_reason, finished.steps) == ("completed", 3)


def test_the_old_dpo_keys_load_where_they_mean_the_same_and_are_refused_where_not() -> None:
    with pytest.warns(FutureWarning, match="replaced by lora_r"):
        assert DPOConfig.model_validate({"lora": False, "grad_accum": 1}).lora_r == 0
    with pytest.warns(FutureWarning, match="replaced by lora_r"):
        assert DPOConfig.model_validate({"lora": True, "lora_r": 8}).lora_r == 8
    with pytest.raises(ConfigError, match="batch_size B/G with gradient_accumulation_steps G"):
        validate_config(DPOConfig, {"grad_accum": 2})
