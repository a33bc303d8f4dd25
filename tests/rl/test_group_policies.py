"""A policy per labeler group: RL against one group's head of a per-group reward model trains that group's
LoRA adapter on the shared base, recorded as the group's; `evaluate --group` judges it against the pooled policy."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from alignloop import api
from alignloop.cli import app
from alignloop.errors import AlignloopError
from alignloop.project import init_project, open_project
from alignloop.records import Comparison
from alignloop.reward import RewardConfig, RewardModel, train_reward
from alignloop.rl.config import RLConfig
from alignloop.rl.trainer import train_rl
from alignloop.rounds import list_rounds

REWARDS = Path(__file__).parent / "rewards_for_tests.py"
JUDGE = f"{REWARDS}:space_fraction"
WORDS = "the a robot paints small kind rain day time idea".split()
TASTES = {"calm": "sea", "bright": "light"}  # each group prefers the answer that holds its own word


def two_tastes(n_prompts: int = 16) -> list[Comparison]:
    """Pairs of two labeler groups: the same answer ends with one group's word (chosen by it) or the other's."""
    rng = random.Random(0)
    pairs = []
    for group, word in TASTES.items():
        other = next(w for g, w in TASTES.items() if g != group)
        for p in range(n_prompts):
            body = " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))
            pairs.append(Comparison(f"question {p}", f"{body} {word}", f"{body} {other}", group=group))
    return pairs


@pytest.fixture(scope="module")
def grouped_rm(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = RewardConfig(
        backbone=str(tiny_encoder),
        output=str(tmp_path_factory.mktemp("rm") / "grouped"),
        epochs=2,
        batch_size=8,
        learning_rate=3e-3,
        per_group=True,
    )
    return train_reward(config, pairs=two_tastes()).run_dir


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from alignloop.store import Prompt

    directory = tmp_path_factory.mktemp("proj") / "proj"
    with init_project(directory, name="groups") as handle, handle.store.session() as s:
        for i, (text, split) in enumerate(
            [("Write about the sea.", "train"), ("Say something kind.", "train"), ("Describe the rain.", "test"),
             ("Name a colour.", "test")]
        ):  # fmt: skip
            s.add(Prompt(project_id=handle.project_id, text=text, text_hash=str(i), split=split))
    return directory


def rl_config(policy: Path, reward_model: Path, project: Path, **fields: object) -> RLConfig:
    base: dict[str, object] = dict(
        policy=str(policy), reward_model=str(reward_model), project=str(project),
        batch_size=4, max_new_tokens=4, max_steps=1, learning_rate=1e-2,
    )  # fmt: skip
    return RLConfig.model_validate({**base, **fields})


@pytest.fixture(scope="module")
def runs(tiny_lm: Path, grouped_rm: Path, encoder_reward_run: Path, project: Path) -> dict[str, Path]:
    """The pooled policy (against a pooled reward model) and one policy per group, all in the project;
    group "bright" through the command line."""
    pooled = train_rl(rl_config(tiny_lm, encoder_reward_run, project)).run_dir
    calm = train_rl(rl_config(tiny_lm, grouped_rm, project, group="calm")).run_dir
    result = CliRunner().invoke(
        app,
        ["train-rl", "--policy", str(tiny_lm), "--reward-model", str(grouped_rm), "--group", "bright",
         "--project", str(project), "--batch-size", "4", "--max-new-tokens", "4", "--max-steps", "1",
         "--learning-rate", "0.01"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return {"pooled": pooled, "calm": calm, "bright": project / "runs" / "ppo-3"}


def round_metrics(project: Path) -> dict:
    with open_project(project) as handle:
        return list_rounds(handle)[-1].metrics


def test_each_group_trains_its_own_adapter_on_the_shared_base(runs: dict[str, Path], tiny_lm: Path) -> None:
    adapters = {}
    for group in TASTES:
        model = runs[group] / "model"
        assert (model / "adapter_config.json").exists() and not (model / "config.json").exists()
        assert json.loads((model / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_lm)
        adapters[group] = load_file(model / "adapter_model.safetensors")
    calm, bright = adapters["calm"], adapters["bright"]
    assert calm.keys() == bright.keys()
    assert any(not torch.equal(calm[k], bright[k]) for k in calm), "the two groups' adapters are the same"


def test_a_group_run_is_labelled_with_its_group_everywhere_it_is_recorded(runs: dict[str, Path], project: Path) -> None:
    for group in TASTES:
        run = runs[group]
        assert yaml.safe_load((run / "config.yaml").read_text())["group"] == group
        assert json.loads((run / "summary.json").read_text())["group"] == group
        assert f"**Labeler group:** `{group}`" in (run / "model" / "README.md").read_text()
    assert "group" not in json.loads((runs["pooled"] / "summary.json").read_text())
    metrics = round_metrics(project)
    assert {g: metrics["groups"][g]["trained_policy"] for g in TASTES} == {g: str(runs[g] / "model") for g in TASTES}
    assert metrics["groups"]["calm"]["rl_run"] == str(runs["calm"])
    # The round's own notes stay the pooled run's: the loop continues from the pooled policy.
    assert metrics["rl_run"] == str(runs["pooled"])


def test_rollouts_are_rewarded_by_the_groups_own_head(runs: dict[str, Path], grouped_rm: Path) -> None:
    model = RewardModel.load(grouped_rm)
    for group in TASTES:
        samples = [json.loads(line) for line in (runs[group] / "samples.jsonl").read_text().splitlines()]
        prompts, completions = [s["prompt"] for s in samples], [s["completion"] for s in samples]
        logged = [s["reward"] for s in samples]
        assert logged == pytest.approx(model.score(prompts, completions, group=group), abs=1e-4)
        other = next(g for g in TASTES if g != group)
        assert logged != pytest.approx(model.score(prompts, completions, group=other), abs=1e-4)


@pytest.fixture(scope="module")
def evaluations(runs: dict[str, Path], grouped_rm: Path, project: Path, tmp_path_factory: pytest.TempPathFactory):
    """``evaluate --group`` of each group on the project's test prompts: "calm" through the API, "bright" through
    the command line; each compares the pooled policy with the group's own. Returns (report, saved JSON, output)."""
    out = tmp_path_factory.mktemp("eval")
    calm = api.evaluate(
        None, grouped_rm, project=project, group="calm", judge=JUDGE, max_new_tokens=3, output=out / "calm"
    )
    result = CliRunner().invoke(
        app,
        ["evaluate", "--group", "bright", "--reward-model", str(grouped_rm), "-p", str(project), "--judge", JUDGE,
         "--max-new-tokens", "3", "--output", str(out / "bright")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = {g: json.loads((out / g / "evaluation.json").read_text()) for g in TASTES}
    return calm, saved, result.output, out


def test_evaluate_group_compares_the_groups_policy_with_the_pooled_one(
    evaluations, runs: dict[str, Path], project: Path
) -> None:
    report, saved, _, out = evaluations
    for group in TASTES:
        assert saved[group]["group"] == group
        assert [m["model"] for m in saved[group]["models"]] == [
            str(runs["pooled"] / "model"),
            str(runs[group] / "model"),
        ]
        assert (
            saved[group]["models"][1]["judge_diff"] is not None and saved[group]["models"][1]["reward_diff"] is not None
        )
    assert report.group == "calm" and json.loads(json.dumps(report.to_json())) == saved["calm"]
    groups = round_metrics(project)["groups"]
    assert {g: groups[g]["evaluation"] for g in TASTES} == {g: str(out / g / "evaluation.json") for g in TASTES}
    assert "evaluation" not in round_metrics(project)  # the round's verdict stays the pooled policy's


def test_evaluate_group_scores_with_the_groups_head(evaluations) -> None:
    """The pooled policy's samples are the same in both evaluations (same seeds, same judge): only the
    head that scores them differs."""
    _, saved, _, _ = evaluations
    calm, bright = (saved[g]["models"][0] for g in ("calm", "bright"))
    assert calm["judge_mean"] == pytest.approx(bright["judge_mean"])
    assert calm["reward_mean"] != pytest.approx(bright["reward_mean"], abs=1e-4)


def test_evaluate_command_names_the_group(evaluations) -> None:
    assert "labeler group bright" in evaluations[2]


@pytest.mark.parametrize(
    ("reward", "group", "message"),
    [
        ("grouped", "stormy", "scores per labeler group \\(bright, calm\\) and it has no group 'stormy'"),
        ("grouped", None, "scores per labeler group \\(bright, calm\\) and no group was given"),
        ("pooled", "calm", "was not trained per labeler group, so it has no group 'calm'"),
        ("function", "calm", "names no reward-model run directory"),
    ],
)
def test_rl_refuses_a_group_the_reward_cannot_score_before_anything_is_written(
    reward: str,
    group: str | None,
    message: str,
    tiny_lm: Path,
    grouped_rm: Path,
    encoder_reward_run: Path,
    prompts_file: Path,
    tmp_path: Path,
) -> None:
    spec = {"grouped": str(grouped_rm), "pooled": str(encoder_reward_run), "function": JUDGE}[reward]
    config = RLConfig(
        policy=str(tiny_lm), reward_model=spec, prompts=str(prompts_file), output=str(tmp_path / "run"), group=group
    )
    with pytest.raises(AlignloopError, match=message):
        train_rl(config)
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_what_a_group_evaluation_cannot_use(
    grouped_rm: Path, encoder_reward_run: Path, tmp_path: Path
) -> None:
    from alignloop.errors import InputError

    empty = tmp_path / "empty"
    init_project(empty).close()
    with pytest.raises(AlignloopError, match="it has no group 'stormy'"):
        api.evaluate(None, grouped_rm, project=empty, group="stormy")
    with pytest.raises(AlignloopError, match="not trained per labeler group, so it has no group 'calm'"):
        api.evaluate(None, encoder_reward_run, project=empty, group="calm")
    with pytest.raises(AlignloopError, match="records no policy of labeler group 'calm'"):
        api.evaluate(None, grouped_rm, project=empty, group="calm")
    with pytest.raises(InputError, match="--models"):
        api.evaluate(None, encoder_reward_run, project=empty)


def test_the_curve_of_a_groups_run_is_scored_by_its_head_and_recorded_as_the_groups(
    runs: dict[str, Path], grouped_rm: Path, project: Path
) -> None:
    settings = dict(project=project, k=1, max_new_tokens=4, kl_budget=10.0)
    calm = api.curve(runs["calm"], grouped_rm, group="calm", **settings)
    assert calm.group == "calm" and [p.step for p in calm.points] == [0, 1]
    bright = api.curve(runs["calm"], grouped_rm, group="bright", output=runs["calm"] / "curve-bright", **settings)
    assert calm.points[0].reward_mean != pytest.approx(bright.points[0].reward_mean, abs=1e-4)  # same samples
    groups = round_metrics(project)["groups"]
    assert groups["calm"]["curve"] == str(runs["calm"] / "curve" / "curve.json")
    assert "curve" not in round_metrics(project)  # the round's own curve stays the pooled policy's
    with pytest.raises(AlignloopError, match="no group was given"):
        api.curve(runs["calm"], grouped_rm, **settings)
