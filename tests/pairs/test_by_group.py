"""Pairs per labeler group: each group's consensus from its own labelers, tagged with the group."""

from __future__ import annotations

import json

import numpy as np
import pytest
from consensus.builders import add_guideline, add_labelers, add_prompt, judge

from alignloop import api
from alignloop.errors import AlignloopError
from alignloop.pairs import build_pairs, read_pairs
from alignloop.project import open_project

N_PROMPTS, K = 8, 4


def _two_groups_and_a_misreader(handle) -> tuple[list[int], list[int], int, dict[int, tuple[list[int], list[int]]]]:
    """Seven labelers rank every prompt: three by taste A, three by an independent taste B, one by the
    opposite of A. Returns (group A, group B, misreader, prompt id → (A's order, B's order) of completion ids)."""
    ids = add_labelers(handle, [f"a{i}" for i in range(3)] + [f"b{i}" for i in range(3)] + ["misreader"])
    group_a, group_b, misreader = ids[:3], ids[3:6], ids[6]
    guideline = add_guideline(handle)
    rng = np.random.default_rng(0)
    orders = {}
    for p in range(N_PROMPTS):
        pid, cids = add_prompt(handle, f"prompt {p}", [f"answer {p}.{k}" for k in range(K)])
        a = [cids[i] for i in rng.permutation(K)]
        b = [cids[i] for i in rng.permutation(K)]
        orders[pid] = (a, b)
        for lid in ids:
            order = a if lid in group_a else b if lid in group_b else a[::-1]
            judge(handle, pid, lid, ranking=[[c] for c in order], guideline_id=guideline)
    return group_a, group_b, misreader, orders


def test_each_group_gets_the_pairs_its_own_labelers_agree_on(project_dir):
    with open_project(project_dir) as handle:
        group_a, group_b, misreader, orders = _two_groups_and_a_misreader(handle)
        pairs = build_pairs(handle, by_group=True)
        pooled = build_pairs(handle)
    assert {p.group for p in pairs} == {"1", "2"}
    assert all(p.group is None for p in pooled)
    for name, members, taste in (("1", group_a, 0), ("2", group_b, 1)):
        mine = [p for p in pairs if p.group == name]
        assert len(mine) == N_PROMPTS * K * (K - 1) // 2  # every pair of every prompt: the group is unanimous
        for p in mine:
            order = orders[p.provenance["prompt_id"]][taste]
            assert order.index(p.provenance["chosen_id"]) < order.index(p.provenance["rejected_id"])
            assert sorted(p.provenance["labeler_ids"]) == members  # the misreader and the other group left out
            assert p.agreement == 1.0
    assert misreader not in {lid for p in pairs for lid in p.provenance["labeler_ids"]}


def test_labelers_own_pairs_by_group_leave_out_labelers_in_no_group(project_dir):
    with open_project(project_dir) as handle:
        group_a, group_b, misreader, _ = _two_groups_and_a_misreader(handle)
        pairs = build_pairs(handle, source="labelers", by_group=True)
    by_labeler = {p.provenance["labeler_ids"][0]: p.group for p in pairs}
    assert by_labeler == {**dict.fromkeys(group_a, "1"), **dict.fromkeys(group_b, "2")}


def test_the_group_is_written_to_and_read_from_the_alignloop_format_only_when_set(project_dir, tmp_path):
    with open_project(project_dir) as handle:
        _two_groups_and_a_misreader(handle)
    out = tmp_path / "groups.jsonl"
    api.export_pairs(project_dir, out, by_group=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {row["group"] for row in rows} == {"1", "2"}
    assert [p.group for p in read_pairs(out)] == [row["group"] for row in rows]
    api.export_pairs(project_dir, tmp_path / "pooled.jsonl")
    assert all("group" not in json.loads(line) for line in (tmp_path / "pooled.jsonl").read_text().splitlines())


def test_pairs_by_group_are_refused_when_the_labelers_form_no_group(project_dir):
    with open_project(project_dir) as handle:
        a, b = add_labelers(handle, ["ann", "bob"])
        pid, (x, y) = add_prompt(handle, "prompt", ["one", "two"])
        judge(handle, pid, a, ranking=[[x], [y]], guideline_id=add_guideline(handle))
        judge(handle, pid, b, ranking=[[y], [x]])
        with pytest.raises(AlignloopError, match="no group"):
            build_pairs(handle, by_group=True)
