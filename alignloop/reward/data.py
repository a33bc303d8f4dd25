"""Comparisons → token ids → padded batches, for training, evaluation and scoring.

How a (prompt, completion) becomes one input sequence depends on the backbone's tokenizer:

* ``pair``: an encoder with a separator token (BERT, MiniLM) reads the text pair
  ``[CLS] prompt [SEP] completion [SEP]``, with segment ids;
* ``chat``: a decoder with a chat template reads the conversation with the completion
  as the assistant's turn (the score head reads the last token);
* ``text``: any other tokenizer reads ``prompt\\n\\ncompletion`` followed by its end token.

A tokenizer that erases line breaks (BERT's normaliser turns them into spaces) would leave the
reward model blind to layout: a numbered list and the same words run together read alike. For
such a tokenizer every line break is written as a symbol it keeps (``newline_marker``), and the
symbol is saved with the model so that scoring writes texts as training did.

Nothing is truncated silently: a pair that does not fit ``max_length`` is skipped or cut
as configured, and every skip or cut is counted in a :class:`DataReport`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from alignloop.errors import AlignloopError, InputError
from alignloop.records import Comparison

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

InputFormat = Literal["pair", "chat", "text"]
NEWLINE_SYMBOLS = ("¶", "|")  # candidates for a line break, in order of preference
Prompt = str | list[dict[str, str]]

SKIP_REASONS = {
    "empty_completion": "a completion is empty",
    "identical": "chosen and rejected are the same text",
    "prompt_too_long": "the prompt alone fills the context",
    "too_long": "prompt + completion is longer than max_length",
}


@dataclass
class DataReport:
    """What happened to the input pairs: kept, skipped (by reason) and cut to fit."""

    total: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> pairs
    truncated: int = 0  # pairs with a completion cut to fit max_length
    tied: int = 0  # kept pairs that are ties (``Comparison.tied``), all in the training split
    first_skipped: dict[str, int] = field(default_factory=dict)  # reason -> index of the first such pair

    def summary(self) -> str:
        parts = [f"{self.kept} of {self.total} pairs used" + (f" ({self.tied} of them ties)" if self.tied else "")]
        for reason, count in sorted(self.skipped.items()):
            where = self.first_skipped.get(reason)
            parts.append(f"{count} skipped because {SKIP_REASONS[reason]} (first: pair {where})")
        if self.truncated:
            parts.append(f"{self.truncated} had a completion cut to fit max_length")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "truncated": self.truncated,
            "tied": self.tied,
        }


def assign_test_split(pairs: list[Comparison], fraction: float, seed: int) -> list[Comparison]:
    """If no pair is in the test split, put ``fraction`` of the prompts there (by prompt hash); returns copies."""
    if fraction <= 0 or any(p.split == "test" for p in pairs):
        return pairs
    out = []
    for pair in pairs:
        digest = hashlib.sha256(f"{seed}\0{prompt_key(_prompt_of(pair))}".encode()).digest()
        out.append(replace(pair, split="test" if int.from_bytes(digest[:8], "big") / 2**64 < fraction else "train"))
    return out


def swap_splits(pairs: list[Comparison], source: object) -> list[Comparison]:
    """The pairs with train and test exchanged: a held-out reward model learns from the test split's
    labels and is measured on the train split's. Refused when ``source`` has no test split to learn from."""
    if not any(p.split == "test" for p in pairs):
        raise AlignloopError(
            f"{source}: train_split is test, but no pair is in the test split (add test prompts and label them)"
        )
    return [replace(p, split="train" if p.split == "test" else "test") for p in pairs]


def _prompt_of(pair: Comparison) -> Prompt:
    return pair.messages if pair.messages else pair.prompt


def prompt_key(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def input_format(tokenizer: PreTrainedTokenizerBase) -> InputFormat:
    """How this backbone reads a (prompt, completion): see the module docstring."""
    if getattr(tokenizer, "chat_template", None):
        return "chat"
    if tokenizer.sep_token is not None and tokenizer.cls_token is not None:
        return "pair"
    return "text"


def newline_marker(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The symbol that stands for a line break with this tokenizer, or None where line breaks survive as they are."""
    plain = tokenizer("a b", add_special_tokens=False)["input_ids"]
    if tokenizer("a\nb", add_special_tokens=False)["input_ids"] != plain:
        return None
    for symbol in NEWLINE_SYMBOLS:
        ids = tokenizer(symbol, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] != tokenizer.unk_token_id:
            return symbol
    return None


@dataclass
class Encoded:
    """One tokenised (prompt, completion): ids and, for encoders, segment ids."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    status: str  # "ok" | "truncated" | "prompt_too_long" | "too_long"
    group: int | None = None  # per-group models: the index of the labeler group whose head scores it


class SequenceEncoder:
    """Turns (prompt, completion) into one token sequence of at most ``max_length`` tokens.

    ``newline``: the symbol written for each line break (``newline_marker``), or None to pass texts as they are.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        fmt: InputFormat | None = None,
        newline: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.format = fmt or input_format(tokenizer)
        self.max_length = max_length
        self.newline = newline

    def encode(self, prompts: list[Prompt], completions: list[str], *, truncate: bool) -> list[Encoded]:
        """Encode each row; rows too long are cut at the completion's end when ``truncate``, else marked."""
        if not prompts:
            return []
        if self.newline is not None:
            prompts = [
                self._mark(p) if isinstance(p, str) else [{**m, "content": self._mark(m.get("content", ""))} for m in p]
                for p in prompts
            ]
            completions = [self._mark(c) for c in completions]
        if self.format == "pair":
            return self._encode_pairs([_as_text(p) for p in prompts], completions, truncate)
        if self.format == "chat":
            messages = [_as_messages(p) for p in prompts]
            full = [
                self.tokenizer.apply_chat_template([*m, {"role": "assistant", "content": c}], tokenize=False)
                for m, c in zip(messages, completions)
            ]
            heads = [
                self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages
            ]
            special = False
        else:
            heads = [_as_text(p) + "\n\n" for p in prompts]
            eos = self.tokenizer.eos_token or ""
            full = [h + c + eos for h, c in zip(heads, completions)]
            special = True
        full_ids = self.tokenizer(full, add_special_tokens=special, verbose=False)["input_ids"]
        head_ids = self.tokenizer(heads, add_special_tokens=special, verbose=False)["input_ids"]
        out = []
        for ids, head in zip(full_ids, head_ids):
            if len(ids) <= self.max_length:
                out.append(Encoded(ids, None, "ok"))
            elif len(head) >= self.max_length:
                out.append(Encoded([], None, "prompt_too_long"))
            elif truncate:
                out.append(Encoded(ids[: self.max_length], None, "truncated"))
            else:
                out.append(Encoded([], None, "too_long"))
        return out

    def _mark(self, text: str) -> str:
        return text.replace("\r\n", "\n").replace("\n", f" {self.newline} ")

    def _encode_pairs(self, prompts: list[str], completions: list[str], truncate: bool) -> list[Encoded]:
        tok = self.tokenizer
        enc = tok(prompts, completions, verbose=False)
        prompt_lens = [len(ids) for ids in tok(prompts, verbose=False)["input_ids"]]  # [CLS] prompt [SEP]
        out: list[Encoded] = []
        cut: list[int] = []
        for i, ids in enumerate(enc["input_ids"]):
            types = enc["token_type_ids"][i] if "token_type_ids" in enc else None
            if len(ids) <= self.max_length:
                out.append(Encoded(ids, types, "ok"))
            elif prompt_lens[i] + 2 > self.max_length:  # no room for one completion token and the final [SEP]
                out.append(Encoded([], None, "prompt_too_long"))
            elif truncate:
                out.append(Encoded([], None, "truncated"))
                cut.append(i)
            else:
                out.append(Encoded([], None, "too_long"))
        if cut:
            short = tok(
                [prompts[i] for i in cut],
                [completions[i] for i in cut],
                truncation="only_second",
                max_length=self.max_length,
                verbose=False,
            )
            for j, i in enumerate(cut):
                out[i].input_ids = short["input_ids"][j]
                out[i].token_type_ids = short["token_type_ids"][j] if "token_type_ids" in short else None
        return out


def _as_text(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
    return users[-1] if users else (prompt[-1].get("content", "") if prompt else "")


def _as_messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


@dataclass
class PairSet:
    """Tokenised comparisons. Pair ``i`` compares sequence ``chosen[i]`` with ``rejected[i]``."""

    sequences: list[Encoded]  # unique (prompt, completion) sequences
    chosen: list[int]
    rejected: list[int]
    margin: list[float]
    agreement: list[float | None]
    prompt: list[int] = field(default_factory=list)  # index of each pair's prompt (pairs of one prompt share it)
    voters: list[int] = field(default_factory=list)  # labelers whose votes make each pair's agreement (0: unknown)
    tied: list[bool] = field(default_factory=list)  # the pair is a tie (``Comparison.tied``): target ½, no order

    def __len__(self) -> int:
        return len(self.chosen)

    def pair_length(self, i: int) -> int:
        return max(len(self.sequences[self.chosen[i]].input_ids), len(self.sequences[self.rejected[i]].input_ids))


def encode_pairs(
    pairs: list[Comparison], encoder: SequenceEncoder, *, too_long: str, groups: list[str] | None = None
) -> tuple[PairSet, PairSet, DataReport]:
    """Tokenise the pairs into train and test sets, skipping (and counting) what cannot be used.

    ``too_long="error"`` raises ``InputError`` naming the first pair that does not fit. With
    ``groups`` (a per-group model's group names) a sequence is a (prompt, completion, group): the
    same text judged by two groups is two sequences, each with its ``Encoded.group``. Ties
    (``Comparison.tied``) come only in the training split: ``train.usable_ties`` leaves out held-out ones.
    """
    report = DataReport(total=len(pairs))
    keys: dict[tuple[str, str, int | None], int] = {}
    rows: list[tuple[Prompt, str, int | None]] = []
    prompt_ids: dict[str, int] = {}
    group_index = {name: i for i, name in enumerate(groups or [])}

    def seq_id(prompt: Prompt, completion: str, group: str | None) -> int:
        key = (prompt_key(prompt), completion, group_index[group] if groups else None)
        if key not in keys:
            keys[key] = len(rows)
            rows.append((prompt, completion, key[2]))
        return keys[key]

    usable: list[tuple[int, int, int]] = []  # (pair index, chosen seq, rejected seq)
    for i, pair in enumerate(pairs):
        reason = None
        if not pair.chosen.strip() or not pair.rejected.strip():
            reason = "empty_completion"
        elif pair.chosen.strip() == pair.rejected.strip():
            reason = "identical"
        if reason:
            _skip(report, reason, i)
            continue
        prompt = _prompt_of(pair)
        usable.append((i, seq_id(prompt, pair.chosen, pair.group), seq_id(prompt, pair.rejected, pair.group)))

    encoded = encoder.encode([r[0] for r in rows], [r[1] for r in rows], truncate=too_long == "truncate")
    for enc, row in zip(encoded, rows):
        enc.group = row[2]
    sets = {"train": PairSet(encoded, [], [], [], []), "test": PairSet(encoded, [], [], [], [])}
    for i, c, r in usable:
        statuses = {encoded[c].status, encoded[r].status}
        bad = next((s for s in ("prompt_too_long", "too_long") if s in statuses), None)
        if bad:
            if too_long == "error":
                raise InputError(
                    f"pair {i} ({SKIP_REASONS[bad]}; max_length={encoder.max_length}); "
                    "raise max_length or set too_long to skip or truncate",
                    field="prompt" if bad == "prompt_too_long" else "chosen/rejected",
                )
            _skip(report, bad, i)
            continue
        if encoded[c].input_ids == encoded[r].input_ids:
            _skip(report, "identical", i)
            continue
        report.truncated += "truncated" in statuses
        pair = pairs[i]
        target = sets["test" if pair.split == "test" else "train"]
        target.chosen.append(c)
        target.rejected.append(r)
        target.margin.append(float(pair.margin or 0.0))
        target.agreement.append(pair.agreement)
        target.prompt.append(prompt_ids.setdefault(prompt_key(_prompt_of(pair)), len(prompt_ids)))
        target.voters.append(len(pair.provenance.get("labeler_ids") or ()))
        target.tied.append(pair.tied)
        report.kept += 1
        report.tied += pair.tied
    if report.skipped or report.truncated:
        log.warning("reward data: %s", report.summary())
    return sets["train"], sets["test"], report


def _skip(report: DataReport, reason: str, index: int) -> None:
    report.skipped[reason] += 1
    report.first_skipped.setdefault(reason, index)


def epoch_batches(
    lengths: list[int],
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    bucketing: bool,
    min_size: int = 1,
    groups: list[int] | None = None,
) -> list[list[int]]:
    """The pair indices of each batch of one epoch, a pure function of (seed, epoch).

    With ``groups`` (each pair's prompt), a prompt's pairs always share a batch: batches
    are filled with whole prompts until they hold ``batch_size`` pairs, so every completion
    is scored once per step however many comparisons it is in (InstructGPT's batching of
    all C(K,2) comparisons of a prompt as one element). With bucketing, the units (pairs,
    or prompts) are shuffled, cut into windows of 50 batches, sorted by length inside each
    window and batched, and the batches shuffled: each batch holds units of similar length
    (little padding) while the order stays random. A last batch smaller than ``min_size``
    (the number of processes) joins the one before it.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups if groups is not None else range(len(lengths))):
        members.setdefault(g, []).append(i)
    units = list(members.values())
    rng.shuffle(units)
    if bucketing:
        window = max(1, batch_size * 50 * len(units) // max(1, len(lengths)))
        units = [
            u
            for s in range(0, len(units), window)
            for u in sorted(units[s : s + window], key=lambda u: max(lengths[i] for i in u))
        ]
    batches: list[list[int]] = [[]]
    for unit in units:
        if len(batches[-1]) >= batch_size:
            batches.append([])
        batches[-1].extend(unit)
    if len(batches) > 1 and len(batches[-1]) < min_size:
        batches[-2].extend(batches.pop())
    if bucketing:
        rng.shuffle(batches)
    return batches


def collate(sequences: list[Encoded], ids: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the sequences to the longest: ``input_ids``, ``attention_mask`` (``token_type_ids``), (n, L)."""
    import torch

    width = max(len(sequences[i].input_ids) for i in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    with_types = sequences[ids[0]].token_type_ids is not None
    types = torch.zeros((len(ids), width), dtype=torch.long) if with_types else None
    for row, i in enumerate(ids):
        seq = sequences[i]
        n = len(seq.input_ids)
        input_ids[row, :n] = torch.tensor(seq.input_ids)
        mask[row, :n] = 1
        if types is not None:
            types[row, :n] = torch.tensor(seq.token_type_ids)
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    return batch
