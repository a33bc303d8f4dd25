"""The whole loop with tiny random models: the demo's artifacts, rounds, evaluation and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from alignloop import api
from alignloop.demo import DemoLoop, DemoResult, run_demo
from alignloop.demo_sizes import SIZES
from alignloop.errors import InputError
from alignloop.evaluate import mean_ci, wilson, win_rate
from alignloop.project import open_project
from alignloop.report import SECTIONS
from alignloop.store import Completion, Judgement, Labeler, Prompt, Round
from alignloop.verdict import reward_model_warnings

STAGES = [
    "project", "generate", "label", "consensus", "pairs", "reward model", "held-out reward model", "rl", "curve",
    "evaluate", "report",
]  # fmt: skip


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("loop") / "demo"
    run_demo(directory, size="tiny")
    return directory


def test_demo_runs_every_stage_in_order_and_times_it(demo_project: Path) -> None:
    record = json.loads((demo_project / "demo.json").read_text())
    assert list(record["stages"]) == [*STAGES, "total"]
    assert all(seconds >= 0 for seconds in record["stages"].values())
    names = {lab.name for lab in api.list_labelers(demo_project)}
    (first,) = record["facts"]["rounds"]
    assert len(first["label"]["misreaders"]) == 1 and first["label"]["noise"] > 0
    assert set(first["consensus"]["flagged"]) <= names
    assert record["facts"]["verdict"].lower().startswith(("better by", "worse by", "no detectable change by"))
    rm = first["reward"]
    about_the_reward_model = reward_model_warnings(rm["rm/eval_accuracy"], rm["rm/inter_labeler"])
    assert set(about_the_reward_model) <= set(record["facts"].get("warnings", []))
    (round_info,) = api.list_rounds(demo_project)
    assert round_info.reward_model == str(demo_project / "runs" / "reward-0")  # not the held-out model trained later
    assert round_info.metrics["holdout_reward_model"] == str(demo_project / "runs" / "holdout-reward-0")
    rl = yaml.safe_load((demo_project / "runs" / "rl-0" / "config.yaml").read_text())
    assert rl["reward_shaping"] == "par" and rl["reward_model"] == round_info.reward_model
    assert rl["algo"] == first["rl"]["algo"] == "grpo" and rl["k"] == SIZES["tiny"].rl_group
    tiny = SIZES["tiny"]
    assert rl["lora_targets"] == list(tiny.rl_lora_targets) and rl["grpo"]["kl_coef"] == tiny.rl_kl_coef


def test_the_demo_records_the_verdicts_warnings_beside_it(tmp_path: Path) -> None:
    from alignloop.demo import _record_verdict

    evaluation = {
        "prompts": 64, "judge": "bench/unseen_judges.py:no_repetition",
        "models": [
            {"model": "default", "reward_diff": None, "reward_diff_ci": None},
            {"model": "runs/rl-0/kept", "reward_diff": 0.21, "reward_diff_ci": [0.1, 0.3], "judge_diff": 0.002,
             "judge_diff_ci": [-0.032, 0.017], "judge_win_rate": 0.58, "judge_win_ci": [0.46, 0.69], "best_of": None},
            {"model": "best-of-4", "reward_diff": 0.62, "reward_diff_ci": [0.5, 0.7], "judge_diff": 0.06,
             "judge_diff_ci": [0.048, 0.071], "kl": 0.636, "best_of": 4},
        ],
    }  # fmt: skip
    (tmp_path / "runs" / "eval-0").mkdir(parents=True)
    (tmp_path / "runs" / "eval-0" / "evaluation.json").write_text(json.dumps(evaluation))
    result = DemoResult(project=tmp_path, report=tmp_path / "report.html")
    result.facts["rounds"] = [{"reward": {"rm/eval_accuracy": 0.55, "rm/inter_labeler": 0.76}}]
    _record_verdict(result)
    assert result.facts["verdict"].startswith("No detectable change by the judge")
    near_chance, far_below, best_of_n = result.facts["warnings"]
    assert "near chance" in near_chance and "below its ceiling" in far_below and best_of_n.startswith("Best-of-4")


def _expected_pick(round_facts: dict) -> int:
    """Where the held-out reward model peaks when the demo used it, else the best reward within the KL budget."""
    points = round_facts["curve"]["points"]
    if round_facts["holdout_reward"]["used"]:
        return max(points, key=lambda p: p["holdout_reward"])["step"]
    assert all(p["holdout_reward"] is None for p in points)
    return max([p for p in points if p["kl"] <= SIZES["tiny"].kl_budget], key=lambda p: p["reward"])["step"]


def test_demo_keeps_the_checkpoint_a_held_out_criterion_picks_and_compares_it_with_best_of_n(
    demo_project: Path,
) -> None:
    record = json.loads((demo_project / "demo.json").read_text())
    (first,) = record["facts"]["rounds"]
    steps = [p["step"] for p in first["curve"]["points"]]
    assert steps == list(range(SIZES["tiny"].rl_steps + 1))  # the base and every checkpoint
    curve = json.loads((demo_project / "runs" / "rl-0" / "curve" / "curve.json").read_text())
    assert (curve["prompts"], curve["samples_per_prompt"]) == (SIZES["tiny"].curve_prompts, SIZES["tiny"].curve_samples)
    assert first["curve"]["picked_step"] == _expected_pick(first)
    assert first["evaluate"]["best_of_n"]["n"] == SIZES["tiny"].best_of


def test_demo_pairs_are_consistent_with_the_labels(demo_project: Path) -> None:
    tiny = SIZES["tiny"]
    pairs = [json.loads(line) for line in (demo_project / "pairs" / "round-0.jsonl").read_text().splitlines()]
    handle = open_project(demo_project)
    with handle.store.session() as s:
        splits = {p.id: p.split for p in s.scalars(select(Prompt))}
        judged = set(s.scalars(select(Judgement.prompt_id).where(Judgement.kind == "ranking")))
        completions = s.scalar(select(func.count()).select_from(Completion))
    handle.close()
    assert completions == tiny.prompts * tiny.k
    assert 0 < len(pairs) <= tiny.prompts * tiny.k * (tiny.k - 1) // 2
    by_prompt: dict[int, int] = {}
    for pair in pairs:
        prompt_id = pair["provenance"]["prompt_id"]
        assert prompt_id in judged
        assert pair["split"] == splits[prompt_id]  # split by prompt, never by pair
        assert pair["chosen"] != pair["rejected"]
        by_prompt[prompt_id] = by_prompt.get(prompt_id, 0) + 1
    assert max(by_prompt.values()) <= tiny.k * (tiny.k - 1) // 2


def test_demo_records_its_artifacts_on_the_round(demo_project: Path) -> None:
    (first,) = [r for r in api.list_rounds(demo_project) if r.kind == "train"]
    assert Path(first.dataset).exists()
    assert (Path(first.reward_model) / "normalization.json").exists()
    assert (Path(first.metrics["trained_policy"]) / "config.json").exists()
    evaluation = json.loads(Path(first.metrics["evaluation"]).read_text())
    assert [m["model"] for m in evaluation["models"]][1] == first.metrics["trained_policy"]
    assert evaluation["models"][0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the reference against itself


def test_report_is_one_self_contained_file_with_every_section(demo_project: Path) -> None:
    page = (demo_project / "report.html").read_text()
    for section in SECTIONS:
        assert f">{section}</h2>" in page
    assert "data:image/png;base64," in page
    assert 'src="http' not in page and 'href="http' not in page
    assert "τ vs others" in page  # the labeler-quality table
    rebuilt = api.report(demo_project, out=demo_project / "again.html")
    assert rebuilt.read_text().count("<h2") == page.count("<h2")


def test_next_round_samples_fresh_prompts_from_the_trained_policy(demo_project: Path) -> None:
    info, result = api.next_round(demo_project, prompts=3, test_prompts=2, k=2, max_new_tokens=4)
    trained = [r for r in api.list_rounds(demo_project) if r.kind == "train"][0].metrics["trained_policy"]
    assert (info.index, info.policy) == (1, trained)
    assert (result.prompts, result.generated, result.round_index) == (5, 10, 1)
    handle = open_project(demo_project)
    with handle.store.session() as s:
        rounds = {r.index: r.id for r in s.scalars(select(Round))}
        old = set(s.scalars(select(Completion.prompt_id).where(Completion.round_id == rounds[0])))
        new = list(s.scalars(select(Completion).where(Completion.round_id == rounds[1])))
        splits = [s.get(Prompt, c.prompt_id).split for c in new if c.sample_index == 0]
    handle.close()
    assert not old & {c.prompt_id for c in new}
    assert {c.model for c in new} == {trained}
    assert sorted(splits) == ["test", "test", "train", "train", "train"]
    with pytest.raises(InputError) as refused:
        api.next_round(demo_project, test_prompts=-1)
    assert refused.value.field == "--test-prompts"


def test_a_later_round_without_fresh_test_labels_picks_by_the_kl_budget(tmp_path: Path) -> None:
    result = DemoResult(project=tmp_path, report=tmp_path / "report.html", facts={"rounds": []})
    loop = DemoLoop(tmp_path, SIZES["tiny"], judge="j", seed=0, human=False, host="127.0.0.1", port=0, result=result)
    loop.holdout_model = str(tmp_path / "runs" / "holdout-reward-0")  # the first round's, of older answers
    result.facts["rounds"] = [{"round": 1, "pairs": {"test": 40}}, {"round": 2, "pairs": {"test": 40}}]
    loop.round = 1
    loop.holdout_reward()
    assert loop.holdout_model is None
    assert result.facts["rounds"][1]["holdout_reward"] == {
        "used": False,
        "why": "no labelled test-split prompts this round",
    }


def test_blind_human_evaluation_reports_the_win_rate(demo_project: Path) -> None:
    from alignloop.labeling.client import LabelingClient
    from alignloop.labeling.server import start_server

    (first,) = [r for r in api.list_rounds(demo_project) if r.index == 0]
    before, after = first.policy, first.metrics["trained_policy"]
    index, n = api.eval_human(demo_project, [before, after], prompts=3, max_new_tokens=4)
    server = start_server(demo_project)
    try:
        invite = api.add_labeler(demo_project, "evaluator", url=server.url)
        client = LabelingClient(server.url)
        client.accept_invite(invite, "a long enough password 1")
        handle = open_project(demo_project)
        with handle.store.session() as s:
            eval_round = s.scalars(select(Round).where(Round.index == index)).one()
            completions = list(s.scalars(select(Completion).where(Completion.round_id == eval_round.id)))
        handle.close()
        model_of = {c.id: c.model for c in completions}
        seeds_of: dict[int, set[int]] = {}
        for c in completions:
            seeds_of.setdefault(c.prompt_id, set()).add(c.seed)
        # both models answer a prompt from one seed, and each prompt has its own
        assert all(len(seeds) == 1 for seeds in seeds_of.values())
        assert len(set().union(*seeds_of.values())) == n
        judged = 0
        while (task := client.next_task()) is not None:
            ids = [c["id"] for c in task["completions"]]
            if set(ids) <= set(model_of):
                assert all(set(c) <= {"id", "text"} for c in task["completions"])  # no model names shown
                after_first = sorted(ids, key=lambda cid: model_of[cid] != after)
                client.submit_ranking(task["assignment_id"], [[cid] for cid in after_first])
                judged += 1
            else:
                client.skip(task["assignment_id"], "not part of this test")
        client.close()
    finally:
        server.stop()
    result = api.eval_human_result(demo_project)
    assert (result.round_index, result.judgements, result.prompts) == (index, judged, n)
    assert result.win_rate_b == 1.0 and result.ci[0] > 0.3


def test_wilson_interval_on_known_values() -> None:
    low, high = wilson(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson(0, 0) == (0.0, 1.0)


def test_win_rate_counts_ties_as_half() -> None:
    rate, (low, high) = win_rate([1.0, 2.0, 3.0, 0.0], [0.5, 2.0, 4.0, -1.0])
    assert rate == pytest.approx(2.5 / 4)
    assert low < rate < high


def test_mean_ci_uses_the_t_quantile() -> None:
    mean, (low, high) = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302653 * 1.0 / 3**0.5, rel=1e-5)


def test_demo_refuses_an_existing_project_without_overwrite(demo_project: Path) -> None:
    from alignloop.errors import AlignloopError

    with pytest.raises(AlignloopError, match="--overwrite"):
        run_demo(demo_project, size="tiny")
    handle = open_project(demo_project)
    with handle.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Labeler)) >= 5
    handle.close()


def test_a_second_round_samples_from_the_kept_policy_and_retrains_on_both_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alignloop.demo

    monkeypatch.setattr(alignloop.demo, "HOLDOUT_MIN_ACCURACY", 0.0)  # tiny models: use the held-out model anyway
    result = run_demo(tmp_path / "two", size="tiny", rounds=2, judge="alignloop.judges:concise", seed=1)
    first, second = result.facts["rounds"]
    # each round's held-out model learns the test prompts that round sampled from the kept policy
    assert first["holdout_reward"]["used"] and second["holdout_reward"]["used"]
    assert second["holdout_reward"]["accuracy"] is not None
    assert (tmp_path / "two" / "runs" / "holdout-reward-1" / "model").is_dir()
    for facts in (first, second):
        assert facts["curve"]["picked_step"] == _expected_pick(first | {"curve": facts["curve"]})
        assert all(p["holdout_reward"] is not None for p in facts["curve"]["points"])
    assert second["generate"]["policy"] == str(tmp_path / "two" / "runs" / "rl-0" / "kept")
    fresh = SIZES["tiny"].round_prompts + SIZES["tiny"].round_test_prompts
    assert second["generate"]["completions"] == fresh * SIZES["tiny"].k
    assert second["pairs"]["pairs"] > first["pairs"]["pairs"]  # the reward model sees every round's pairs
    assert "rl (round 2)" in result.stages and "evaluate (round 2)" in result.stages
    rounds = [r for r in api.list_rounds(tmp_path / "two") if r.kind == "train"]
    assert [r.policy for r in rounds][1] == second["generate"]["policy"]
