"""A reward model conditioned on who judges: one shared backbone, one score head per labeler group.

Groups of labelers with different tastes (``consensus/groups.py``) each get their own consensus
pairs (``alignloop export-pairs --by-group``: every pair carries its ``group``). With
``RewardConfig.per_group`` the backbone is shared and each group g has its own linear head on the
features the backbone's head would read (the pooled ``[CLS]``, the answer's mean, a decoder's
last token): r_g(x) = w_g · h(x) + b_g. A pair of group g is trained through head g only,
−log σ(r_g(chosen) − r_g(rejected)), so every group's pairs shape the shared h and only their own
w_g. Every head starts as a copy of the backbone's own (seeded) head, so step 0 is the pooled
model.

Why heads rather than a group embedding added to h before one head: w · (h + e_g) + b =
w · h + (w · e_g + b) only shifts every score of a group by a constant, which cancels in
r(chosen) − r(rejected) — it cannot order any pair differently. An embedding would have to enter
the backbone (a group token in the input), which makes every text's forward group-specific; a
head per group adds H + 1 parameters per group and costs nothing at scoring time.

A sequence is a (prompt, completion, group): the same answer judged by two groups is scored by
each group's head (``Encoded.group``, ``make_batch``'s ``groups``). Saved in ``model/`` next to
the backbone: ``group_heads.safetensors`` (``weight`` (G, H), ``bias`` (G,)) and the group
names in ``alignloop_reward.json``; ``normalization.json`` holds each group's statistics under
``groups``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from alignloop.errors import AlignloopError
from alignloop.records import Comparison
from alignloop.reward.data import PairSet
from alignloop.reward.evaluate import pair_metrics
from alignloop.reward.packing import RewardScorer

HEADS_FILE = "group_heads.safetensors"  # in model/: the per-group heads


class GroupedScorer(nn.Module):
    """A ``RewardScorer``'s backbone with one linear head per group: raw rewards (n,), each read by its
    sequence's group head (``groups`` (n,), indices into ``names``)."""

    def __init__(self, scorer: RewardScorer, names: list[str]) -> None:
        super().__init__()
        if scorer.mode is None:
            raise AlignloopError(
                "per-group heads read packed batches: keep packing on, with a BERT-style encoder or a decoder "
                "with a score head"
            )
        self.scorer = scorer
        self.names = list(names)
        head = scorer.head
        self.heads = nn.Linear(head.in_features, len(names), bias=head.bias is not None)  # row g: group g's head
        with torch.no_grad():
            self.heads.weight.copy_(head.weight.expand(len(names), -1))
            if head.bias is not None:
                self.heads.bias.copy_(head.bias.expand(len(names)))
        head.requires_grad_(False)  # the backbone's own head is never read (and DDP wants no idle parameter)

    @property
    def mode(self) -> str | None:
        return self.scorer.mode

    @property
    def model(self) -> nn.Module:
        """The backbone (a sequence classifier), as ``RewardScorer.model``: what ``save_model`` saves."""
        return self.scorer.model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, groups: torch.Tensor, **inputs: torch.Tensor
    ) -> torch.Tensor:
        features = self.scorer.features(input_ids, attention_mask, **inputs)  # (n, hidden)
        every = self.heads(features)  # (n, groups): each sequence under every group's head
        return every.gather(1, groups[:, None]).squeeze(1)

    def save(self, model_dir: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().float().cpu().contiguous() for k, v in self.heads.state_dict().items()}
        save_file(state, str(model_dir / HEADS_FILE))

    def load(self, model_dir: Path) -> None:
        from safetensors.torch import load_file

        device = self.heads.weight.device
        self.heads.load_state_dict({k: v.to(device) for k, v in load_file(str(model_dir / HEADS_FILE)).items()})


def group_names(pairs: list[Comparison]) -> list[str]:
    """The groups of per-group training pairs, sorted; refuses pairs without a group."""
    missing = sum(p.group is None for p in pairs)
    if missing:
        raise AlignloopError(
            f"per_group needs pairs that carry their labeler group, and {missing} of {len(pairs)} have none: "
            "make them with `alignloop export-pairs --by-group`"
        )
    return sorted({p.group for p in pairs if p.group is not None})


def group_metrics(deltas: list[float], test_set: PairSet, names: list[str], *, use_margin: bool) -> dict[str, float]:
    """``pair_metrics`` of each group's held-out pairs, named ``rm/<metric>/<group>``."""
    out: dict[str, float] = {}
    for g, name in enumerate(names):
        rows = [i for i in range(len(test_set)) if test_set.sequences[test_set.chosen[i]].group == g]
        metrics = pair_metrics(
            [deltas[i] for i in rows],
            [test_set.margin[i] for i in rows],
            [test_set.agreement[i] for i in rows],
            use_margin=use_margin,
            voters=[test_set.voters[i] for i in rows],
        )
        out.update({f"{key}/{name}": value for key, value in metrics.items()})
    return out
