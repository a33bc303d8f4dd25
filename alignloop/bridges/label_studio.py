"""Label Studio's JSON export (a list of tasks) read into ``ExternalTask``s, and tasks written for its import.

A task is ``{"id", "data": {...}, "annotations": [...]}``. The prompt is ``data[<prompt key>]``;
the answers are either one key holding a list (the ``List`` tag's items ``{"id", "body"}``, or
plain strings whose ids are their positions "0", "1", ...) or several keys holding one string
each (their ids are the key names). Each annotation's ``result`` holds one ``ranker`` result
(``value.ranker`` = ``{bucket: [item ids]}``: one bucket is a ranking best first; with several
``Bucket`` tags each bucket is a tier, in the order the file lists them, and ``_``, the items left
in the list, comes last) or one ``pairwise`` result (``value.selected`` = ``left`` | ``right``, the
first or the second of two answers). Cancelled annotations (``was_cancelled``) are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignloop.bridges.tasks import (
    ExternalJudgement,
    ExternalTask,
    TaskError,
    TaskKeys,
    read_json_file,
    text_of,
)
from alignloop.errors import InputError
from alignloop.jsonl import write_json

NAME = "label-studio"
DEFAULT_ANSWERS = "answers"
UNPLACED = "_"  # the Ranker's column of items not moved into any bucket


def read_tasks(path: Path, keys: TaskKeys) -> list[ExternalTask]:
    doc = read_json_file(path)
    if not isinstance(doc, list):
        raise InputError("expected a JSON list of tasks (Label Studio's JSON export)", file=path)
    return [_task(path, i, raw, keys) for i, raw in enumerate(doc)]


def _task(path: Path, i: int, raw: Any, keys: TaskKeys) -> ExternalTask:
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        raise TaskError("expected an object with a `data` object", file=path, task=i, field="data")
    data = raw["data"]
    prompt = text_of(data.get(keys.prompt), file=path, task=i, field=f"data.{keys.prompt}")
    ids, answers = _answers(path, i, data, keys.answers or [DEFAULT_ANSWERS])
    task = ExternalTask(index=i, task_id=str(raw.get("id", i)), prompt=prompt, answers=answers)
    task.origin = _origin(path, i, data.get("alignloop"))
    annotations = raw.get("annotations") or []
    if not isinstance(annotations, list):
        raise TaskError("expected a list", file=path, task=i, field="annotations")
    seen: set[str] = set()
    for j, annotation in enumerate(annotations):
        where = f"annotations[{j}]"
        if not isinstance(annotation, dict):
            raise TaskError("expected an object", file=path, task=i, field=where)
        if annotation.get("was_cancelled"):
            continue
        annotator = _annotator(path, i, where, annotation.get("completed_by"))
        if annotator in seen:
            raise TaskError(f"{annotator} annotated this task twice", file=path, task=i, field=f"{where}.completed_by")
        seen.add(annotator)
        ranking = _ranking(path, i, where, annotation.get("result"), ids)
        lead_time = annotation.get("lead_time")
        seconds = float(lead_time) if isinstance(lead_time, (int, float)) and lead_time >= 0 else None
        task.judgements.append(ExternalJudgement(annotator, ranking, seconds))
    return task


def _answers(path: Path, i: int, data: dict, answer_keys: list[str]) -> tuple[list[str], list[str]]:
    """(item ids, answer texts) in the order the task shows them."""
    if len(answer_keys) > 1:
        texts = [text_of(data.get(key), file=path, task=i, field=f"data.{key}") for key in answer_keys]
        return list(answer_keys), texts
    key = answer_keys[0]
    items = data.get(key)
    if not isinstance(items, list) or len(items) < 2:
        raise TaskError("expected a list of two or more answers", file=path, task=i, field=f"data.{key}")
    ids, texts = [], []
    for n, item in enumerate(items):
        where = f"data.{key}[{n}]"
        if isinstance(item, str):
            ids.append(str(n))
            texts.append(text_of(item, file=path, task=i, field=where))
            continue
        if not isinstance(item, dict) or "id" not in item:
            raise TaskError("expected a string or an object with `id` and `body`", file=path, task=i, field=where)
        ids.append(str(item["id"]))
        texts.append(text_of(item.get("body"), file=path, task=i, field=f"{where}.body"))
    if len(set(ids)) != len(ids):
        raise TaskError("two answers share an id", file=path, task=i, field=f"data.{key}")
    return ids, texts


def _origin(path: Path, i: int, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(value.get(k), int) for k in ("round", "prompt_id")):
        raise TaskError(
            "expected {round, prompt_id} as export-tasks writes it", file=path, task=i, field="data.alignloop"
        )
    return value["round"], value["prompt_id"]


def _annotator(path: Path, i: int, where: str, completed_by: Any) -> str:
    """The account name: the user's email when the export gives the user as an object, else `label-studio-<id>`."""
    if isinstance(completed_by, dict):
        if isinstance(completed_by.get("email"), str) and completed_by["email"].strip():
            return completed_by["email"].strip()
        completed_by = completed_by.get("id")
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        return f"{NAME}-{completed_by}"
    if isinstance(completed_by, str) and completed_by.strip():
        return completed_by.strip()
    raise TaskError("expected a user id or an object with `email`", file=path, task=i, field=f"{where}.completed_by")


def _ranking(path: Path, i: int, where: str, result: Any, ids: list[str]) -> list[list[int]]:
    """The annotation's tiers of answer positions, from its one ranker or pairwise result."""
    if not isinstance(result, list):
        raise TaskError("expected a list of results", file=path, task=i, field=f"{where}.result")
    found = [r for r in result if isinstance(r, dict) and r.get("type") in ("ranker", "pairwise")]
    if len(found) != 1:
        what = "holds no" if not found else "holds more than one"
        raise TaskError(f"{what} `ranker` or `pairwise` result", file=path, task=i, field=f"{where}.result")
    n = result.index(found[0])
    value = found[0].get("value")
    where = f"{where}.result[{n}].value"
    if found[0]["type"] == "pairwise":
        selected = value.get("selected") if isinstance(value, dict) else None
        if selected not in ("left", "right"):
            raise TaskError("expected `left` or `right`", file=path, task=i, field=f"{where}.selected")
        if len(ids) != 2:
            raise TaskError(
                f"a pairwise result needs two answers, the task has {len(ids)}", file=path, task=i, field=where
            )
        return [[0], [1]] if selected == "left" else [[1], [0]]
    buckets = value.get("ranker") if isinstance(value, dict) else None
    if not isinstance(buckets, dict) or not buckets or not all(isinstance(b, list) for b in buckets.values()):
        raise TaskError("expected {bucket: [item ids]}", file=path, task=i, field=f"{where}.ranker")
    if len(buckets) == 1:
        tiers = [[item] for item in next(iter(buckets.values()))]
    else:
        ordered = [name for name in buckets if name != UNPLACED] + ([UNPLACED] if UNPLACED in buckets else [])
        tiers = [list(buckets[name]) for name in ordered if buckets[name]]
    position = {item: n for n, item in enumerate(ids)}
    named = [str(item) for tier in tiers for item in tier]
    if sorted(named) != sorted(ids):
        unknown = sorted(set(named) - set(ids))
        problem = f"unknown ids {unknown}" if unknown else f"expected each of {ids} exactly once, got {named}"
        raise TaskError(f"not a ranking of the task's answers: {problem}", file=path, task=i, field=f"{where}.ranker")
    return [sorted(position[str(item)] for item in tier) for tier in tiers]


def write_tasks(tasks: list[ExternalTask], path: Path, keys: TaskKeys) -> None:
    """Tasks as Label Studio imports them: ``[{"data": {prompt, answers, alignloop}}]``, written atomically."""
    answer_keys = keys.answers or [DEFAULT_ANSWERS]
    rows = []
    for task in tasks:
        data: dict[str, Any] = {keys.prompt: task.prompt}
        if len(answer_keys) == 1:
            data[answer_keys[0]] = [{"id": f"answer-{n + 1}", "body": text} for n, text in enumerate(task.answers)]
        elif len(answer_keys) == len(task.answers):
            data.update(zip(answer_keys, task.answers))
        else:
            raise InputError(
                f"prompt {task.task_id} has {len(task.answers)} answers; give one --answers-key or {len(task.answers)}",
                field="--answers-key",
            )
        if task.origin is not None:
            data["alignloop"] = {"round": task.origin[0], "prompt_id": task.origin[1]}
        rows.append({"data": data})
    write_json(path, rows)
