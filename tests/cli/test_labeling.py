"""The consensus and pairs commands, end to end on a small judged project."""

from __future__ import annotations

import json

from consensus.builders import add_labelers, add_prompt, judge
from typer.testing import CliRunner

from alignloop.cli import app
from alignloop.errors import InputError
from alignloop.project import open_project

runner = CliRunner()


def _judged(project_dir, n=6):
    handle = open_project(project_dir)
    try:
        labelers = add_labelers(handle, ["ann", "bob", "cid"])
        for i in range(n):
            pid, (a, b, c) = add_prompt(handle, f"prompt {i}", ["x", "y", "z"], split="test" if i == 0 else "train")
            for n, lid in enumerate(labelers):
                shown = [[a, b, c], [b, c, a], [c, a, b]][(i + n) % 3]  # the app shuffles per labeler
                judge(
                    handle, pid, lid, ranking=[[a], [b], [c]], display_order=shown, comment="fine" if n == 0 else None
                )
    finally:
        handle.close()


def test_consensus_writes_summary_prompts_and_chart(project_dir):
    _judged(project_dir)
    result = runner.invoke(app, ["consensus", "--project", str(project_dir)])
    assert result.exit_code == 0, result.output
    assert "ann" in result.output and "Labeler quality" in result.output
    summary = json.loads((project_dir / "consensus" / "summary.json").read_text())
    assert summary["prompts"] == 6 and summary["krippendorff_alpha"] == 1.0
    assert (project_dir / "consensus" / "labelers.png").read_bytes()[:4] == b"\x89PNG"
    rows = (project_dir / "consensus" / "prompts.jsonl").read_text().splitlines()
    assert len(rows) == 6 and json.loads(rows[0])["kendall_w"] == 1.0


def test_export_then_import_pairs_round_trips(project_dir, tmp_path):
    _judged(project_dir)
    out = tmp_path / "trl.jsonl"
    result = runner.invoke(app, ["export-pairs", str(out), "--project", str(project_dir), "--format", "trl", "--chat"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 * 3
    assert rows[0]["prompt"][0]["role"] == "user"
    assert set(rows[0]) == {"prompt", "chosen", "rejected", "margin", "agreement"}  # agreement rides along
    test_only = tmp_path / "test.jsonl"
    runner.invoke(app, ["export-pairs", str(test_only), "-p", str(project_dir), "--split", "test"])
    assert len(test_only.read_text().splitlines()) == 3

    other = tmp_path / "other"
    runner.invoke(app, ["init", str(other)])
    result = runner.invoke(app, ["import-pairs", str(out), "--project", str(other)])
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.jsonl"
    runner.invoke(app, ["export-pairs", str(again), "-p", str(other), "--format", "hh"])
    assert len(again.read_text().splitlines()) == 18


def test_export_judgements_keeps_everything(project_dir, tmp_path):
    _judged(project_dir, n=2)
    out = tmp_path / "judgements.jsonl"
    result = runner.invoke(app, ["export-judgements", str(out), "--project", str(project_dir)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    first = rows[0]
    for key in (
        "display_order",
        "ranking",
        "unusable",
        "comment",
        "skip_reason",
        "guideline_version",
        "seconds_spent",
        "created_at",
        "completions",
    ):
        assert key in first
    assert first["comment"] == "fine" and first["seconds_spent"] == 12.5


def test_an_unknown_format_is_an_error_naming_the_option(project_dir, tmp_path):
    _judged(project_dir, n=1)
    result = runner.invoke(app, ["export-pairs", str(tmp_path / "x.jsonl"), "-p", str(project_dir), "--format", "csv"])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError) and "--format" in str(result.exception)


def test_exporting_from_a_project_without_pairs_says_what_to_do(project_dir, tmp_path):
    result = runner.invoke(app, ["export-pairs", str(tmp_path / "x.jsonl"), "-p", str(project_dir)])
    assert result.exit_code != 0
    assert "no pairs to export" in str(result.exception)
    assert not (tmp_path / "x.jsonl").exists()


def test_consensus_lists_groups_of_tastes_and_flags_only_the_misreader(project_dir):
    """Three labelers rank by one taste, three by another (tau 0 with the first), one reverses the first."""
    tastes = {"ann": [0, 1, 2, 3], "bob": [0, 1, 2, 3], "cid": [0, 1, 2, 3]}
    tastes |= {"dee": [1, 2, 3, 0], "eve": [1, 2, 3, 0], "fay": [1, 2, 3, 0], "gus": [3, 2, 1, 0]}
    handle = open_project(project_dir)
    try:
        labelers = dict(zip(tastes, add_labelers(handle, list(tastes))))
        for i in range(8):
            pid, ids = add_prompt(handle, f"prompt {i}", ["a", "b", "c", "d"])
            for n, (name, order) in enumerate(tastes.items()):
                shown = ids[(i + n) % 4 :] + ids[: (i + n) % 4]  # the app shuffles per labeler
                judge(handle, pid, labelers[name], ranking=[[ids[k]] for k in order], display_order=shown)
    finally:
        handle.close()
    result = runner.invoke(app, ["consensus", "--project", str(project_dir)])
    assert result.exit_code == 0, result.output
    assert "the labelers form 2 groups with different tastes" in result.output
    assert "ann, bob, cid" in result.output and "dee, eve, fay" in result.output
    summary = json.loads((project_dir / "consensus" / "summary.json").read_text())
    assert [g["names"] for g in summary["labeler_groups"]] == [["ann", "bob", "cid"], ["dee", "eve", "fay"]]
    flagged = {row["name"]: row["reason"] for row in summary["labelers"] if row["flagged"]}
    assert list(flagged) == ["gus"] and "agrees with no group" in flagged["gus"]
    assert {row["name"]: row["group"] for row in summary["labelers"]}["dee"] == 2
