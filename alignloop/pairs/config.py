"""``ExportPairsConfig`` and ``ImportPairsConfig``: the settings of ``alignloop export-pairs`` and
``import-pairs``, in a light module the CLI reads.

``SOURCES`` (where pairs come from) is declared here once; ``dataset.build_pairs`` reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, get_args

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from alignloop.config import DatasetSource, StageConfig
from alignloop.pairs.formats import FORMATS

Source = Literal["consensus", "labelers"]
SOURCES: tuple[str, ...] = get_args(Source)


class ExportPairsConfig(StageConfig):
    """Which of the project's comparisons are written, and in which format."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {"fmt": ("--format", "-f"), "rounds": ("--round",)}

    fmt: str = Field("alignloop", description=f"Pairs format: {FORMATS.choices()}.")
    chat: bool = Field(False, description="Prompts and answers as chat messages (trl, openrlhf).")
    source: Source = Field(
        "consensus", description="consensus (one ranking per prompt) or labelers (each labeler's own)."
    )
    include_flagged: bool = Field(False, description="Keep judgements of labelers the outlier rule flagged.")
    min_agreement: float = Field(
        0.0, ge=0, le=1, description="Drop pairs fewer than this share of labelers agree with."
    )
    rounds: list[int] | None = Field(None, description="Only these rounds (repeatable); leaves out imported pairs.")
    split: Literal["train", "test"] | None = Field(None, description="Only train or test pairs.")
    unpaired: Path | None = Field(None, description="Also write KTO-style labelled examples from thumbs tasks here.")
    by_group: bool = Field(False, description="Each labeler group's own pairs, tagged with its `group`.")

    @field_validator("fmt")
    @classmethod
    def _registered(cls, fmt: str) -> str:
        if fmt not in FORMATS:  # read when validating, so a format registered later is accepted
            raise PydanticCustomError(
                "pairs_format",
                "unknown format {fmt} (choose from {choices})",
                {"fmt": repr(fmt), "choices": ", ".join(FORMATS)},
            )
        return fmt


class ImportPairsConfig(StageConfig, DatasetSource):
    """How ``alignloop import-pairs`` reads its file, ``datasets`` directory or hub dataset id."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {"fmt": ("--format", "-f")}

    fmt: str | None = Field(None, description=f"{FORMATS.choices()} (default: detected).")
