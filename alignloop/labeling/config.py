"""The settings of ``alignloop export-judgements`` and ``labelers add``, in a module light enough for the CLI
(no store, no password hashing): each setting is declared here once, as the flag, the API keyword and the help."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from alignloop.config import StageConfig


class ExportJudgementsConfig(StageConfig):
    """Which judgements ``alignloop export-judgements`` writes, and whether with their texts."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {"round_index": ("--round",)}

    round_index: int | None = Field(None, description="Only this round (default: all).")
    texts: bool = Field(True, description="Include the prompt and completion texts.")


class AddLabelerConfig(StageConfig):
    """The account ``alignloop labelers add`` creates: its role, and where its invite link points."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {"admin": ("--admin",)}

    admin: bool = Field(False, description="Make the account an admin (dashboard, guidelines, exports).")
    url: str = Field("http://127.0.0.1:8000", description="Address labelers reach the app at, used in the invite link.")
