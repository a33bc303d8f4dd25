"""Rows from Hugging Face ``datasets``: a directory saved with ``save_to_disk``, or a hub dataset id.

Prompts (``prompts add``) and pairs (``import-pairs``) both read datasets through
``dataset_rows``. Which split is read is never silent:

- a single ``Dataset`` (no splits) is read whole; each row's split is then decided by the
  project's hash rule;
- a ``DatasetDict`` whose splits are only ``train`` and/or ``test`` is read whole, keeping
  them: ``train`` rows go to the train split, ``test`` rows to the test split;
- any other ``DatasetDict`` (``validation``, ``train_prefs``/``test_prefs``, ...) needs
  ``--split NAME``, and the error lists the splits it has. A chosen split whose name starts
  with ``test`` goes to the test split, one starting with ``train`` to train, and any
  other (``validation``) is split by the hash rule.

A hub id (``org/name``, with ``--subset`` for its configuration) is read through
``datasets.load_dataset``, from the cache when ``HF_HUB_OFFLINE`` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignloop.errors import InputError

HUB_DATASET = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
FILE_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".txt"}


@dataclass
class DatasetRows:
    """The rows read, each with the project split it maps to (None: the hash rule decides)."""

    rows: list[tuple[str | None, dict[str, Any]]]
    label: str  # names the source in messages: "path[split]" or "org/name"
    fingerprint: str  # changes when the data changes; used to refuse importing the same data twice


def is_dataset_source(source: str | Path) -> bool:
    """A directory (``save_to_disk``), or a name that is no existing file and looks like a hub id."""
    path = Path(source)
    if path.is_dir():
        return True
    text = str(source)
    return not path.exists() and HUB_DATASET.match(text) is not None and path.suffix.lower() not in FILE_SUFFIXES


def project_split(name: str | None) -> str | None:
    if name is None:
        return None
    if name.startswith("test"):
        return "test"
    return "train" if name.startswith("train") else None


def dataset_rows(source: str | Path, *, split: str | None = None, subset: str | None = None) -> DatasetRows:
    """Every row of the chosen split(s) of ``source`` (see the module docstring)."""
    loaded = _load(source, subset)
    if hasattr(loaded, "keys"):  # a DatasetDict
        names = list(loaded.keys())
        if split is not None:
            if split not in names:
                raise InputError(f"no split {split!r} (splits: {', '.join(names)})", file=source, field="--split")
            chosen = [split]
        elif set(names) <= {"train", "test"}:
            chosen = names
        else:
            raise InputError(
                f"has splits {', '.join(names)}; choose one with --split (splits starting with `test` "
                "go to the test split)",
                file=source,
                field="--split",
            )
        parts = [(name, loaded[name]) for name in chosen]
    else:
        if split is not None:
            raise InputError("a single Dataset has no splits; leave out --split", file=source, field="--split")
        parts = [(None, loaded)]
    rows = [(project_split(name), dict(record)) for name, part in parts for record in part]
    label = f"{source}[{split}]" if split else str(source)
    fingerprint = "-".join(getattr(part, "_fingerprint", "") or "" for _, part in parts)
    return DatasetRows(rows=rows, label=label, fingerprint=fingerprint)


def _load(source: str | Path, subset: str | None) -> Any:
    import datasets

    path = Path(source)
    if path.is_dir():
        if subset is not None:
            raise InputError("a directory saved with save_to_disk has no subsets; leave out --subset", field="--subset")
        try:
            return datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"not a directory saved with `datasets` save_to_disk ({first})", file=path) from None
    from alignloop.caches import hub_offline

    try:
        return datasets.load_dataset(str(source), name=subset)
    except Exception as exc:  # datasets raises many kinds; each becomes one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = "not in the Hugging Face cache and HF_HUB_OFFLINE is set" if hub_offline() else first
        raise InputError(f"no such file or directory, nor a loadable hub dataset: {where}", file=source) from None
