"""Bridges to Label Studio and Argilla: their files imported as labelers, rounds, completions and judgements
(all or nothing, idempotent), and the current round's open tasks exported in their import formats."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alignloop import api
from alignloop.errors import AlignloopError, InputError
from alignloop.labeling.sample_data import add_sample_tasks
from alignloop.project import open_project
from alignloop.store import Assignment, Completion, Judgement, Labeler, Prompt, Round

K = 4
GOOD = [0, 1, 2, 3]  # answer positions best first: the order both careful annotators agree on


def _annotator_order(annotator: int, task: int) -> list[int]:
    """Two careful annotators (one swaps a close pair now and then) and one who ranks backwards."""
    if annotator == 2:
        return GOOD[::-1]
    order = GOOD[:]
    if annotator == 1 and task % 3 == 0:
        order[2], order[3] = order[3], order[2]
    return order


def _label_studio_export(n_tasks: int = 12) -> list[dict]:
    tasks = []
    for t in range(n_tasks):
        shown = [(n + t) % K for n in range(K)]  # the tool's display order varies by task (no position bias)
        items = [{"id": f"a{n}", "title": f"Answer {n}", "body": f"Answer {n} to question {t}."} for n in shown]
        annotations = []
        for a in range(3):
            ranked = [f"a{n}" for n in _annotator_order(a, t)]
            annotations.append(
                {
                    "id": 100 * t + a,
                    "completed_by": {"id": a + 1, "email": f"annotator{a}@example.org"} if a else a + 1,
                    "result": [
                        {
                            "type": "ranker",
                            "from_name": "rank",
                            "to_name": "answers",
                            "value": {"ranker": {"rank": ranked}},
                        }
                    ],
                    "was_cancelled": False,
                    "lead_time": 12.5,
                }
            )
        annotations.append({"completed_by": 9, "result": [], "was_cancelled": True})  # a cancelled one is left out
        tasks.append(
            {
                "id": 1000 + t,
                "data": {"prompt": f"Question {t}: which answer is best?", "answers": items},
                "annotations": annotations,
            }
        )
    return tasks


def _argilla_records(n_tasks: int = 12) -> list[dict]:
    records = []
    for t in range(n_tasks):
        fields = {"instruction": f"Question {t}: which answer is best?"}
        fields.update({f"response-{n + 1}": f"Answer {n} to question {t}." for n in [(n + t) % K for n in range(K)]})
        responses = []
        for a in range(3):
            order = _annotator_order(a, t)
            value = [{"value": f"response-{m + 1}", "rank": order.index((m + t) % K) + 1} for m in range(K)]
            responses.append(
                {"user_id": f"uuid-{a}", "username": f"argilla-user-{a}", "value": value, "status": "submitted"}
            )
        responses.append({"username": "drafter", "value": [], "status": "draft"})  # drafts are left out
        records.append({"id": f"rec-{t}", "fields": fields, "metadata": {}, "responses": {"ranking": responses}})
    return records


def _counts(project: Path) -> dict[str, int]:
    handle = open_project(project)
    try:
        with handle.store.session() as s:
            return {
                model.__tablename__: s.scalar(select(func.count()).select_from(model))
                for model in (Labeler, Round, Prompt, Completion, Assignment, Judgement)
            }
    finally:
        handle.close()


def _flagged(project: Path) -> set[str]:
    report = api.consensus(project, out=project / "consensus")
    return {q.name for q in report.labelers if q.flagged}


def test_label_studio_ranker_export_is_imported_and_consensus_flags_the_backwards_annotator(
    project_dir: Path, tmp_path: Path
) -> None:
    export = tmp_path / "ls.json"
    export.write_text(json.dumps(_label_studio_export()))
    result = api.import_judgements(project_dir, export, fmt="label-studio")
    assert (result.tasks, result.judgements, result.labelers_created, result.prompts_added) == (12, 36, 3, 12)
    assert _flagged(project_dir) == {"annotator2@example.org"}
    handle = open_project(project_dir)
    with handle.store.session() as s:
        round_ = s.scalars(select(Round).where(Round.index == result.round_index)).one()
        assert (round_.kind, round_.policy) == ("train", "imported:label-studio")
        accounts = {row.name: row for row in s.scalars(select(Labeler))}
        assert set(accounts) == {"label-studio-1", "annotator1@example.org", "annotator2@example.org"}
        assert all(a.password_hash is None and a.invite_token_hash is None for a in accounts.values())
        judgement = s.scalars(
            select(Judgement).where(Judgement.labeler_id == accounts["annotator2@example.org"].id)
        ).first()
        assignment = s.get(Assignment, judgement.assignment_id)
        texts = {c.id: c.text for c in s.scalars(select(Completion).where(Completion.prompt_id == judgement.prompt_id))}
        t = int(s.get(Prompt, judgement.prompt_id).text.split()[1][:-1])
        shown = [int(texts[c].split()[1]) for c in assignment.display_order]
        assert shown == [(n + t) % K for n in range(K)]  # the order the file lists the answers in
        assert [texts[c].split()[1] for [c] in judgement.ranking] == ["3", "2", "1", "0"]
        assert judgement.seconds_spent == 12.5 and assignment.status == "submitted"
    handle.close()


def test_argilla_ranking_records_are_imported_and_consensus_flags_the_backwards_annotator(
    project_dir: Path, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in _argilla_records()))
    result = api.import_judgements(project_dir, records, fmt="argilla", prompt_key="instruction")
    assert (result.tasks, result.judgements, result.labelers_created) == (12, 36, 3)
    assert _flagged(project_dir) == {"argilla-user-2"}


def test_argilla_to_disk_directory_with_tied_ranks_is_read(project_dir: Path, tmp_path: Path) -> None:
    saved = tmp_path / "dataset"
    saved.mkdir()
    record = _argilla_records(1)[0]
    record["responses"]["ranking"] = [
        {
            "user_id": "u1",
            "value": [
                {"value": "response-1", "rank": 1},
                {"value": "response-2", "rank": 1},
                {"value": "response-3", "rank": 2},
                {"value": "response-4", "rank": 3},
            ],
        }
    ]
    (saved / "records.json").write_text(json.dumps([record]))
    api.import_judgements(project_dir, saved, fmt="argilla", prompt_key="instruction")
    handle = open_project(project_dir)
    with handle.store.session() as s:
        judgement = s.scalars(select(Judgement)).one()
        texts = {c.id: c.text.split()[1] for c in s.scalars(select(Completion))}
        assert [[texts[c] for c in tier] for tier in judgement.ranking] == [["0", "1"], ["2"], ["3"]]
    handle.close()


def test_importing_the_same_file_twice_adds_nothing(project_dir: Path, tmp_path: Path) -> None:
    export = tmp_path / "ls.json"
    export.write_text(json.dumps(_label_studio_export(6)))
    api.import_judgements(project_dir, export, fmt="label-studio")
    before = _counts(project_dir)
    again = api.import_judgements(project_dir, export, fmt="label-studio")
    assert (again.judgements, again.already_imported, again.labelers_created, again.prompts_added) == (0, 18, 0, 0)
    assert _counts(project_dir) == before


def test_label_studio_pairwise_results_become_two_answer_rankings(project_dir: Path, tmp_path: Path) -> None:
    task = {
        "id": 7,
        "data": {"question": "Pick one.", "answer1": "Left answer.", "answer2": "Right answer."},
        "annotations": [
            {"completed_by": 1, "result": [{"type": "pairwise", "value": {"selected": "right"}}]},
            {"completed_by": 2, "result": [{"type": "pairwise", "value": {"selected": "left"}}]},
        ],
    }
    export = tmp_path / "pairwise.json"
    export.write_text(json.dumps([task]))
    api.import_judgements(
        project_dir, export, fmt="label-studio", prompt_key="question", answers_key=["answer1", "answer2"]
    )
    handle = open_project(project_dir)
    with handle.store.session() as s:
        texts = {c.id: c.text for c in s.scalars(select(Completion))}
        rankings = [[texts[c] for [c] in j.ranking] for j in s.scalars(select(Judgement).order_by(Judgement.id))]
    handle.close()
    assert rankings == [["Right answer.", "Left answer."], ["Left answer.", "Right answer."]]


def _bad(tasks: list[dict], where: tuple[str, ...]) -> tuple[list[dict], tuple[str, ...]]:
    return tasks, where


def _ls_unknown_item() -> list[dict]:
    tasks = _label_studio_export(3)
    tasks[2]["annotations"][1]["result"][0]["value"]["ranker"]["rank"][0] = "zz"
    return tasks


def _ls_missing_prompt() -> list[dict]:
    tasks = _label_studio_export(3)
    del tasks[1]["data"]["prompt"]
    return tasks


def _ls_bad_annotator_name() -> list[dict]:  # refused inside the transaction, after prompts and a round were added
    tasks = _label_studio_export(3)
    tasks[2]["annotations"][0]["completed_by"] = "Ann Smith!"
    return tasks


@pytest.mark.parametrize(
    ("tasks", "names"),
    [
        (_ls_unknown_item(), ("ls.json", "task 2", "annotations[1].result[0].value.ranker", "zz")),
        (_ls_missing_prompt(), ("ls.json", "task 1", "data.prompt")),
        (_ls_bad_annotator_name(), ("ls.json", "task 2", "annotator")),
    ],
    ids=["unknown-ranker-item", "missing-prompt", "annotator-name"],
)
def test_a_malformed_label_studio_file_is_refused_naming_file_task_and_field_and_changes_nothing(
    project_dir: Path, tmp_path: Path, tasks: list[dict], names: tuple[str, ...]
) -> None:
    export = tmp_path / "ls.json"
    export.write_text(json.dumps(tasks))
    before = _db_digest(project_dir)
    with pytest.raises(InputError) as refused:
        api.import_judgements(project_dir, export, fmt="label-studio")
    message = str(refused.value)
    assert "\n" not in message and all(name in message for name in names), message
    assert _db_digest(project_dir) == before


def test_a_malformed_argilla_record_names_its_line_and_field(project_dir: Path, tmp_path: Path) -> None:
    records = _argilla_records(3)
    records[1]["responses"]["ranking"][0]["value"][0]["value"] = "response-9"
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(InputError, match=r"records.jsonl:2: task 1: responses\[ranking\]\[0\].value: 'response-9'"):
        api.import_judgements(project_dir, path, fmt="argilla", prompt_key="instruction")
    assert _counts(project_dir)["judgements"] == 0


def _db_digest(project: Path) -> str:
    with sqlite3.connect(next(project.glob("*.db"))) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


@pytest.mark.parametrize("fmt", ["label-studio", "argilla"])
def test_exported_tasks_annotated_in_the_tool_import_back_onto_the_same_round(
    project_dir: Path, tmp_path: Path, fmt: str
) -> None:
    handle = open_project(project_dir)
    round_id, prompt_ids = add_sample_tasks(handle.store, handle.project_id, n_prompts=6, k=3)
    handle.close()
    out = tmp_path / ("tasks.json" if fmt == "label-studio" else "records.jsonl")
    assert api.export_tasks(project_dir, out, fmt=fmt) == 6
    before = _counts(project_dir)
    if fmt == "label-studio":
        tasks = json.loads(out.read_text())
        for n, task in enumerate(tasks):  # what Label Studio adds: an id, and each annotator's ranking
            task["id"] = n + 1
            ids = [item["id"] for item in task["data"]["answers"]]
            task["annotations"] = [
                {
                    "completed_by": u,
                    "result": [{"type": "ranker", "value": {"ranker": {"rank": ids[::-1] if u == 3 else ids}}}],
                }
                for u in (1, 2, 3)
            ]
        out.write_text(json.dumps(tasks))
    else:
        records = [json.loads(line) for line in out.read_text().splitlines()]
        for record in records:  # what Argilla adds: the responses to a RankingQuestion
            names = [name for name in record["fields"] if name != "prompt"]
            record["responses"] = {
                "ranking": [{"username": f"user{u}", "value": names[::-1] if u == 3 else names} for u in (1, 2, 3)]
            }
        out.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = api.import_judgements(project_dir, out, fmt=fmt)
    assert (result.judgements, result.round_index, result.prompts_added) == (18, None, 0)
    after = _counts(project_dir)
    assert (after["rounds"], after["prompts"], after["completions"]) == (
        before["rounds"],
        before["prompts"],
        before["completions"],
    )
    handle = open_project(project_dir)
    with handle.store.session() as s:
        assert {j.round_id for j in s.scalars(select(Judgement))} == {round_id}
        assert {j.prompt_id for j in s.scalars(select(Judgement))} == set(prompt_ids)
    handle.close()
    with pytest.raises(AlignloopError, match="no open tasks"):  # with overlap 3 met, every prompt is done
        api.export_tasks(project_dir, tmp_path / "again.json", fmt=fmt)


def test_unknown_tool_format_is_refused(project_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--format"):
        api.import_judgements(project_dir, tmp_path / "x.json", fmt="prodigy")
