"""The settings of ``alignloop import-judgements`` and ``export-tasks``, in a light module the CLI reads.

Both name a labeling tool's format and where a task's data holds the prompt and the answers; those keys
are declared once, in ``ToolFileConfig``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from alignloop.bridges.tools import TOOLS
from alignloop.config import StageConfig


class ToolFileConfig(StageConfig):
    """A labeling tool's file: its format, and the keys of a task's data that hold the prompt and the answers."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {"fmt": ("--format", "-f")}

    fmt: str = Field(description=f"{TOOLS.choices()}.")
    prompt_key: str = Field("prompt", description="Key of the task data (Argilla: field) holding the prompt.")
    answers_key: list[str] | None = Field(
        None, description="Key holding the list of answers, or repeat it: one key per answer (see docs/cli.md)."
    )


class ImportJudgementsConfig(ToolFileConfig):
    """How ``alignloop import-judgements`` reads a tool's annotated export."""

    question: str | None = Field(None, description="Argilla: the RankingQuestion to read when records have several.")


class ExportTasksConfig(ToolFileConfig):
    """Where and how ``alignloop export-tasks`` writes the open tasks for a tool to import."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {**ToolFileConfig.flags, "out": ("--out", "-o")}

    out: Path = Field(description="File to write (Argilla: .jsonl for JSONL).")
