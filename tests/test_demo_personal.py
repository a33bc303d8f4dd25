"""`demo --personal` with tiny random models: two groups found, their feedback served and stored, a policy
and an evaluation per group by its own judge."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from alignloop.demo_personal import PERSONAL_SIZES, run_personal_demo
from alignloop.project import open_project
from alignloop.store import Judgement, Labeler, Round

TASTES = Path(__file__).parent / "tastes_for_tests.py"
JUDGES = {"a": f"{TASTES}:spaces", "b": f"{TASTES}:vowels"}


@pytest.fixture(scope="module")
def personal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("personal") / "demo"
    run_personal_demo(directory, size="tiny", judge=JUDGES["a"], second_judge=JUDGES["b"])
    return directory


def _facts(directory: Path) -> dict:
    return json.loads((directory / "demo.json").read_text())["facts"]


def test_each_taste_is_a_group_and_the_misreader_is_in_none(personal: Path) -> None:
    (first,) = _facts(personal)["rounds"]
    groups = {g["judge"]: g["members"] for g in first["groups"]}
    assert set(groups) == set(JUDGES.values())
    for taste, judge in JUDGES.items():
        assert groups[judge] and all(name.startswith(taste) for name in groups[judge])
    assert "m0-1" in first["consensus"]["flagged"]


def test_the_members_feedback_on_the_served_pooled_policy_is_stored_as_their_choices(personal: Path) -> None:
    (first,) = _facts(personal)["rounds"]
    members = {name for g in first["groups"] for name in g["members"]}
    assert first["usage"]["choices"] == len(members) * PERSONAL_SIZES["tiny"].usage_prompts
    with open_project(personal) as handle, handle.store.session() as s:
        rows = s.execute(
            select(Labeler.name, Judgement.kind, Round.policy)
            .join(Judgement, Judgement.labeler_id == Labeler.id)
            .join(Round, Round.id == Judgement.round_id)
            .where(Round.kind == "serve")
        ).all()
    assert len(rows) == first["usage"]["choices"]
    assert {name for name, _, _ in rows} == members
    assert {kind for _, kind, _ in rows} == {"pairwise"}
    assert len({policy for _, _, policy in rows}) == 1  # one model version served them all


def test_each_group_gets_an_adapter_and_an_evaluation_by_its_own_judge(personal: Path) -> None:
    facts = _facts(personal)
    assert [row["group"] for row in facts["personal"]] == [g["group"] for g in facts["rounds"][0]["groups"]]
    for row in facts["personal"]:
        adapter = personal / "runs" / f"rl-group-{row['group']}" / "model"
        assert (adapter / "adapter_config.json").exists()
        evaluation = json.loads((personal / "runs" / f"eval-group-{row['group']}" / "evaluation.json").read_text())
        assert evaluation["judge"] == row["judge"] and evaluation["group"] == row["group"]
        pooled, start, own = evaluation["models"]
        assert (pooled["judge_mean"], start["judge_mean"], own["judge_mean"]) == (
            row["judge_pooled"],
            row["judge_start"],
            row["judge_personal"],
        )
        low, high = row["personal_minus_pooled_ci"]
        assert low <= row["judge_personal"] - row["judge_pooled"] <= high


def test_the_report_shows_each_groups_policies_by_its_own_judge(personal: Path) -> None:
    page = (personal / "report.html").read_text()
    opening = page[: page.index('id="labels"')]
    for row in _facts(personal)["personal"]:
        assert f"Labeler group {row['group']}: {row['verdict']}" in html.unescape(opening)
    section = page[page.index('id="per-group-policies"') : page.index('id="over-optimisation"')]
    for row in _facts(personal)["personal"]:
        assert row["judge"] in section
        assert str(personal / "runs" / f"rl-group-{row['group']}" / "model") in section


def test_personal_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    def demo(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "alignloop", "demo", "--personal", "--tiny", "--dir", str(tmp_path / "d")]
        return subprocess.run([*command, *args], capture_output=True, text=True)

    rounds = demo("--rounds", "2")
    assert rounds.returncode != 0 and "--personal" in rounds.stderr
    same = demo("--judge", JUDGES["a"], "--second-judge", JUDGES["a"])
    assert same.returncode != 0 and "different tastes" in same.stderr
    assert not (tmp_path / "d").exists()
