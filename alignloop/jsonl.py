"""Reading and writing JSONL: errors name the file and line; writes are atomic (all or nothing)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from alignloop.errors import InputError


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line; a bad line raises ``InputError``."""
    path = Path(path)
    try:
        handle = path.open("rb")  # decoded line by line, so a bad byte is reported on its own line
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"not UTF-8 text ({exc.reason})", file=path, line=number) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc.msg}, column {exc.colno})", file=path, line=number) from None
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", file=path, line=number)
            yield number, obj


def require_str(obj: dict[str, Any], field: str, *, file: str | Path, line: int, allow_empty: bool = False) -> str:
    """``obj[field]`` as a string, or an ``InputError`` naming file, line and field."""
    if field not in obj:
        raise InputError("missing field", file=file, line=line, field=field)
    value = obj[field]
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", file=file, line=line, field=field)
    if not allow_empty and not value.strip():
        raise InputError("is empty", file=file, line=line, field=field)
    return value


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows to ``path`` atomically (a temporary file renamed into place); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def write_json(path: str | Path, document: Any) -> None:
    """Write one JSON document to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, ensure_ascii=False, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
