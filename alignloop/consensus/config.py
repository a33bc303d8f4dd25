"""``ConsensusConfig``: the settings of ``alignloop consensus``, in a light module the CLI reads without numpy.

``METHODS`` (the aggregation methods of ``aggregate``) and ``WEIGHTINGS`` are declared here once;
``aggregate`` and ``report`` read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, get_args

from pydantic import Field

from alignloop.config import StageConfig

Method = Literal["auto", "ranked_pairs", "bradley_terry", "plackett_luce"]
METHODS: tuple[str, ...] = get_args(Method)
Weighting = Literal["quality", "equal"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)


class ConsensusConfig(StageConfig):
    """Aggregating the project's judgements: which round, which method, whose votes count how much."""

    flags: ClassVar[dict[str, tuple[str, ...]]] = {"round_index": ("--round",)}

    round_index: int | None = Field(None, description="Only this round (default: all rounds).")
    method: Method = Field(
        "auto",
        description="Aggregation: auto (Ranked Pairs for small K, else Plackett-Luce), ranked_pairs, bradley_terry "
        "or plackett_luce.",
    )
    weighting: Weighting = Field("quality", description="quality (votes weighted by labeler agreement) or equal.")
    include_flagged: bool = Field(False, description="Let flagged labelers vote in the consensus.")
    out: Path | None = Field(
        None, description="Folder for summary.json, prompts.jsonl, labelers.png (default: <project>/consensus)."
    )
