"""Importing prompts into a project: JSONL, CSV, plain text, a saved ``datasets`` directory, or the built-in set.

A file is read and validated completely before anything is stored, so a malformed
line leaves the store untouched. Prompts are de-duplicated on their normalised text
(within the file and against the project), and each is put in the train or test
split by a salted hash of that text — the same prompt always lands in the same split.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alignloop.config import SplitConfig
from alignloop.errors import AlignloopError, InputError
from alignloop.jsonl import read_jsonl
from alignloop.project import ProjectHandle, open_project
from alignloop.store import Completion, Prompt

ROLES = {"system", "user", "assistant"}


@dataclass
class PromptRow:
    """A prompt read from a file, before it is stored."""

    text: str  # plain text; for a chat, the last user turn
    messages: list[dict[str, str]] | None  # the chat, ending with a user turn, when given as one
    split: str | None = None  # train/test as the source splits it (a dataset's split); None: the hash rule


@dataclass
class AddResult:
    added: int
    duplicates: int
    total: int
    test: int


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def prompt_hash(text: str, messages: list[dict[str, Any]] | None) -> str:
    """The key of a prompt in the store, for de-duplication and the split: the text when the prompt is
    one user turn (given as text or as a one-message chat), else the whole conversation (roles and
    contents). ``prompts add`` and ``import-pairs`` both use it, so a prompt never straddles the split."""
    if not messages or (len(messages) == 1 and messages[0].get("role") == "user"):
        return text_hash(text)
    return text_hash(json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], sort_keys=True))


def legacy_prompt_hash(text: str, messages: list[dict[str, Any]] | None) -> str:
    """The key stores made before ``prompt_hash`` gave a one-message chat prompt (the JSON of its list)."""
    return text_hash(json.dumps(messages or [{"role": "user", "content": text}], sort_keys=True))


def assign_split(prompt_hash: str, split: SplitConfig) -> str:
    """``test`` for a fixed, salted-hash-chosen share of prompts, ``train`` for the rest."""
    digest = hashlib.sha256(f"{split.seed}:{prompt_hash}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if fraction < split.test_fraction else "train"


def conversation(prompt: Prompt | PromptRow) -> list[dict[str, str]]:
    """The prompt as chat messages (a single user turn when it was given as text)."""
    return list(prompt.messages) if prompt.messages else [{"role": "user", "content": prompt.text}]


def builtin_prompts_path() -> Path:
    return Path(str(resources.files("alignloop") / "data" / "prompts.jsonl"))


def read_prompt_file(
    path: str | Path, column: str | None = None, *, split: str | None = None, subset: str | None = None
) -> list[PromptRow]:
    """Parse any supported prompt source; raises ``InputError`` naming file, line and field.

    ``split`` and ``subset`` choose what is read of a ``datasets`` directory or hub id (see
    ``alignloop.datasets_io``); for a file they are refused.
    """
    from alignloop.datasets_io import is_dataset_source

    if is_dataset_source(path):
        rows = _read_dataset(path, column or "prompt", split, subset)
        if not rows:
            raise InputError("holds no prompts", file=path)
        return rows
    for flag, value in (("--split", split), ("--subset", subset)):
        if value is not None:
            raise InputError(f"{flag} applies to `datasets` directories and hub ids, not to files", field=flag)
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or directory", file=path)
    elif path.suffix.lower() in (".jsonl", ".json"):
        rows = [_row_from_object(obj, file=path, line=n) for n, obj in read_jsonl(path)]
    elif path.suffix.lower() in (".csv", ".tsv"):
        rows = _read_csv(path, column or "prompt", delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    else:
        rows = _read_text(path)
    if not rows:
        raise InputError("holds no prompts", file=path)
    return rows


def _row_from_object(obj: dict[str, Any], *, file: Path, line: int | None) -> PromptRow:
    if "messages" in obj:
        return PromptRow(text=_last_user_turn(obj["messages"], file=file, line=line), messages=obj["messages"])
    if "prompt" not in obj:
        raise InputError("missing field (expected `prompt` or `messages`)", file=file, line=line, field="prompt")
    value = obj["prompt"]
    if isinstance(value, list):  # chat given under "prompt", as TRL's conversational format does
        return PromptRow(text=_last_user_turn(value, file=file, line=line, field="prompt"), messages=value)
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", file=file, line=line, field="prompt")
    if not value.strip():
        raise InputError("is empty", file=file, line=line, field="prompt")
    return PromptRow(text=value.strip(), messages=None)


def _last_user_turn(messages: Any, *, file: Path, line: int | None, field: str = "messages") -> str:
    if not isinstance(messages, list) or not messages:
        raise InputError(
            "expected a non-empty list of {role, content} objects",
            file=file,
            line=line,
            field=field,
        )
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise InputError("expected an object with `role` and `content`", file=file, line=line, field=where)
        if message.get("role") not in ROLES:
            raise InputError(f"role must be one of {sorted(ROLES)}", file=file, line=line, field=f"{where}.role")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise InputError("must be a non-empty string", file=file, line=line, field=f"{where}.content")
    if messages[-1]["role"] != "user":
        raise InputError(
            "the last message must be the user's turn the model answers",
            file=file,
            line=line,
            field=field,
        )
    return messages[-1]["content"].strip()


def _read_csv(path: Path, column: str, delimiter: str) -> list[PromptRow]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise InputError(
                f"no `{column}` column (columns: {reader.fieldnames or []})",
                file=path,
                line=1,
                field=column,
            )
        rows = []
        for record in reader:
            value = (record.get(column) or "").strip()
            if not value:
                raise InputError("is empty", file=path, line=reader.line_num, field=column)
            rows.append(PromptRow(text=value, messages=None))
        return rows


def _read_text(path: Path) -> list[PromptRow]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", file=path) from None
    return [PromptRow(text=line.strip(), messages=None) for line in lines if line.strip()]


def _read_dataset(source: str | Path, column: str, split: str | None, subset: str | None) -> list[PromptRow]:
    from alignloop.datasets_io import dataset_rows

    data = dataset_rows(source, split=split, subset=subset)
    names = set(data.rows[0][1]) if data.rows else set()
    if data.rows and column not in names and "messages" not in names:
        raise InputError(f"no `{column}` or `messages` column (columns: {sorted(names)})", file=source, field=column)
    key = "messages" if column not in names else column
    out = []
    for i, (row_split, record) in enumerate(data.rows, start=1):
        row = _row_from_object({"prompt" if key != "messages" else "messages": record[key]}, file=data.label, line=i)
        row.split = row_split
        out.append(row)
    return out


def add_prompts(handle: ProjectHandle, rows: list[PromptRow], source: str) -> AddResult:
    """Store new prompts in one transaction; duplicates (in the file or already stored) are skipped."""
    with handle.store.session() as s:
        added = store_prompts(s, handle, rows, source)
        total, test = s.execute(
            select(func.count(), func.count().filter(Prompt.split == "test")).where(
                Prompt.project_id == handle.project_id
            )
        ).one()
    return AddResult(added=added, duplicates=len(rows) - added, total=total, test=test)


def store_prompts(session: Session, handle: ProjectHandle, rows: list[PromptRow], source: str) -> int:
    """Add the new prompts of ``rows`` in the caller's transaction (flushed); returns how many were new.

    Stages that bring prompts along with other rows (``import-judgements``) call this so their
    prompts get the same hash, de-duplication and split as ``prompts add`` gives them.
    """
    existing = set(session.scalars(select(Prompt.text_hash).where(Prompt.project_id == handle.project_id)))
    seen: set[str] = set()
    added = 0
    for row in rows:
        digest = prompt_hash(row.text, row.messages)
        if digest in existing or digest in seen or legacy_prompt_hash(row.text, row.messages) in existing:
            continue
        seen.add(digest)
        session.add(
            Prompt(
                project_id=handle.project_id,
                text=row.text,
                messages=row.messages,
                text_hash=digest,
                split=row.split or assign_split(digest, handle.config.split),
                source=source,
            )
        )
        added += 1
    session.flush()
    return added


def find_prompt(session: Session, handle: ProjectHandle, row: PromptRow) -> Prompt | None:
    """The stored prompt ``row`` is a duplicate of (by ``prompt_hash``, or the legacy key of older stores)."""
    digests = {prompt_hash(row.text, row.messages), legacy_prompt_hash(row.text, row.messages)}
    return session.scalars(
        select(Prompt).where(Prompt.project_id == handle.project_id, Prompt.text_hash.in_(digests)).limit(1)
    ).first()


def list_prompts(handle: ProjectHandle, *, split: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The project's prompts as ``{"id", "split", "text"}``, oldest first; at most ``limit``."""
    query = select(Prompt).where(Prompt.project_id == handle.project_id).order_by(Prompt.id).limit(limit)
    if split:
        query = query.where(Prompt.split == split)
    with handle.store.session() as s:
        return [{"id": p.id, "split": p.split, "text": p.text} for p in s.scalars(query)]


def held_out_conversations(handle: ProjectHandle) -> list[list[dict[str, str]]]:
    """The project's test-split prompts as chat messages, oldest first: what an evaluation answers."""
    query = select(Prompt).where(Prompt.project_id == handle.project_id, Prompt.split == "test").order_by(Prompt.id)
    with handle.store.session() as s:
        return [conversation(p) for p in s.scalars(query)]


def evaluation_conversations(
    project: str | Path | None, prompts: str | Path | None, limit: int | None
) -> list[list[dict[str, str]]]:
    """The prompts an evaluation answers: the project's test split, or a prompts file; at most ``limit``."""
    if (project is None) == (prompts is None):
        raise AlignloopError("give --project (its test split) or --prompts FILE, one of them")
    if prompts is not None:
        conversations = [conversation(p) for p in read_prompt_file(prompts)]
    else:
        with open_project(project) as handle:
            conversations = held_out_conversations(handle)
    return conversations[:limit] if limit else conversations


def unsampled_prompts(handle: ProjectHandle, *, split: str | None = None, limit: int | None = None) -> list[str]:
    """The texts of the project's prompts no round has sampled yet, oldest first; at most ``limit``."""
    sampled = select(Completion.prompt_id)
    query = select(Prompt.text).where(Prompt.project_id == handle.project_id, Prompt.id.not_in(sampled))
    if split:
        query = query.where(Prompt.split == split)
    with handle.store.session() as s:
        return list(s.scalars(query.order_by(Prompt.id).limit(limit)))
