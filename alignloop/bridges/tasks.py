"""What a labeling tool's file holds, once read: tasks (a prompt and its candidate answers) and
each annotator's ranking of them. The readers of each tool produce these; ``store`` writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignloop.errors import InputError


@dataclass
class ExternalJudgement:
    """One annotator's verdict on one task."""

    annotator: str  # the labeler name it is stored under (an email, a username, or `<tool>-<user id>`)
    ranking: list[list[int]]  # tiers best→worst of answer positions (indexes into ExternalTask.answers)
    seconds_spent: float | None = None  # time the tool measured, when it did


@dataclass
class ExternalTask:
    """One task of the file: a prompt, its candidate answers as shown, and the judgements made on it."""

    index: int  # 0-based position in the file, for error messages
    task_id: str  # the tool's id of the task (its index when it has none); part of the idempotency key
    prompt: str
    answers: list[str]  # candidate answers in the order the tool shows them (the display order)
    judgements: list[ExternalJudgement] = field(default_factory=list)
    origin: tuple[int, int] | None = None  # (round index, prompt id) when `export-tasks` wrote the task


@dataclass
class TaskKeys:
    """Which keys of a task's data hold the prompt and the answers (``--prompt-key``, ``--answers-key``)."""

    prompt: str = "prompt"
    answers: list[str] | None = None  # one key holding a list, or several keys holding one answer each
    question: str | None = None  # Argilla: the RankingQuestion's name (needed when records have several)


class TaskError(InputError):
    """Bad content in one task of a labeling tool's file: names the file, the task and the field."""

    def __init__(self, message: str, *, file: str | Path, task: int, field: str, line: int | None = None) -> None:
        super().__init__(message, file=file, line=line, field=f"task {task}" + (f": {field}" if field else ""))


def read_json_file(path: Path) -> Any:
    """The parsed JSON document at ``path``; an ``InputError`` naming it when missing or malformed."""
    if not path.exists():
        raise InputError("no such file or directory", file=path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", file=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", file=path, line=exc.lineno) from None


def text_of(value: Any, *, file: Path, task: int, field: str) -> str:
    """A non-empty string, or a ``TaskError``."""
    if not isinstance(value, str):
        raise TaskError(f"expected a string, got {type(value).__name__}", file=file, task=task, field=field)
    if not value.strip():
        raise TaskError("is empty", file=file, task=task, field=field)
    return value


def tiers_from_ranks(ranks: dict[int, int]) -> list[list[int]]:
    """Answer position → rank number (1 = best; equal numbers tie) as tiers best→worst."""
    tiers: dict[int, list[int]] = {}
    for position, rank in ranks.items():
        tiers.setdefault(rank, []).append(position)
    return [sorted(tiers[rank]) for rank in sorted(tiers)]
