"""project_consensus: reading live judgements from the store."""

from __future__ import annotations

import math

import pytest

from alignloop.consensus.report import project_consensus
from alignloop.project import open_project
from consensus.builders import add_guideline, add_labelers, add_prompt, judge


@pytest.fixture
def handle(project_dir):
    h = open_project(project_dir)
    yield h
    h.close()


def test_consensus_follows_the_majority_and_reports_agreement(handle):
    a, b, c = add_labelers(handle, ["ann", "bob", "cid"])
    g = add_guideline(handle, 2)
    pid, (x, y, z) = add_prompt(handle, "Say hi", ["hi", "hello", "yo"])
    judge(handle, pid, a, ranking=[[y], [x], [z]], guideline_id=g)
    judge(handle, pid, b, ranking=[[y], [x], [z]], guideline_id=g)
    judge(handle, pid, c, ranking=[[x], [y], [z]], guideline_id=g)
    report = project_consensus(handle)
    (prompt,) = report.prompts
    assert prompt.ranking == [[y], [x], [z]]
    assert prompt.n_labelers == 3
    assert prompt.guideline_version == 2
    assert 0 < prompt.kendall_w < 1
    assert {q.name for q in report.labelers} == {"ann", "bob", "cid"}
    assert report.pairwise_agreement == pytest.approx(7 / 9)


def test_a_correction_replaces_the_judgement_it_supersedes(handle):
    a, b = add_labelers(handle, ["ann", "bob"])
    pid, (x, y) = add_prompt(handle, "p", ["one", "two"])
    first = judge(handle, pid, a, ranking=[[x], [y]])
    judge(handle, pid, a, ranking=[[y], [x]], supersedes=first)
    judge(handle, pid, b, ranking=[[y], [x]])
    (prompt,) = project_consensus(handle).prompts
    assert prompt.n_labelers == 2
    assert prompt.kendall_w == pytest.approx(1.0)
    assert prompt.ranking == [[y], [x]]


def test_skips_are_ignored(handle):
    a, b = add_labelers(handle, ["ann", "bob"])
    pid, (x, y) = add_prompt(handle, "p", ["one", "two"])
    judge(handle, pid, a, ranking=[[x], [y]])
    judge(handle, pid, b, skip="cannot judge")
    (prompt,) = project_consensus(handle).prompts
    assert prompt.n_labelers == 1
    assert math.isnan(prompt.kendall_w)


def test_an_unusable_flag_puts_the_completion_last(handle):
    a, b = add_labelers(handle, ["ann", "bob"])
    pid, (x, y, z) = add_prompt(handle, "p", ["one", "two", "three"])
    judge(handle, pid, a, ranking=[[x], [y], [z]], unusable={x: "harmful"})
    judge(handle, pid, b, ranking=[[x], [z], [y]])
    (prompt,) = project_consensus(handle).prompts
    assert prompt.ranking[-1] == [x]
    assert prompt.unusable == [x]


def test_thumbs_become_a_majority_vote(handle):
    a, b, c = add_labelers(handle, ["ann", "bob", "cid"])
    pid, (x, y, z) = add_prompt(handle, "p", ["one", "two", "three"])
    judge(handle, pid, a, thumbs={x: 1, y: -1, z: 1})
    judge(handle, pid, b, thumbs={x: 1, y: -1, z: -1})
    judge(handle, pid, c, thumbs={x: 1, y: 1, z: -1})
    (prompt,) = project_consensus(handle).prompts
    assert prompt.thumbs == {x: 1, y: -1, z: -1}
    assert prompt.ranking[0] == [x]


def test_position_bias_counts_the_first_shown_completion_in_the_top_tier(handle):
    a, b = add_labelers(handle, ["ann", "bob"])
    for i in range(6):
        pid, (x, y, z) = add_prompt(handle, f"p{i}", ["one", "two", "three"])
        judge(handle, pid, a, ranking=[[z], [x], [y]], display_order=[z, x, y])
        judge(handle, pid, b, ranking=[[x], [y], [z]], display_order=[y, x, z])
    report = project_consensus(handle)
    bias = {q.name: q.position_bias for q in report.labelers}
    assert bias == {"ann": 1.0, "bob": 0.0}
    ann = next(q for q in report.labelers if q.name == "ann")
    assert ann.flagged and "first-shown" in ann.reason


def test_position_bias_expects_the_first_shown_completion_in_a_level_top_tier_that_often(handle):
    """Display order is random, so a labeler who places three of four answers level at the top has the
    first-shown one there in three tasks of four by chance: not a bias. One who always puts whichever
    answer came first alone at the top is biased."""
    ann, bob = add_labelers(handle, ["ann", "bob"])
    for i in range(12):
        pid, ids = add_prompt(handle, f"p{i}", ["one", "two", "three", "four"])
        shown = ids[i % 4 :] + ids[: i % 4]
        judge(handle, pid, ann, ranking=[ids[:3], ids[3:]], display_order=shown)
        judge(handle, pid, bob, ranking=[[shown[0]], shown[1:]], display_order=shown)
    report = project_consensus(handle)
    quality = {q.name: q for q in report.labelers}
    assert quality["ann"].position_bias == pytest.approx(0.75)
    assert "first-shown" not in quality["ann"].reason
    assert quality["bob"].position_bias == 1.0
    assert "first-shown" in quality["bob"].reason
