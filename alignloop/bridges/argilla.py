"""Argilla 2.x ranking records (what ``rg.Dataset.to_disk`` keeps in ``records.json``) read into
``ExternalTask``s, and tasks written as records to log into an Argilla dataset.

A record is ``{"id", "fields": {...}, "metadata": {...}, "responses": {...}}``. The prompt is
``fields[<prompt key>]``; the answers are the fields named by ``--answers-key`` (default: every
other field, in the record's order). ``responses`` maps each question's name to one response per
user, ``{"user_id" | "username", "value", "status"}``; the ``RankingQuestion``'s value is a list
of ``{"value": <answer field name>, "rank": n}`` (1 = best, equal ranks tie) or of answer field
names best first. Responses whose status is not ``submitted`` (drafts, discarded) are left out.
A file is a JSON list of records, ``{"records": [...]}``, JSONL (one record a line), or the
``to_disk`` directory holding ``records.json``.
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
    tiers_from_ranks,
)
from alignloop.errors import InputError
from alignloop.jsonl import read_jsonl, write_json, write_jsonl

NAME = "argilla"


def read_tasks(path: Path, keys: TaskKeys) -> list[ExternalTask]:
    if path.is_dir():
        path = path / "records.json"
    if path.suffix.lower() == ".jsonl":
        if not path.exists():
            raise InputError("no such file or directory", file=path)
        return [_task(path, i, raw, keys, line) for i, (line, raw) in enumerate(read_jsonl(path))]
    doc = read_json_file(path)
    if isinstance(doc, dict) and isinstance(doc.get("records"), list):
        doc = doc["records"]
    if not isinstance(doc, list):
        raise InputError('expected a list of Argilla records (or {"records": [...]})', file=path)
    return [_task(path, i, raw, keys) for i, raw in enumerate(doc)]


def _task(path: Path, i: int, raw: Any, keys: TaskKeys, line: int | None = None) -> ExternalTask:
    def error(message: str, field: str) -> TaskError:
        return TaskError(message, file=path, task=i, field=field, line=line)

    if not isinstance(raw, dict) or not isinstance(raw.get("fields"), dict):
        raise error("expected a record with a `fields` object", "fields")
    fields = raw["fields"]
    if keys.prompt not in fields:
        raise error("missing field", f"fields.{keys.prompt}")
    prompt = text_of(fields[keys.prompt], file=path, task=i, field=f"fields.{keys.prompt}")
    names = keys.answers or [name for name in fields if name != keys.prompt]
    if len(names) < 2:
        raise error(f"expected two or more answer fields besides `{keys.prompt}`", "fields")
    for name in names:
        if name not in fields:
            raise error("missing field", f"fields.{name}")
    answers = [text_of(fields[name], file=path, task=i, field=f"fields.{name}") for name in names]
    task = ExternalTask(index=i, task_id=str(raw.get("id", i)), prompt=prompt, answers=answers)
    metadata = raw.get("metadata") or {}
    if isinstance(metadata, dict) and "alignloop_round" in metadata:
        r, p = metadata.get("alignloop_round"), metadata.get("alignloop_prompt_id")
        if not isinstance(r, int) or not isinstance(p, int):
            raise error("expected integers as export-tasks writes them", "metadata.alignloop_round")
        task.origin = (r, p)
    for n, response in _responses(raw.get("responses"), keys.question, error):
        where = f"responses[{n}]"
        if not isinstance(response, dict):
            raise error("expected an object", where)
        if response.get("status", "submitted") != "submitted":
            continue
        user = response.get("username") or response.get("user_id")
        if not isinstance(user, str) or not user.strip():
            raise error("expected a `username` or `user_id`", f"{where}.user_id")
        if any(j.annotator == user.strip() for j in task.judgements):
            raise error(f"{user} answered this record twice", f"{where}.user_id")
        ranks = _ranks(response.get("value"), names, lambda message, field=f"{where}.value": error(message, field))
        task.judgements.append(ExternalJudgement(user.strip(), tiers_from_ranks(ranks)))
    return task


def _responses(responses: Any, question: str | None, error: Any) -> list[tuple[str, Any]]:
    """(label for errors, response) of the ranking question, from a {question: [...]} map or a plain list."""
    if responses is None:
        return []
    if isinstance(responses, list):
        return [(str(n), r) for n, r in enumerate(responses)]
    if not isinstance(responses, dict):
        raise error("expected {question name: [responses]}", "responses")
    if question is None:
        if len(responses) > 1:
            raise error(f"several questions ({', '.join(responses)}); choose the ranking with --question", "responses")
        question = next(iter(responses), None)
    found = responses.get(question, []) if question is not None else []
    if not isinstance(found, list):
        raise error("expected a list of responses", f"responses.{question}")
    return [(f"{question}][{n}", r) for n, r in enumerate(found)]


def _ranks(value: Any, names: list[str], error: Any) -> dict[int, int]:
    """Answer position → rank (1 = best) from a RankingQuestion value."""
    if not isinstance(value, list) or not value:
        raise error("expected a list of {value, rank} or of answer names")
    position = {name: n for n, name in enumerate(names)}
    ranks: dict[int, int] = {}
    for n, item in enumerate(value):
        name, rank = (item.get("value"), item.get("rank")) if isinstance(item, dict) else (item, n + 1)
        if name not in position:
            raise error(f"{name!r} is not one of the answer fields {names}")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise error(f"the rank of {name!r} is {rank!r}; expected a whole number >= 1")
        if position[name] in ranks:
            raise error(f"{name!r} is ranked twice")
        ranks[position[name]] = rank
    if len(ranks) != len(names):
        missing = [name for name in names if position[name] not in ranks]
        raise error(f"not a ranking of every answer: {missing} missing")
    return ranks


def write_tasks(tasks: list[ExternalTask], path: Path, keys: TaskKeys) -> None:
    """Records with ``fields`` (prompt, ``answer-1`` .. ``answer-K`` or the ``--answers-key`` names) and the
    alignloop origin in ``metadata``: JSONL when ``path`` ends in ``.jsonl``, else a JSON list."""
    rows = []
    for task in tasks:
        names = keys.answers or [f"answer-{n + 1}" for n in range(len(task.answers))]
        if len(names) != len(task.answers):
            raise InputError(
                f"prompt {task.task_id} has {len(task.answers)} answers but {len(names)} names were given",
                field="--answers-key",
            )
        record: dict[str, Any] = {
            "id": task.task_id,
            "fields": {keys.prompt: task.prompt, **dict(zip(names, task.answers))},
        }
        if task.origin is not None:
            record["metadata"] = {"alignloop_round": task.origin[0], "alignloop_prompt_id": task.origin[1]}
        rows.append(record)
    if path.suffix.lower() == ".jsonl":
        write_jsonl(path, rows)
    else:
        write_json(path, rows)
