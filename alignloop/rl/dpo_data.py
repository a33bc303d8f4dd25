"""DPO's input: comparisons read from a pairs file or a project, split by prompt, tokenised and batched.

A batch (``collate``) holds each prompt once, left-padded, and the two completions of each
pair interleaved after it, right-padded; ``alignloop.rl.dpo_logps.batch_logps`` runs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from alignloop.errors import AlignloopError, InputError
from alignloop.records import Comparison
from alignloop.rl.dpo_config import DPOConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class EncodedPair:
    """Token ids of one comparison: the templated prompt and each completion (end token included)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def load_pairs(config: DPOConfig) -> list[Comparison]:
    """The comparisons to train on: a pairs file (any supported format) or a project's consensus pairs."""
    from alignloop.pairs import build_pairs, read_pairs

    if (config.pairs is None) == (config.project is None):
        raise AlignloopError("give a pairs file (--pairs) or a project (--project), one of them")
    if config.pairs is not None:
        pairs = read_pairs(config.pairs)
    else:
        from alignloop.project import open_project

        with open_project(config.project) as handle:
            pairs = build_pairs(handle)
    pairs = [p for p in pairs if not p.tied]  # a tie has no side for DPO to prefer
    if not pairs:
        raise InputError("no pairs to train on", file=config.pairs or config.project)
    return pairs


def split_pairs(
    pairs: Sequence[Comparison], eval_fraction: float, seed: int
) -> tuple[list[Comparison], list[Comparison]]:
    """(train, held-out). Pairs marked ``split="test"`` are held out; if none are, a hash of the prompt
    picks ``eval_fraction`` of the prompts, so both sides of one prompt never straddle the split."""
    if any(p.split == "test" for p in pairs):
        return [p for p in pairs if p.split != "test"], [p for p in pairs if p.split == "test"]

    def held_out(prompt: str) -> bool:
        digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction

    return [p for p in pairs if not held_out(p.prompt)], [p for p in pairs if held_out(p.prompt)]


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Comparison],
    max_length: int,
    max_prompt_length: int,
) -> list[EncodedPair]:
    """Apply the chat template to each prompt (its ``messages`` when present) and tokenise the completions.

    A prompt longer than ``max_prompt_length`` keeps its end (the part nearest the answer);
    completions are cut so that prompt + completion fits ``max_length``. Each completion
    ends with the end token, as a sampled completion that stopped would.
    """
    from alignloop.backends import encode_prompts

    if not pairs:
        return []
    conversations = [p.messages or [{"role": "user", "content": p.prompt}] for p in pairs]
    prompts = encode_prompts(tokenizer, conversations)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    chosen = tokenizer([p.chosen for p in pairs], add_special_tokens=False)["input_ids"]
    rejected = tokenizer([p.rejected for p in pairs], add_special_tokens=False)["input_ids"]
    encoded = []
    for prompt, c, r in zip(prompts, chosen, rejected):
        prompt = prompt[-max_prompt_length:]
        room = max_length - len(prompt)
        encoded.append(EncodedPair(prompt, (list(c) + eos)[:room], (list(r) + eos)[:room]))
    return encoded


def collate(batch: Sequence[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompts once, left-padded; completions interleaved ``[c_1, r_1, c_2, r_2, ...]``, right-padded.

    Returns ``prompt_ids``, ``prompt_mask``, ``prompt_positions`` (B, P) and ``completion_ids``,
    ``completion_mask`` (float), ``completion_positions`` (2B, C), and ``attention_mask``
    (2B, P + C) over prompt and completion together. Left-padding puts every prompt's last
    token in column P − 1, whose logits predict each completion's first token.
    """
    width_p = max(len(p.prompt) for p in batch)
    width_c = max(max(len(p.chosen), len(p.rejected)) for p in batch)
    prompt_ids = torch.full((len(batch), width_p), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros_like(prompt_ids)
    completion_ids = torch.full((2 * len(batch), width_c), pad_id, dtype=torch.long)
    completion_mask = torch.zeros((2 * len(batch), width_c), dtype=torch.float32)
    for i, pair in enumerate(batch):
        prompt_ids[i, width_p - len(pair.prompt) :] = torch.tensor(pair.prompt, dtype=torch.long)
        prompt_mask[i, width_p - len(pair.prompt) :] = 1
        for row, completion in ((2 * i, pair.chosen), (2 * i + 1, pair.rejected)):
            completion_ids[row, : len(completion)] = torch.tensor(completion, dtype=torch.long)
            completion_mask[row, : len(completion)] = 1
    prompt_lengths = prompt_mask.sum(-1, keepdim=True)  # (B, 1)
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "prompt_positions": (prompt_mask.cumsum(-1) - 1).clamp(min=0),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "completion_positions": prompt_lengths.repeat_interleave(2, dim=0) + torch.arange(width_c),
        "attention_mask": torch.cat([prompt_mask.repeat_interleave(2, dim=0), completion_mask.long()], dim=1),
    }
