"""Experiment tracking of a reward run: the metrics reach TensorBoard through accelerate's tracker."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignloop.errors import AlignloopError
from alignloop.reward import RewardConfig, train_reward
from alignloop.runs import RunDir


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard holds for the run: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard" / "alignloop"))  # the config's hparams sit below it
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_reward_metrics_reach_tensorboard_as_well_as_metrics_jsonl(tiny_encoder: Path, tmp_path: Path, make_pairs):
    pytest.importorskip("tensorboard")
    config = RewardConfig(
        backbone=str(tiny_encoder),
        output=str(tmp_path / "run"),
        epochs=2,
        batch_size=8,
        eval_fraction=0.25,
        report_to="tensorboard",
    )
    result = train_reward(config, pairs=make_pairs(n_prompts=20, per_prompt=2))

    scalars = read_scalars(result.run_dir)
    history = RunDir(result.run_dir).read_metrics()
    logged = [(m["step"], m["rm/loss"]) for m in history if "rm/loss" in m]
    assert [step for step, _ in scalars["rm/loss"]] == [step for step, _ in logged]
    assert [value for _, value in scalars["rm/loss"]] == pytest.approx([value for _, value in logged], rel=1e-6)
    assert len(scalars["rm/eval_accuracy"]) == 2  # one evaluation per epoch
    assert "step" not in scalars


def test_a_tracker_whose_package_is_missing_is_refused_before_training(tiny_encoder: Path, tmp_path: Path, make_pairs):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    config = RewardConfig(backbone=str(tiny_encoder), output=str(tmp_path / "run"), report_to="wandb")
    with pytest.raises(AlignloopError, match="pip install wandb"):
        train_reward(config, pairs=make_pairs(n_prompts=4, per_prompt=1))
    assert not (tmp_path / "run").exists()


def test_an_unknown_tracker_is_a_config_error(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        RewardConfig(report_to="neptune")
