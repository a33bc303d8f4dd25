"""How unsure a reward model is about the order of one prompt's K completions (for active labeling).

The reward model says P(i ≻ j) = σ(r_i − r_j) on raw rewards (Bradley–Terry). A prompt is
worth a labeler's time when that probability is near ½ for many pairs, or when the members
of an ensemble disagree about the difference:

    uncertainty = mean over the C(K, 2) pairs i < j of  H(σ(r̄_i − r̄_j))
                + mean over the same pairs of  std over members of (r_i − r_j)      (ensembles only)

with H(p) = −p log₂ p − (1 − p) log₂(1 − p) the binary entropy in bits (1 for a tie, → 0 as
the model grows sure) and r̄ the ensemble's mean reward. One model (or M = 1) has no
disagreement term, so its uncertainty lies in [0, 1]. The members of an ensemble run
(``train-reward --ensemble``) come from ``RewardModel.member_scores(normalize=False)``, each on
the ensemble's raw scale μ̄ + σ̄ · (r_m − μ_m) / σ_m, so r̄ is the ensemble's raw score and the
disagreement is in its units. Pure numpy: no torch, no store.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from alignloop.errors import AlignloopError

LN2 = math.log(2.0)


def binary_entropy_of_sigmoid(diff: ArrayLike) -> np.ndarray:
    """H(σ(d)) in bits, elementwise; stable for any d (it depends on |d| only).

    With a = |d|: H = log(1 + e^−a) + a·σ(−a) nats, divided by ln 2.
    """
    a = np.abs(np.asarray(diff, dtype=np.float64))
    e = np.exp(-a)  # in (0, 1]: never overflows
    return (np.log1p(e) + a * e / (1.0 + e)) / LN2


def ranking_uncertainty(rewards: ArrayLike) -> float:
    """The uncertainty of one prompt: ``rewards`` are its K completions' raw rewards, shape (K,),
    or an ensemble's, shape (M, K) (member m's reward for completion k).

    Raw rewards, not normalised ones: σ(r_i − r_j) is the probability the model was trained to
    give. Returns the mean binary entropy (bits) of the C(K, 2) pairwise preferences of the
    ensemble mean, plus, for M > 1, the mean over pairs of the members' standard deviation
    (population, ddof 0) of r_i − r_j. Raises ``AlignloopError`` for fewer than two completions
    or a non-finite reward.
    """
    scores = np.asarray(rewards, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[None, :]  # (1, K): one member
    if scores.ndim != 2:
        raise AlignloopError(f"expected rewards of shape (K,) or (M, K), got shape {scores.shape}")
    n_members, k = scores.shape
    if k < 2 or n_members < 1:
        raise AlignloopError(f"a prompt needs at least 2 scored completions to rank, got {k}")
    if not np.isfinite(scores).all():
        raise AlignloopError("a reward is not a finite number (NaN or infinity)")
    i, j = np.triu_indices(k, 1)  # the C(K, 2) pairs i < j
    diffs = scores[:, i] - scores[:, j]  # (M, pairs)
    entropy = binary_entropy_of_sigmoid(diffs.mean(axis=0)).mean()
    disagreement = diffs.std(axis=0).mean() if n_members > 1 else 0.0
    return float(entropy + disagreement)
