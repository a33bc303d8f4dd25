"""The report's one-sentence verdict and its warnings, and where the report shows them."""

from __future__ import annotations

import json
from pathlib import Path

from alignloop.verdict import reward_model_warnings, verdict


def evaluation(reward_diff: tuple[float, float, float], judge_diff: tuple[float, float, float] | None) -> dict:
    """An evaluation.json of a base model, a trained one and a best-of-4 row; diffs as (mean, low, high)."""
    trained = {
        "model": "runs/rl/model", "reward_mean": 0.4, "reward_diff": reward_diff[0],
        "reward_diff_ci": list(reward_diff[1:]), "win_rate": 0.7, "win_ci": [0.55, 0.82], "best_of": None,
    }  # fmt: skip
    if judge_diff is not None:
        trained |= {
            "judge_diff": judge_diff[0], "judge_diff_ci": list(judge_diff[1:]),
            "judge_win_rate": 0.3, "judge_win_ci": [0.18, 0.45],
        }  # fmt: skip
    best = {"model": "best-of-4", "reward_diff": 9.0, "reward_diff_ci": [8.0, 10.0], "best_of": 4}
    return {
        "prompts": 40,
        "judge": "alignloop.judges:sentiment" if judge_diff else None,
        "models": [{"model": "default", "reward_diff": None, "reward_diff_ci": None}, trained, best],
    }


def test_better_by_the_judge_quotes_the_paired_interval_and_the_win_rate() -> None:
    found = verdict(evaluation((0.5, 0.3, 0.7), (0.2, 0.05, 0.35)))
    assert found is not None and found.outcome == "better"
    assert found.sentence.startswith("Better by the judge (alignloop.judges:sentiment): runs/rl/model against default")
    assert "+0.200 per prompt (95% CI +0.050 to +0.350)" in found.sentence
    assert "win rate of 30% (95% CI 18–45%)" in found.sentence
    assert found.warnings == []


def test_worse_by_the_judge_while_the_reward_model_rose_is_flagged_as_over_optimisation() -> None:
    found = verdict(evaluation((0.5, 0.3, 0.7), (-0.2, -0.35, -0.05)))
    assert found is not None and found.outcome == "worse"
    assert found.sentence.startswith("Worse by the judge")
    assert len(found.warnings) == 1 and "over-optimisation" in found.warnings[0]


def test_no_detectable_change_when_the_interval_holds_zero() -> None:
    found = verdict(evaluation((0.5, 0.3, 0.7), (0.02, -0.1, 0.14)))
    assert found is not None and found.outcome == "no detectable change"
    assert found.sentence.startswith("No detectable change by the judge")


def test_without_a_judge_the_reward_model_decides_and_best_of_n_is_not_the_trained_model() -> None:
    found = verdict(evaluation((-0.4, -0.6, -0.2), None))
    assert found is not None and found.outcome == "worse"
    assert "by the reward model: runs/rl/model" in found.sentence and "-0.400" in found.sentence


def test_best_of_n_better_by_the_judge_where_the_trained_policy_is_not_is_a_warning() -> None:
    unchanged = evaluation((0.2, 0.1, 0.3), (0.0, -0.02, 0.02))
    best = unchanged["models"][2]
    best |= {"judge_diff": 0.06, "judge_diff_ci": [0.048, 0.071], "kl": 0.636}
    found = verdict(unchanged)
    assert found is not None and found.outcome == "no detectable change"
    assert len(found.warnings) == 1
    assert found.warnings[0].startswith("Best-of-4 against the same reward model is better by the judge (+0.060")
    assert "at 0.64 nats" in found.warnings[0] and "round next" in found.warnings[0]
    best["judge_diff_ci"] = [-0.01, 0.05]  # best-of-4 not better either: nothing to say
    assert verdict(unchanged).warnings == []
    trained_better = evaluation((0.2, 0.1, 0.3), (0.1, 0.05, 0.15))
    trained_better["models"][2] |= {"judge_diff": 0.06, "judge_diff_ci": [0.048, 0.071], "kl": 0.636}
    assert verdict(trained_better).warnings == []


def test_a_single_model_has_no_verdict() -> None:
    assert verdict({"prompts": 3, "models": [{"model": "default", "reward_diff_ci": None}]}) is None


def test_a_reward_model_near_chance_or_far_below_its_ceiling_is_a_warning() -> None:
    assert reward_model_warnings(0.7, 0.8) == []
    (near,) = reward_model_warnings(0.55, 0.6)
    assert "near chance" in near and "0.55" in near
    (gap,) = reward_model_warnings(0.65, 0.85)
    assert "20 points short" in gap
    assert len(reward_model_warnings(0.5, 0.9)) == 2
    found = verdict(evaluation((0.5, 0.3, 0.7), (0.2, 0.05, 0.35)), rm_accuracy=0.52, rm_ceiling=0.6)
    assert found is not None and found.outcome == "better" and "near chance" in found.warnings[0]


def test_report_opens_with_the_verdict_and_shows_best_of_n_and_the_curve(project_dir: Path, tmp_path: Path) -> None:
    from alignloop.overoptimisation import Curve, CurvePoint, write_curve
    from alignloop.project import open_project
    from alignloop.report import build_report
    from alignloop.rounds import record

    reward_run = tmp_path / "rm"
    reward_run.mkdir()
    (reward_run / "metrics.jsonl").write_text(json.dumps({"rm/eval_accuracy": 0.55, "rm/ceiling": 0.8}) + "\n")
    report = evaluation((0.5, 0.3, 0.7), (0.2, 0.05, 0.35))
    report["reward_model"], report["samples_per_prompt"], report["best_of"] = str(reward_run), 2, 4
    for row in report["models"]:
        row.setdefault("reward_mean", 0.0)
        row |= {"reward_ci": [0, 0], "win_rate": row.get("win_rate"), "win_ci": row.get("win_ci")}
        row |= {"kl": 0.6, "length": 10.0}
    (tmp_path / "evaluation.json").write_text(json.dumps(report))
    points = [CurvePoint(0, 0.0, 0.0, (0.0, 0.0), 0.1), CurvePoint(5, 1.0, 0.5, (0.4, 0.6), 0.3)]
    curve = Curve("runs/rl", str(reward_run), "j:f", None, 1.5, 3, 1, points, {"kl_budget": 5}, judge_peak=5)
    curve_json = write_curve(curve, tmp_path / "curve")
    handle = open_project(project_dir)
    try:
        record(handle, reward_model=reward_run, evaluation=str(tmp_path / "evaluation.json"), curve=str(curve_json))
        page = build_report(handle).read_text()
    finally:
        handle.close()
    body = page[page.index("</h1>") :]
    assert body.index("class='verdict'>Better by the judge") < body.index("<h2")  # the verdict comes first
    assert "near chance" in body and "class='warn'" in body
    assert "best-of-4" in body and "analytic, upper bound" in body
    assert 'alt="over-optimisation curve"' in body and "where the judge peaked" in body
