"""The records that pass between stages. They are the contract; stages share nothing else.

A pairs file (``alignloop`` format) is JSONL of ``Comparison.to_json()`` objects::

    {"prompt": "...", "chosen": "...", "rejected": "...", "margin": 0.5,
     "messages": null | [{"role": "user", "content": "..."}],
     "split": "train" | "test",
     "agreement": 0.8,
     "provenance": {"prompt_id": 3, "chosen_id": 11, "rejected_id": 12, "labeler_ids": [1, 2, 5],
                    "guideline_version": 2, "round": 0}}

Pairs made per labeler group (``alignloop export-pairs --by-group``) also carry ``"group": "1"``, the
group whose labelers' consensus the pair is; the key is absent from everyone's pairs.

A pair the labelers' consensus placed level (made only for a reward model that learns from ties,
``RewardConfig.train_on_ties``) carries ``"tied": true``: ``chosen`` and ``rejected`` are then just its
two answers, in no meaningful order, and ``agreement`` the share of votes for ``chosen`` (about ½).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Comparison:
    """One preference: ``chosen`` was preferred to ``rejected`` as an answer to ``prompt``."""

    prompt: str  # the prompt as plain text (last user turn of a chat)
    chosen: str  # the preferred completion
    rejected: str  # the other completion
    margin: float = 0.0  # how strongly chosen wins, >= 0: from the rank gap and the labelers' agreement
    messages: list[dict[str, str]] | None = None  # the prompt as a chat, when it was one
    split: str = "train"  # "train" | "test", decided per prompt, never per pair
    agreement: float | None = None  # share of labelers' votes for this order, a tie half a vote (the human ceiling)
    provenance: dict[str, Any] = field(
        default_factory=dict
    )  # prompt_id, chosen_id, rejected_id, labeler_ids, guideline_version, round
    group: str | None = None  # the labeler group whose consensus this is (``summary.json``'s group); None = everyone's
    tied: bool = False  # the consensus placed the two level: no order to learn, only that neither is better

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        if self.group is None:  # everyone's pairs keep the format they always had
            del row["group"]
        if not self.tied:
            del row["tied"]
        return row


@dataclass
class GeneratedText:
    """One sampled completion, as a generation backend returns it."""

    text: str  # decoded completion, special tokens removed
    prompt_tokens: int  # length of the templated prompt
    completion_tokens: int  # tokens generated, end token included when there was one
    finish_reason: str  # "stop" (end token) | "length" (hit max_new_tokens)
