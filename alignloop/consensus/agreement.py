"""How much labelers agree: Kendall's W per prompt, Krippendorff's alpha, pairwise agreement.

- **Kendall's W** (coefficient of concordance, with the correction for ties):
  W = 12·S / (m²(n³ − n) − m·Σ_j T_j), S = Σ_i (R_i − R̄)², T_j = Σ_groups (t³ − t),
  for m labelers ranking n completions (R_i = sum of completion i's mid-ranks). 1 = identical
  rankings, 0 = no agreement.
- **Krippendorff's alpha** (ordinal by default) over the whole project: each (prompt,
  completion) is a unit, each labeler a coder, the mid-rank the value. α = 1 − D_o / D_e from
  the coincidence matrix (Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011).
- **Pairwise agreement**: of all pairs of labelers who both put a strict order on the same
  two completions, the share who order them the same way. This is the ceiling a reward
  model's pairwise accuracy is compared with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np

from alignloop.consensus.rankings import RankingSet, upper_pairs


def kendall_w(rs: RankingSet) -> np.ndarray:
    """Kendall's W (P,) with the tie correction; NaN where fewer than 2 labelers ranked."""
    mask = rs.mask
    m = mask.sum(axis=1).astype(np.float64)  # (P,)
    n = float(rs.k)
    ranks = np.where(mask[:, :, None], rs.ranks, 0.0)
    totals = ranks.sum(axis=1)  # (P, K)
    s = ((totals - m[:, None] * (n + 1) / 2) ** 2).sum(axis=1)
    # T_j = Σ (t³ − t) over tie groups: equal mid-ranks form a group, so count each
    # completion's group size t and add (t³ − t)/t = t² − 1 once per member.
    group = (rs.ranks[:, :, :, None] == rs.ranks[:, :, None, :]).sum(axis=3)  # (P, R, K)
    ties = np.where(mask, (group**2 - 1).sum(axis=2), 0.0).sum(axis=1)  # (P,)
    denom = m**2 * (n**3 - n) - m * ties
    with np.errstate(invalid="ignore", divide="ignore"):
        w = 12.0 * s / denom
    return np.where((m >= 2) & (denom > 0), w, np.nan)


def krippendorff_alpha(values: np.ndarray, metric: Literal["nominal", "ordinal", "interval"] = "ordinal") -> float:
    """Krippendorff's alpha of reliability data ``values`` (units, coders); NaN = missing.

    Units with fewer than two values are not pairable and are left out, as in the
    definition. Returns NaN when there is no variation to measure.
    """
    values = np.asarray(values, dtype=np.float64)
    present = ~np.isnan(values)
    m_u = present.sum(axis=1)
    keep = m_u >= 2
    values, present, m_u = values[keep], present[keep], m_u[keep]
    if values.size == 0:
        return float("nan")
    levels, codes = np.unique(values[present], return_inverse=True)
    n_units, v = values.shape[0], len(levels)
    counts = np.zeros((n_units, v))  # values of each level in each unit
    unit_of = np.nonzero(present)[0]
    np.add.at(counts, (unit_of, codes), 1.0)
    scaled = counts / (m_u[:, None] - 1.0)
    coincidence = scaled.T @ counts - np.diag(scaled.sum(axis=0))  # (V, V)
    n_c = coincidence.sum(axis=1)
    total = n_c.sum()
    delta = _distance(levels, n_c, metric)
    observed = (coincidence * delta).sum()
    expected = (np.outer(n_c, n_c) * delta).sum() / (total - 1.0)
    if expected == 0:
        return float("nan")
    return float(1.0 - observed / expected)


def _distance(levels: np.ndarray, n_c: np.ndarray, metric: str) -> np.ndarray:
    """Squared difference δ²(c, k) between value levels under ``metric``."""
    if metric == "nominal":
        return 1.0 - np.eye(len(levels))
    if metric == "interval":
        return (levels[:, None] - levels[None, :]) ** 2
    if metric == "ordinal":
        cum = np.cumsum(n_c)
        # Σ_{g=c..k} n_g − (n_c + n_k)/2 for c ≤ k, symmetric
        lo = np.minimum.outer(np.arange(len(levels)), np.arange(len(levels)))
        hi = np.maximum.outer(np.arange(len(levels)), np.arange(len(levels)))
        between = cum[hi] - np.concatenate([[0.0], cum])[lo]
        return (between - (n_c[lo] + n_c[hi]) / 2.0) ** 2
    raise ValueError(f"unknown metric {metric!r}")


def rank_units(sets: Iterable[RankingSet]) -> np.ndarray:
    """Reliability data for Krippendorff's alpha: one row per (prompt, completion), one column
    per labeler slot, the mid-rank as value, NaN where the slot is unused."""
    sets = [rs for rs in sets if rs.n_prompts]
    if not sets:
        return np.empty((0, 0))
    width = max(rs.mask.shape[1] for rs in sets)
    blocks = []
    for rs in sets:
        vals = np.where(rs.mask[:, :, None], rs.ranks, np.nan)  # (P, R, K)
        vals = vals.transpose(0, 2, 1).reshape(-1, rs.mask.shape[1])  # (P·K, R)
        pad = np.full((vals.shape[0], width - vals.shape[1]), np.nan)
        blocks.append(np.hstack([vals, pad]))
    return np.vstack(blocks)


def pair_vote_counts(rs: RankingSet) -> tuple[np.ndarray, np.ndarray]:
    """For each prompt and pair i < j: labelers ranking i above j, and j above i. (P, n_pairs) each."""
    i_idx, j_idx = upper_pairs(rs.k)
    d = rs.ranks[:, :, j_idx] - rs.ranks[:, :, i_idx]  # (P, R, n_pairs): > 0 means i above j
    counted = rs.mask[:, :, None]
    above = ((d > 0) & counted).sum(axis=1)
    below = ((d < 0) & counted).sum(axis=1)
    return above, below


def pairwise_agreement_counts(rs: RankingSet) -> tuple[float, float]:
    """(agreeing labeler pairs, labeler pairs) over every completion pair both ordered strictly."""
    above, below = pair_vote_counts(rs)
    agree = above * (above - 1) / 2 + below * (below - 1) / 2
    strict = above + below
    return float(agree.sum()), float((strict * (strict - 1) / 2).sum())


def pairwise_agreement(sets: Iterable[RankingSet]) -> float:
    """Share of labeler pairs that order a completion pair the same way; NaN with no overlap."""
    agree = total = 0.0
    for rs in sets:
        a, t = pairwise_agreement_counts(rs)
        agree += a
        total += t
    return agree / total if total else float("nan")
