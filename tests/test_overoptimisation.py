"""The over-optimisation curve over a tiny RL run's checkpoints, and a checkpoint pick that never reads the judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignloop.overoptimisation import (
    Candidate,
    CurvePoint,
    checkpoint_curve,
    judge_peak,
    select_checkpoint,
    write_curve,
)
from alignloop.rl.config import RLConfig
from alignloop.rl.trainer import train_rl

REWARDS = Path(__file__).parent / "rl" / "rewards_for_tests.py"
CONVERSATIONS = [[{"role": "user", "content": text}] for text in ("Say something kind.", "Explain the rain.")]


def point(step: int, kl: float, reward: float, judge: float, holdout: float | None = None) -> CurvePoint:
    return CurvePoint(step, kl, reward, (reward, reward), judge_mean=judge, holdout_reward_mean=holdout)


# The proxy keeps rising with KL; the judge (gold) peaks early at step 10; the held-out RM at step 20.
OVEROPTIMISED = [
    point(0, 0.0, 0.0, 0.10, holdout=0.0),
    point(10, 1.0, 0.5, 0.40, holdout=0.3),
    point(20, 2.5, 0.9, 0.30, holdout=0.5),
    point(30, 6.0, 1.4, -0.20, holdout=0.2),
]


def candidates(points: list[CurvePoint]) -> list[Candidate]:
    return [Candidate(p.step, p.kl, p.reward_mean, p.holdout_reward_mean) for p in points]


def test_kl_budget_picks_the_best_reward_within_the_budget_whatever_the_judge_says() -> None:
    assert select_checkpoint(candidates(OVEROPTIMISED), kl_budget=3.0)["kl_budget"] == 20
    assert select_checkpoint(candidates(OVEROPTIMISED), kl_budget=100.0)["kl_budget"] == 30
    assert judge_peak(OVEROPTIMISED) == 10  # recorded beside the picks, never used by them


def test_held_out_reward_model_picks_its_own_peak() -> None:
    assert select_checkpoint(candidates(OVEROPTIMISED)) == {"holdout_reward_model": 20}


def test_held_out_reward_model_never_picks_a_checkpoint_that_more_kl_made_worse_by_the_proxy() -> None:
    # The proxy flat from step 16 to 24 while the KL nearly doubles; the held-out model, sharing its blind spot,
    # still rises: step 24 is dominated (more KL, lower proxy) and the pick is 16.
    hacked = [
        point(0, 0.0, 0.18, 0.43, holdout=-0.02),
        point(8, 2.0, 0.53, 0.53, holdout=0.17),
        point(16, 7.1, 1.267, 0.65, holdout=0.57),
        point(24, 12.6, 1.264, 0.32, holdout=0.63),
    ]
    assert select_checkpoint(candidates(hacked)) == {"holdout_reward_model": 16}
    below_base = [point(0, 0.0, 0.2, 0.0, holdout=0.0), point(8, 1.0, 0.1, 0.0, holdout=0.5)]
    assert select_checkpoint(candidates(below_base)) == {"holdout_reward_model": 0}


def test_the_pick_does_not_change_when_only_the_judge_changes() -> None:
    flipped = [point(p.step, p.kl, p.reward_mean, -(p.judge_mean or 0), p.holdout_reward_mean) for p in OVEROPTIMISED]
    assert judge_peak(flipped) != judge_peak(OVEROPTIMISED)
    assert select_checkpoint(candidates(flipped), kl_budget=3.0) == select_checkpoint(
        candidates(OVEROPTIMISED), kl_budget=3.0
    )


def test_a_budget_no_checkpoint_meets_picks_nothing() -> None:
    assert select_checkpoint(candidates(OVEROPTIMISED[1:]), kl_budget=0.5) == {
        "kl_budget": None,
        "holdout_reward_model": 20,
    }


def tiny_rl_run(policy: Path, directory: Path, **settings: object) -> Path:
    """A tiny RL run on ``CONVERSATIONS``' prompts with a checkpoint every step; ``settings`` add to these."""
    prompts = directory / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": c[0]["content"]}) + "\n" for c in CONVERSATIONS))
    config = RLConfig.model_validate(
        dict(
            policy=str(policy), reward_model=f"{REWARDS}:space_fraction", prompts=str(prompts),
            output=str(directory / "run"), batch_size=2, max_new_tokens=4, save_every=1, sample_every=10,
            learning_rate=1e-2,
        ) | settings
    )  # fmt: skip
    return train_rl(config).run_dir


@pytest.fixture(scope="module")
def tiny_run(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-step GRPO run with LoRA and a checkpoint every step (the run keeps the last two)."""
    return tiny_rl_run(tiny_lm, tmp_path_factory.mktemp("curve-run"), algo="grpo", k=2, max_steps=3)


def test_curve_over_a_tiny_rl_run_evaluates_the_base_and_each_checkpoint(
    tiny_run: Path, encoder_reward_run: Path, decoder_reward_run: Path, tmp_path: Path
) -> None:
    curve = checkpoint_curve(
        tiny_run,
        encoder_reward_run,
        CONVERSATIONS,
        judge="alignloop.judges:length",
        holdout_reward_model=decoder_reward_run,
        kl_budget=1e9,
        k=2,
        max_new_tokens=4,
    )
    steps = [p.step for p in curve.points]
    assert steps == [0, 2, 3]  # the base policy, then the checkpoints the run kept
    assert curve.points[0].kl == 0.0  # the starting policy is the reference
    assert all(abs(p.kl) > 1e-3 for p in curve.points[1:]), curve.points  # each checkpoint's own weights
    assert all(p.judge_mean is not None and p.holdout_reward_mean is not None for p in curve.points)
    assert curve.picks["kl_budget"] == max(curve.points, key=lambda p: p.reward_mean).step
    assert curve.picks["holdout_reward_model"] in steps and curve.judge_peak in steps
    path = write_curve(curve, tmp_path / "curve")
    saved = json.loads(path.read_text())
    assert [p["step"] for p in saved["points"]] == steps and "sqrt_kl" in saved["points"][0]
    assert (tmp_path / "curve" / "overoptimisation.png").stat().st_size > 1000


def test_curve_command_writes_the_curve_and_prints_the_picks(
    tiny_run: Path, encoder_reward_run: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from alignloop.cli import app

    result = CliRunner().invoke(
        app,
        [
            "curve", str(tiny_run), "--reward-model", str(encoder_reward_run),
            "--prompts", str(tiny_run.parent / "prompts.jsonl"), "--kl-budget", "0.5", "--max-new-tokens", "3",
            "-k", "2", "--output", str(tmp_path / "out"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pick by kl budget" in result.output
    saved = json.loads((tmp_path / "out" / "curve.json").read_text())
    assert saved["kl_budget"] == 0.5 and saved["samples_per_prompt"] == 2


def test_the_last_checkpoint_is_exported_as_links_to_the_merged_final_model_with_the_same_weights(
    tiny_lm: Path, tmp_path: Path
) -> None:
    import os

    from safetensors.torch import load_file

    from alignloop.overoptimisation import export_checkpoint

    run = tiny_rl_run(tiny_lm, tmp_path, algo="ppo", max_steps=2, keep_checkpoints=0, merge_lora=True)
    final = run / "model" / "model.safetensors"
    kept = export_checkpoint(run, 2, tmp_path / "kept")
    assert os.path.samefile(kept / "model.safetensors", final)
    assert not (kept / "value_head.safetensors").exists() and (kept / "config.json").exists()
    earlier = export_checkpoint(run, 1, tmp_path / "step-1")
    assert not os.path.samefile(earlier / "model.safetensors", final)
    # what the link stands for: the last checkpoint, merged, is the final model
    (run / "summary.json").rename(run / "summary.moved")  # no summary: written from the checkpoint
    written = export_checkpoint(run, 2, tmp_path / "written")
    (run / "summary.moved").rename(run / "summary.json")
    assert not os.path.samefile(written / "model.safetensors", final)
    ours, theirs, step_1 = (load_file(f / "model.safetensors") for f in (run / "model", written, earlier))
    assert ours.keys() == theirs.keys()
    assert all((ours[k] == theirs[k]).all() for k in ours)
    assert any(not (ours[k] == step_1[k]).all() for k in ours)
    # another pick into the linked directory is written apart: the final model stays as it was
    export_checkpoint(run, 1, kept)
    assert not any(os.path.samefile(f, run / "model" / f.name) for f in kept.iterdir())  # config.json is rewritten
    assert all((load_file(final)[k] == v).all() for k, v in ours.items())
    assert all((load_file(kept / "model.safetensors")[k] == v).all() for k, v in step_1.items())
