"""A reward model with a score head per labeler group: trains, saves, loads and scores per group."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from alignloop.errors import AlignloopError
from alignloop.records import Comparison
from alignloop.reward import RewardConfig, RewardModel, train_reward

from .conftest import MARKER, marker_pairs


def opposed_groups(n_prompts: int = 20) -> list[Comparison]:
    """Group "likes" prefers the answer with the marker word, group "dislikes" the one without it."""
    likes = marker_pairs(n_prompts=n_prompts, per_prompt=2)
    dislikes = [replace(p, chosen=p.rejected, rejected=p.chosen, group="dislikes") for p in likes]
    return [replace(p, group="likes") for p in likes] + dislikes


@pytest.fixture(scope="module")
def grouped_run(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory):
    config = RewardConfig(
        backbone=str(tiny_encoder),
        output=str(tmp_path_factory.mktemp("rm") / "grouped"),
        epochs=3,
        batch_size=8,
        learning_rate=3e-3,
        eval_fraction=0.25,
        per_group=True,
    )
    return train_reward(config, pairs=opposed_groups())


def test_each_group_is_evaluated_on_its_own_held_out_pairs(grouped_run):
    m = grouped_run.metrics
    for group in ("likes", "dislikes"):
        assert 0.0 <= m[f"rm/eval_accuracy/{group}"] <= 1.0
        assert m[f"rm/eval_pairs/{group}"] == m["rm/eval_pairs"] / 2
    assert "rm/eval_accuracy" in m  # and over every group together


def test_the_heads_learn_opposite_preferences_on_one_backbone(grouped_run):
    model = RewardModel.load(grouped_run.run_dir)
    assert model.groups == ["dislikes", "likes"]
    prompts, answers = ["question: the sea"] * 2, [f"a {MARKER} day", "a plain day"]
    likes = model.score(prompts, answers, group="likes")
    dislikes = model.score(prompts, answers, group="dislikes")
    assert likes[0] > likes[1] and dislikes[0] < dislikes[1]
    norm = json.loads((grouped_run.run_dir / "normalization.json").read_text())
    assert set(norm["groups"]) == {"likes", "dislikes"}
    raw = model.score(prompts, answers, group="likes", normalize=False)
    mean, std = norm["groups"]["likes"]["mean"], norm["groups"]["likes"]["std"]
    assert likes == pytest.approx([(r - mean) / std for r in raw])


def test_a_file_is_scored_as_the_named_group_judges(grouped_run, tmp_path):
    from alignloop import api

    rows = [
        {"prompt": "question: the sea", "chosen": f"a {MARKER} day", "rejected": "a plain day"},
        {"prompt": "question: the sea", "completion": f"a {MARKER} day"},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    likes = api.score(grouped_run.run_dir, path, group="likes")
    dislikes = api.score(grouped_run.run_dir, path, group="dislikes")
    assert likes[0]["p_chosen"] > 0.5 > dislikes[0]["p_chosen"]
    model = RewardModel.load(grouped_run.run_dir)
    assert likes[1]["reward"] == pytest.approx(
        model.score([rows[1]["prompt"]], [rows[1]["completion"]], group="likes")[0], abs=1e-5
    )
    with pytest.raises(AlignloopError, match="no group was given"):
        api.score(grouped_run.run_dir, path)


def test_an_unknown_or_missing_group_is_refused_with_the_known_ones(grouped_run):
    model = RewardModel.load(grouped_run.run_dir)
    with pytest.raises(AlignloopError, match="dislikes, likes.*no group 'both'"):
        model.score(["q"], ["a"], group="both")
    with pytest.raises(AlignloopError, match="dislikes, likes.*no group was given"):
        model.score(["q"], ["a"])


def test_a_pooled_model_refuses_a_group(encoder_run):
    with pytest.raises(AlignloopError, match="not trained per labeler group"):
        RewardModel.load(encoder_run).score(["q"], ["a"], group="likes")


def test_per_group_training_refuses_pairs_without_a_group(tiny_encoder, tmp_path):
    config = RewardConfig(backbone=str(tiny_encoder), output=str(tmp_path / "rm"), per_group=True)
    with pytest.raises(AlignloopError, match="export-pairs --by-group"):
        train_reward(config, pairs=marker_pairs(n_prompts=4))


def test_pooled_training_ignores_the_group_and_is_unchanged(tiny_encoder, tmp_path):
    """The same pairs with and without a group train a pooled model to the same bytes."""
    pairs = marker_pairs(n_prompts=8, per_prompt=2)

    def run(name: str, pairs: list[Comparison]) -> Path:
        config = RewardConfig(
            backbone=str(tiny_encoder), output=str(tmp_path / name), epochs=1, batch_size=8, eval_fraction=0.25
        )
        return train_reward(config, pairs=pairs).run_dir

    plain = run("plain", pairs)
    tagged = run("tagged", [replace(p, group="likes") for p in pairs])
    for name in ("model/model.safetensors", "normalization.json"):
        assert (plain / name).read_bytes() == (tagged / name).read_bytes()
    assert not (plain / "model" / "group_heads.safetensors").exists()
    assert "groups" not in json.loads((plain / "model" / "alignloop_reward.json").read_text())
