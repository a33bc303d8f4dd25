"""`alignloop prioritize`: the prompts still needing labels get the reward model's uncertainty as a priority."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from alignloop import api
from alignloop.errors import AlignloopError, InputError
from alignloop.labeling.sample_data import add_sample_tasks
from alignloop.project import open_project
from alignloop.reward.model import RewardModel
from alignloop.reward.uncertainty import ranking_uncertainty
from alignloop.store import Assignment, Completion, Labeler, Prompt, PromptPriority


def _tasks(project_dir: Path, n_prompts: int = 4, kind: str = "train") -> tuple[int, list[int]]:
    handle = open_project(project_dir)
    try:
        return add_sample_tasks(handle.store, handle.project_id, n_prompts=n_prompts, k=3, kind=kind)
    finally:
        handle.close()


def _stored(project_dir: Path) -> dict[int, float]:
    handle = open_project(project_dir)
    try:
        with handle.store.session() as s:
            return {r.prompt_id: r.priority for r in s.scalars(select(PromptPriority))}
    finally:
        handle.close()


def _judge_fully(project_dir: Path, round_id: int, prompt_id: int) -> None:
    """Give the prompt `overlap` (3) submitted assignments."""
    handle = open_project(project_dir)
    try:
        with handle.store.session() as s:
            ids = [c for c in s.scalars(select(Completion.id).where(Completion.prompt_id == prompt_id))]
            for i in range(3):
                labeler = s.execute(insert(Labeler).values(name=f"l{i}").returning(Labeler.id)).scalar_one()
                s.add(
                    Assignment(
                        prompt_id=prompt_id,
                        round_id=round_id,
                        labeler_id=labeler,
                        task_type="ranking",
                        display_order=ids,
                        status="submitted",
                        lease_expires_at=datetime.now(timezone.utc) + timedelta(minutes=30),
                    )
                )
    finally:
        handle.close()


def _expected(project_dir: Path, run: Path, prompt_ids: list[int]) -> dict[int, float]:
    """Each prompt's uncertainty, recomputed from the reward model's raw scores."""
    handle = open_project(project_dir)
    try:
        with handle.store.session() as s:
            rows = {
                pid: (
                    s.get(Prompt, pid),
                    list(
                        s.scalars(
                            select(Completion.text).where(Completion.prompt_id == pid).order_by(Completion.sample_index)
                        )
                    ),
                )
                for pid in prompt_ids
            }
    finally:
        handle.close()
    model = RewardModel.load(run)
    return {
        pid: ranking_uncertainty(model.score([prompt.messages] * len(texts), texts, normalize=False))
        for pid, (prompt, texts) in rows.items()
    }


def test_every_prompt_still_needing_labels_gets_its_uncertainty(project_dir: Path, encoder_run: Path) -> None:
    round_id, prompts = _tasks(project_dir)
    _judge_fully(project_dir, round_id, prompts[0])
    result = api.prioritize(project_dir, encoder_run, top=2)
    assert (result.round_index, result.scored, result.assignment) == (0, 3, "least_judged")
    stored = _stored(project_dir)
    assert set(stored) == set(prompts[1:])  # the fully judged prompt is left out
    assert stored == pytest.approx(_expected(project_dir, encoder_run, prompts[1:]))
    assert [t.prompt_id for t in result.top] == sorted(stored, key=lambda pid: -stored[pid])[:2]
    assert all(0.0 <= value <= 1.0 for value in stored.values())


def test_running_again_replaces_the_rounds_priorities(project_dir: Path, encoder_run: Path) -> None:
    round_id, prompts = _tasks(project_dir)
    api.prioritize(project_dir, encoder_run)
    _judge_fully(project_dir, round_id, prompts[1])
    assert api.prioritize(project_dir, encoder_run).scored == 3
    assert set(_stored(project_dir)) == {prompts[0], prompts[2], prompts[3]}


def test_an_ensemble_of_identical_members_adds_no_disagreement(project_dir: Path, encoder_run: Path) -> None:
    _tasks(project_dir, n_prompts=2)
    api.prioritize(project_dir, encoder_run)
    single = _stored(project_dir)
    api.prioritize(project_dir, [encoder_run, encoder_run])
    assert _stored(project_dir) == pytest.approx(single)


def test_the_newest_training_round_is_the_default_and_others_are_chosen_by_index(
    project_dir: Path, encoder_run: Path
) -> None:
    _tasks(project_dir, n_prompts=2)
    _, newest = _tasks(project_dir, n_prompts=1)
    assert api.prioritize(project_dir, encoder_run).round_index == 1
    assert set(_stored(project_dir)) == set(newest)
    assert api.prioritize(project_dir, encoder_run, round_index=0).scored == 2


def test_what_cannot_be_prioritised_is_refused(project_dir: Path, encoder_run: Path, tmp_path: Path) -> None:
    with pytest.raises(AlignloopError, match="no round yet"):
        api.prioritize(project_dir, encoder_run)
    _tasks(project_dir, n_prompts=1)
    _tasks(project_dir, n_prompts=1, kind="eval")
    with pytest.raises(AlignloopError, match="evaluation round"):
        api.prioritize(project_dir, encoder_run, round_index=1)
    with pytest.raises(AlignloopError, match="no round 7"):
        api.prioritize(project_dir, encoder_run, round_index=7)
    with pytest.raises(InputError, match="--reward-model"):
        api.prioritize(project_dir, tmp_path / "missing-run")


def test_the_command_prints_the_count_and_the_top_prompts(project_dir: Path, encoder_run: Path) -> None:
    _tasks(project_dir, n_prompts=3)
    result = subprocess.run(
        [sys.executable, "-m", "alignloop", "prioritize", "-p", str(project_dir), "-r", str(encoder_run), "--top", "2"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "round 0: 3 prompts still needing labels were scored" in result.stderr
    assert "assignment: uncertainty" in " ".join(result.stderr.split())
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("question" in line for line in lines)


def test_a_fully_judged_round_scores_nothing_and_clears_its_priorities(project_dir: Path, encoder_run: Path) -> None:
    round_id, prompts = _tasks(project_dir, n_prompts=1)
    api.prioritize(project_dir, encoder_run)
    _judge_fully(project_dir, round_id, prompts[0])
    result = api.prioritize(project_dir, encoder_run)
    assert (result.scored, result.top) == (0, [])
    assert _stored(project_dir) == {}
