"""Held-out evaluation of a reward model: pairwise accuracy, loss, calibration, and the human ceiling.

Calibration compares the predicted P(chosen ≻ rejected) = σ(Δr) with what the labelers
did: the share of their votes for this order (``Comparison.agreement``, a tie half a vote; 1 when
unknown). Two ceilings come from the labelers' own votes on the same pairs:

* ``rm/ceiling``: how often a labeler agrees with the consensus — the consensus their own
  votes made, so it flatters them (a pair two of three labelers ordered by a coin still
  shows 2/3 agreement);
* ``rm/inter_labeler``: how often two labelers of the same pair agree with each other, the
  ceiling InstructGPT (72.6 %) and Stiennon et al. (66.9 %) compare their reward models
  with. A reward model far above it is fitting noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alignloop.reward.data import PairSet

if TYPE_CHECKING:
    from alignloop.reward.packing import RewardScorer

CALIBRATION_BINS = 10


def pair_deltas(
    scorer: RewardScorer, pairs: PairSet, indices: list[int], *, pad_id: int, sequences_per_batch: int
) -> list[float]:
    """r_chosen − r_rejected for the given pairs (in the order given), without gradients.

    Each distinct sequence is scored once, in batches of similar length: a prompt's K completions
    make its C(K,2) pairs, so scoring pair by pair would score every completion K − 1 times."""
    import torch

    from alignloop.reward.packing import make_batch

    device = next(scorer.parameters()).device
    wanted = sorted(
        {seq for i in indices for seq in (pairs.chosen[i], pairs.rejected[i])},
        key=lambda seq: len(pairs.sequences[seq].input_ids),
    )
    reward: dict[int, float] = {}
    was_training = scorer.training
    scorer.eval()
    with torch.inference_mode():
        step = max(1, sequences_per_batch)
        for start in range(0, len(wanted), step):
            seqs = wanted[start : start + step]
            batch = {k: v.to(device) for k, v in make_batch(pairs.sequences, seqs, pad_id, scorer.mode).items()}
            reward.update(zip(seqs, scorer(**batch).float().tolist()))
    scorer.train(was_training)
    return [reward[pairs.chosen[i]] - reward[pairs.rejected[i]] for i in indices]


@dataclass
class CalibrationBin:
    lower: float
    upper: float
    count: int
    predicted: float  # mean σ(Δr) in the bin
    observed: float  # mean labeler agreement in the bin


def pair_metrics(
    deltas: list[float],
    margins: list[float],
    agreements: list[float | None],
    *,
    use_margin: bool,
    voters: list[int] | None = None,
) -> dict[str, float]:
    """``rm/eval_loss``, ``rm/eval_accuracy``, ``rm/ece`` and, where agreement is known, ``rm/ceiling``
    (and ``rm/inter_labeler`` where ``voters``, the labelers counted on each pair, are known)."""
    n = len(deltas)
    if n == 0:
        return {}
    loss = 0.0
    for d, m in zip(deltas, margins):
        x = d - (m if use_margin else 0.0)
        loss += math.log1p(math.exp(-x)) if x > -30 else -x  # −log σ(x), stable
    accuracy = sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in deltas) / n
    bins = calibration_bins(deltas, agreements)
    ece = sum(b.count * abs(b.predicted - b.observed) for b in bins) / n
    metrics = {"rm/eval_loss": loss / n, "rm/eval_accuracy": accuracy, "rm/ece": ece, "rm/eval_pairs": float(n)}
    known = [a for a in agreements if a is not None]
    if known:
        metrics["rm/ceiling"] = sum(known) / len(known)
    inter = [inter_labeler_agreement(a, n) for a, n in zip(agreements, voters or []) if a is not None and n >= 2]
    if inter:
        metrics["rm/inter_labeler"] = sum(inter) / len(inter)
    return metrics


def inter_labeler_agreement(agreement: float, voters: int) -> float:
    """Share of the pairs of ``voters`` labelers that agree on a comparison that ``agreement`` of them
    ordered one way: (C(v, 2) + C(n − v, 2)) / C(n, 2) with v = agreement · n. A labeler who placed the
    two answers level gives half a vote to each side (``pairs.build``), so v may be a half: the formula
    then counts that labeler half with each side."""
    v = round(agreement * voters * 2) / 2
    return (v * (v - 1) + (voters - v) * (voters - v - 1)) / (voters * (voters - 1))


def calibration_bins(deltas: list[float], agreements: list[float | None]) -> list[CalibrationBin]:
    """Equal-width bins of predicted P(chosen ≻ rejected), with the labelers' observed agreement in each."""
    sums: dict[int, list[float]] = {}
    for d, a in zip(deltas, agreements):
        p = 1.0 / (1.0 + math.exp(-max(min(d, 50.0), -50.0)))
        b = min(int(p * CALIBRATION_BINS), CALIBRATION_BINS - 1)
        acc = sums.setdefault(b, [0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += p
        acc[2] += 1.0 if a is None else a
    return [
        CalibrationBin(b / CALIBRATION_BINS, (b + 1) / CALIBRATION_BINS, int(c), sp / c, so / c)
        for b, (c, sp, so) in sorted(sums.items())
    ]
