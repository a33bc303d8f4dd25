"""Reward-model ensembles: members trained with seeds seed + i, saved beside the first, scored as the mean."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from alignloop.cli import app
from alignloop.config import load_config
from alignloop.reward import RewardConfig, RewardModel, RewardRunResult
from alignloop.reward.data import assign_test_split
from alignloop.reward.uncertainty import ranking_uncertainty
from alignloop.runs import RunDir

from .conftest import ENSEMBLE_SEED, marker_pairs


def _held_out() -> list:
    """The held-out pairs of ``ensemble_run``."""
    pairs = assign_test_split(marker_pairs(n_prompts=20, per_prompt=2), 0.25, ENSEMBLE_SEED)
    return [p for p in pairs if p.split == "test"]


def _accuracy(chosen: list[float], rejected: list[float]) -> float:
    return sum(c > r for c, r in zip(chosen, rejected)) / len(chosen)


def _alone(run_dir: Path, tmp_path: Path) -> RewardModel:
    """Member 0 of an ensemble run, loaded without the others (its folder and statistics copied)."""
    shutil.copytree(run_dir / "model", tmp_path / "member-0" / "model")
    shutil.copy(run_dir / "normalization.json", tmp_path / "member-0")
    return RewardModel.load(tmp_path / "member-0")


def test_an_ensemble_saves_member_0_as_an_ordinary_run_and_the_others_beside_it(ensemble_run: RewardRunResult) -> None:
    run = ensemble_run.run_dir
    assert json.loads((run / "ensemble.json").read_text()) == {"members": ["members/1"]}
    for member in (run, run / "members" / "1"):
        for name in ("model/config.json", "normalization.json", "metrics.jsonl", "config.yaml", "plots/accuracy.png"):
            assert (member / name).exists(), member / name
    assert load_config(RewardConfig, run / "config.yaml").ensemble == 2
    member = load_config(RewardConfig, run / "members" / "1" / "config.yaml")
    assert (member.seed, member.ensemble) == (ENSEMBLE_SEED + 1, 1)
    first, second = (json.loads((m / "normalization.json").read_text()) for m in (run, run / "members" / "1"))
    assert first["mean"] != second["mean"]  # another head and data order: another model


def test_an_ensemble_scores_the_mean_of_its_members_normalised_scores(
    ensemble_run: RewardRunResult, tmp_path: Path
) -> None:
    model = RewardModel.load(ensemble_run.run_dir)
    assert len(model.members) == 2
    pairs = marker_pairs(n_prompts=4, seed=7)
    prompts, texts = [p.prompt for p in pairs], [p.chosen for p in pairs]
    first = _alone(ensemble_run.run_dir, tmp_path).score(prompts, texts)
    second = RewardModel.load(ensemble_run.run_dir / "members" / "1").score(prompts, texts)
    assert first != pytest.approx(second, abs=1e-3)
    expected = [(a + b) / 2 for a, b in zip(first, second)]
    assert model.score(prompts, texts) == pytest.approx(expected, abs=1e-6)
    assert model.member_scores(prompts, texts) == [pytest.approx(first, abs=1e-6), pytest.approx(second, abs=1e-6)]
    # raw: the same mean on the members' average scale, so (raw - mean) / std gives it back
    assert model.mean == pytest.approx((model.members[0].mean + model.members[1].mean) / 2)
    raw = model.score(prompts, texts, normalize=False)
    assert [(r - model.mean) / model.std for r in raw] == pytest.approx(expected, abs=1e-6)


def test_the_runs_held_out_metrics_are_the_ensembles_and_each_members_accuracy_is_kept(
    ensemble_run: RewardRunResult, tmp_path: Path
) -> None:
    test = _held_out()
    prompts = [p.prompt for p in test]
    model = RewardModel.load(ensemble_run.run_dir)
    chosen = model.member_scores(prompts, [p.chosen for p in test])
    rejected = model.member_scores(prompts, [p.rejected for p in test])
    members = [_accuracy(c, r) for c, r in zip(chosen, rejected)]
    metrics = ensemble_run.metrics
    assert metrics["rm/ensemble"] == 2 and metrics["rm/eval_pairs"] == len(test)
    assert metrics["rm/eval_accuracy"] == pytest.approx(
        _accuracy(model.score(prompts, [p.chosen for p in test]), model.score(prompts, [p.rejected for p in test]))
    )
    assert ensemble_run.member_accuracy == pytest.approx(members)
    last = RunDir(ensemble_run.run_dir).read_metrics()[-1]  # what the report and the verdict read
    assert last["rm/member_accuracy"] == pytest.approx(members)
    for key in ("rm/eval_accuracy", "rm/eval_loss", "rm/ece", "rm/ceiling"):
        assert last[key] == metrics[key]
    # member 0 alone: the accuracy its own training logged for the model it kept
    own = [m for m in RunDir(ensemble_run.run_dir).read_metrics() if "rm/eval_loss" in m and "rm/ensemble" not in m]
    assert members[0] == pytest.approx(min(own, key=lambda m: m["rm/eval_loss"])["rm/eval_accuracy"])


def test_an_ensemble_runs_uncertainty_adds_its_members_disagreement(ensemble_run: RewardRunResult) -> None:
    model = RewardModel.load(ensemble_run.run_dir)
    pair = marker_pairs(n_prompts=1, seed=5)[0]
    texts = [pair.chosen, pair.rejected, pair.chosen + " today"]
    members = model.member_scores([pair.prompt] * 3, texts, normalize=False)  # (2, K)
    ensemble_alone = ranking_uncertainty(model.score([pair.prompt] * 3, texts, normalize=False))  # their mean
    assert ranking_uncertainty(members) > ensemble_alone  # members that differ add a positive spread
    # a wider disagreement about the same mean ranks the prompt higher
    mean = [sum(col) / 2 for col in zip(*members)]
    wider = [[m + 2 * (a - m) for a, m in zip(row, mean)] for row in members]
    assert ranking_uncertainty(wider) > ranking_uncertainty(members)


def test_prioritize_counts_an_ensemble_run_as_its_members(project_dir: Path, ensemble_run: RewardRunResult) -> None:
    from sqlalchemy import select

    from alignloop import api
    from alignloop.labeling.sample_data import add_sample_tasks
    from alignloop.project import open_project
    from alignloop.store import Completion, Prompt, PromptPriority

    handle = open_project(project_dir)
    try:
        add_sample_tasks(handle.store, handle.project_id, n_prompts=2, k=3)
        with handle.store.session() as s:
            prompts = {p.id: p.messages for p in s.scalars(select(Prompt))}
            texts = {
                pid: list(
                    s.scalars(
                        select(Completion.text).where(Completion.prompt_id == pid).order_by(Completion.sample_index)
                    )
                )
                for pid in prompts
            }
    finally:
        handle.close()
    api.prioritize(project_dir, ensemble_run.run_dir)
    model = RewardModel.load(ensemble_run.run_dir)
    handle = open_project(project_dir)
    try:
        with handle.store.session() as s:
            stored = {r.prompt_id: r.priority for r in s.scalars(select(PromptPriority))}
    finally:
        handle.close()
    expected = {
        pid: ranking_uncertainty(model.member_scores([prompts[pid]] * len(texts[pid]), texts[pid], normalize=False))
        for pid in texts
    }
    assert stored == pytest.approx(expected)


def test_a_single_model_run_has_no_members_and_scores_as_before(encoder_run: Path) -> None:
    assert not (encoder_run / "ensemble.json").exists() and not (encoder_run / "members").exists()
    model = RewardModel.load(encoder_run)
    assert len(model.members) == 1
    prompts, texts = ["Write a poem."] * 2, ["The sea is wonderful", "Waves"]
    raw = model.score(prompts, texts, normalize=False)
    member = model.members[0]
    assert model.score(prompts, texts) == [(r - member.mean) / member.std for r in raw]  # exactly
    assert model.member_scores(prompts, texts, normalize=False) == [raw]
    assert all("rm/ensemble" not in m for m in RunDir(encoder_run).read_metrics())


def test_the_command_trains_an_ensemble_and_shows_the_members(tiny_encoder: Path, pairs_file: Path, tmp_path: Path):
    out = tmp_path / "run"
    args = ["train-reward", "--pairs", str(pairs_file), "--backbone", str(tiny_encoder), "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--batch-size", "8", "--ensemble", "2"])
    assert result.exit_code == 0, result.output
    assert "ensemble of 2; members alone" in " ".join(result.output.split())
    assert (out / "members" / "1" / "model" / "config.json").exists()


def test_an_ensemble_of_no_models_is_refused(tiny_encoder: Path, pairs_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ensemble"):
        RewardConfig(ensemble=0)
    args = ["train-reward", "--pairs", str(pairs_file), "--backbone", str(tiny_encoder), "--ensemble", "0"]
    result = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--ensemble" in result.output  # out of its range: a usage error
    assert not (tmp_path / "run").exists()
