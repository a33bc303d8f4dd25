"""Scoring many sequences in one forward without padding them: packing.

Padding a batch to its longest sequence wastes compute on pad tokens, and in a batch of
pairs the shorter side of every pair is padded to the longer. Packing places several
short sequences side by side in one row of the batch's longest length, restarts their
position ids, and gives attention a block-diagonal mask (causal inside each block for a
decoder), so each sequence sees exactly what it would see alone. The reward is read
from each sequence's own token: ``[CLS]`` through the pooler for a BERT-style encoder,
the last token for a decoder with a score head — what ``AutoModelForSequenceClassification``
reads from an unpacked row.

Backbones whose head is not one of these two shapes fall back to padding.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from alignloop.errors import AlignloopError
from alignloop.reward.data import Encoded, collate

PackingMode = Literal["encoder", "decoder"]
Pooling = Literal["cls", "mean"]


def packing_mode(model: nn.Module) -> PackingMode | None:
    """How ``model`` (a sequence classifier, possibly wrapped by peft) can read packed rows, or None."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    bert = getattr(inner, "bert", None)
    if bert is not None and getattr(bert, "pooler", None) is not None and hasattr(inner, "classifier"):
        return "encoder"
    if hasattr(inner, "model") and hasattr(inner, "score"):
        return "decoder"
    return None


def make_batch(
    sequences: list[Encoded], ids: list[int], pad_id: int, mode: PackingMode | None
) -> dict[str, torch.Tensor]:
    """The model inputs for sequences ``ids``: padded rows when ``mode`` is None, packed rows otherwise.

    A packed batch has ``input_ids``, ``position_ids`` (and ``token_type_ids``) of shape
    (rows, width), an additive ``attention_mask`` (rows, 1, width, width) and ``reads`` (n,),
    the flat index of the token each sequence's reward is read from, in the order of ``ids``.
    """
    if mode is None:
        return collate(sequences, ids, pad_id)
    lengths = [len(sequences[i].input_ids) for i in ids]
    width = max(lengths)
    rows: list[list[int]] = []  # positions in ``ids`` placed in each row
    free: list[int] = []
    for j in sorted(range(len(ids)), key=lambda j: -lengths[j]):  # first fit, longest first
        row = next((r for r, room in enumerate(free) if room >= lengths[j]), None)
        if row is None:
            rows.append([])
            free.append(width)
            row = len(rows) - 1
        rows[row].append(j)
        free[row] -= lengths[j]

    n_rows = len(rows)
    input_ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((n_rows, width), dtype=torch.long)
    segment = torch.full((n_rows, width), -1, dtype=torch.long)  # which sequence each token belongs to; -1 = pad
    with_types = sequences[ids[0]].token_type_ids is not None
    token_types = torch.zeros((n_rows, width), dtype=torch.long)
    reads = torch.zeros(len(ids), dtype=torch.long)
    for r, members in enumerate(rows):
        start = 0
        for j in members:
            seq, n = sequences[ids[j]], lengths[j]
            input_ids[r, start : start + n] = torch.tensor(seq.input_ids)
            position_ids[r, start : start + n] = torch.arange(n)
            segment[r, start : start + n] = j
            if with_types:
                token_types[r, start : start + n] = torch.tensor(seq.token_type_ids)
            reads[j] = r * width + (start if mode == "encoder" else start + n - 1)
            start += n

    allowed = (segment[:, :, None] == segment[:, None, :]) & (segment[:, :, None] >= 0)  # (rows, width, width)
    if mode == "decoder":
        allowed &= torch.ones(width, width, dtype=torch.bool).tril()
    allowed |= torch.eye(width, dtype=torch.bool)  # a pad token attends to itself, so no row of the softmax is empty
    mask = torch.zeros((n_rows, 1, width, width))
    mask.masked_fill_(~allowed[:, None], torch.finfo(mask.dtype).min)
    batch = {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "attention_mask": mask,
        "reads": reads,
        "segments": segment,
    }
    if with_types:
        batch["token_type_ids"] = token_types
    if sequences[ids[0]].group is not None:  # a per-group model: the head each sequence is read by
        batch["groups"] = torch.tensor([sequences[i].group for i in ids])
    return batch


class RewardScorer(nn.Module):
    """A one-output sequence classifier that returns raw rewards, (n,), for padded or packed batches.

    Training, evaluation and scoring call this module (it is what DDP wraps), so the
    rewards are computed the same way everywhere. ``pooling="mean"`` (encoders only) feeds
    the classifier the mean of the answer's final hidden states — the tokens of segment B
    in ``[CLS] prompt [SEP] answer [SEP]`` — instead of the pooled ``[CLS]``: sentence
    encoders such as all-MiniLM-L6-v2 were trained to summarise a text by that mean, and
    their ``[CLS]`` pooler was not trained for it.
    """

    def __init__(self, model: nn.Module, *, packing: bool = True, pooling: Pooling = "cls") -> None:
        super().__init__()
        self.model = model
        self.mode = packing_mode(model) if packing else None
        self.pooling = pooling
        if pooling == "mean" and not hasattr(self._inner, "bert"):
            raise AlignloopError("pooling=mean needs a BERT-style encoder backbone (such as the default MiniLM)")

    @property
    def _inner(self) -> nn.Module:
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    @property
    def head(self) -> nn.Module:
        """The backbone's score head: the encoder's ``classifier`` or the decoder's ``score``."""
        return self._inner.classifier if hasattr(self._inner, "bert") else self._inner.score

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls" and "reads" not in inputs:  # padded rows: the classifier as the checkpoint has it
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **inputs
            ).logits.squeeze(-1)
        return self.head(self.features(input_ids, attention_mask, **inputs)).squeeze(-1)

    def features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        reads: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        **inputs: torch.Tensor,
    ) -> torch.Tensor:
        """What the score head reads, (n, hidden): the pooled ``[CLS]``, the answer's mean or the last token.

        Packed batches (``reads``) for ``cls`` pooling; packed or padded ones for ``mean``.
        """
        inner = self._inner
        if self.pooling == "mean":
            n = None if reads is None else len(reads)
            return inner.dropout(self._mean_pooled(inner, input_ids, attention_mask, segments, n, **inputs))
        if reads is None:
            raise AlignloopError("the score head's input is read from packed batches only")
        mask = attention_mask.to(next(self.parameters()).dtype)
        if self.mode == "encoder":
            hidden = inner.bert(input_ids=input_ids, attention_mask=mask, **inputs).last_hidden_state
            cls = hidden.flatten(0, 1)[reads]  # (n, hidden)
            return inner.dropout(inner.bert.pooler.activation(inner.bert.pooler.dense(cls)))
        hidden = inner.model(input_ids=input_ids, attention_mask=mask, use_cache=False, **inputs).last_hidden_state
        return hidden.flatten(0, 1)[reads]

    def _mean_pooled(
        self,
        inner: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        segments: torch.Tensor | None,
        n: int | None,
        **inputs: torch.Tensor,
    ) -> torch.Tensor:
        """The mean final hidden state of each sequence's answer tokens; (n, hidden)."""
        if segments is None:  # padded rows: one sequence per row
            mask = attention_mask
            segments = torch.where(
                attention_mask.bool(), torch.arange(len(input_ids), device=input_ids.device)[:, None], -1
            )
            n = len(input_ids)
        else:
            mask = attention_mask.to(next(self.parameters()).dtype)
        hidden = inner.bert(input_ids=input_ids, attention_mask=mask, **inputs).last_hidden_state  # (rows, width, H)
        types = inputs.get("token_type_ids")
        answer = segments >= 0
        if types is not None:
            answer &= types == 1  # segment B: the answer
        which = segments.flatten()[answer.flatten()]  # (tokens,) sequence of each answer token
        summed = hidden.new_zeros(n, hidden.shape[-1]).index_add_(0, which, hidden.flatten(0, 1)[answer.flatten()])
        counts = torch.bincount(which, minlength=n).clamp(min=1).to(hidden.dtype)
        return summed / counts[:, None]
