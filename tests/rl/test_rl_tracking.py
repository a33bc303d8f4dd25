"""Experiment tracking of RL and DPO runs: the metrics reach TensorBoard through accelerate's tracker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignloop.rl.config import RLConfig
from alignloop.rl.trainer import train_rl

REWARDS = Path(__file__).parent / "rewards_for_tests.py"


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard" / "alignloop"))  # the config's hparams sit below it
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_rl_metrics_reach_tensorboard_as_well_as_metrics_jsonl(tiny_lm: Path, prompts_file: Path, tmp_path: Path):
    pytest.importorskip("tensorboard")
    config = RLConfig.model_validate(
        dict(
            policy=str(tiny_lm), reward_model=f"{REWARDS}:space_fraction", prompts=str(prompts_file),
            output=str(tmp_path / "rl"), batch_size=4, max_new_tokens=4, max_steps=3, save_every=100,
            report_to="tensorboard",
        )
    )  # fmt: skip
    result = train_rl(config)

    scalars = read_scalars(result.run_dir)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [step for step, _ in scalars["ppo/reward_mean"]] == [1, 2, 3]
    assert [v for _, v in scalars["ppo/reward_mean"]] == pytest.approx([r["ppo/reward_mean"] for r in records])
    assert "ppo/kl" in scalars and "time/step" in scalars


def test_rl_without_a_tracker_writes_no_event_files(tiny_lm: Path, prompts_file: Path, tmp_path: Path) -> None:
    config = RLConfig.model_validate(
        dict(
            policy=str(tiny_lm), reward_model=f"{REWARDS}:space_fraction", prompts=str(prompts_file),
            output=str(tmp_path / "rl"), batch_size=4, max_new_tokens=4, max_steps=1, save_every=100,
        )
    )  # fmt: skip
    result = train_rl(config)
    assert not (result.run_dir / "tensorboard").exists()


def test_dpo_metrics_reach_tensorboard(tiny_lm: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from alignloop.records import Comparison
    from alignloop.rl.dpo import train_dpo
    from alignloop.rl.dpo_config import DPOConfig

    pairs = [Comparison(f"Question {i}", "a kind answer", "a rude answer") for i in range(8)]
    config = DPOConfig(
        policy=str(tiny_lm), output=str(tmp_path / "dpo"), batch_size=4, max_steps=2, eval_fraction=0.0,
        report_to="tensorboard",
    )  # fmt: skip
    result = train_dpo(config, pairs=pairs)
    scalars = read_scalars(result.run_dir)
    assert [step for step, _ in scalars["dpo/loss"]] == [1, 2]
