"""Groups of labelers: telling a consistent difference of taste from a misreading.

Labelers can disagree for good reason: three of them prefer warm answers, three prefer
short ones, and each three agree among themselves. Pooled into one consensus, the smaller
or less typical of two such groups looks like a row of outliers. This module finds the
groups from who agrees with whom, so the outlier rule can score each labeler against their
own group and keep flagging only the labeler who agrees with no one.

**Agreement matrix.** For every two labelers, the Kendall tau-b of their rankings on each
prompt both judged, summed (``tau_sum``) and counted (``shared``). A mean over few shared
prompts is shrunk toward the mean of all pairs, like a labeler's ``tau_shrunk``:
``(Σ tau + s·mean) / (n + s)``, prior strength ``s`` = 5 judgements.

**Clustering** (average linkage, pooled): every labeler starts alone; the two clusters with
the highest agreement between them (their members' taus pooled over all shared prompts,
shrunk) are merged when the merge test passes, until none does. Under a labeler's noise,
agreement between two people of one taste is about the product of their reliabilities, so
the tests divide it by the clusters' own agreement (Spearman's correction for attenuation):

- two labelers alone: merged when they agree at least ``MIN_AGREEMENT`` (0.2);
- a labeler and a cluster: merged when ``between / sqrt(within)`` — the labeler's estimated
  agreement with the cluster's taste, free of the cluster's own noise — is at least
  ``MIN_FIT`` (0.3);
- two clusters: merged when ``between / sqrt(within_a · within_b)`` — the correlation of
  the two tastes, free of both clusters' noise — is at least ``SAME_TASTE`` (0.5).

A **group** is a cluster of two or more; a labeler left alone **agrees with no group**.
Noise alone lowers a labeler's agreement with everyone in proportion, which the corrected
tests see through; a different taste lowers agreement with some and not with others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from alignloop.consensus.quality import PRIOR_STRENGTH, kendall_tau_b
from alignloop.consensus.rankings import RankingSet

MIN_AGREEMENT = 0.2
MIN_FIT = 0.3
SAME_TASTE = 0.5
_WITHIN_FLOOR = 0.01  # keeps the corrected agreement finite for a cluster that barely agrees


@dataclass
class PairAgreement:
    """Kendall tau-b of every two labelers over the prompts both judged, indexed by labeler id."""

    tau_sum: np.ndarray  # (L, L) Σ tau over shared prompts; symmetric, diagonal 0
    shared: np.ndarray  # (L, L) prompts both judged with a defined tau

    @property
    def mean(self) -> float:
        """Mean tau over every shared judgement of every pair: what few shared prompts shrink toward."""
        n = self.shared.sum()
        return float(self.tau_sum.sum() / n) if n else 0.0

    def shrunk(self, tau_sum: float | np.ndarray, shared: float | np.ndarray, prior_strength: float) -> np.ndarray:
        """``(Σ tau + s·mean) / (n + s)``: a pooled agreement pulled toward the mean when n is small."""
        return (np.asarray(tau_sum) + prior_strength * self.mean) / (np.asarray(shared) + prior_strength)


def pair_agreement(sets: Sequence[RankingSet], size: int) -> PairAgreement:
    """Sum and count of tau-b for every two labelers with ids below ``size`` who judged a prompt together."""
    tau_sum = np.zeros((size, size))
    shared = np.zeros((size, size))
    for rs in sets:
        r = rs.mask.shape[1]
        for a in range(r):
            for b in range(a + 1, r):
                both = rs.mask[:, a] & rs.mask[:, b]
                if not both.any():
                    continue
                taus = kendall_tau_b(rs.ranks[both, a], rs.ranks[both, b])
                ok = ~np.isnan(taus)
                la, lb = rs.labeler_ids[both, a][ok], rs.labeler_ids[both, b][ok]
                for x, y in ((la, lb), (lb, la)):
                    np.add.at(tau_sum, (x, y), taus[ok])
                    np.add.at(shared, (x, y), 1.0)
    return PairAgreement(tau_sum=tau_sum, shared=shared)


@dataclass
class LabelerGroup:
    """Labelers who agree with each other more than with the rest: one taste."""

    index: int  # 1-based; the largest group is 1
    labeler_ids: list[int]
    agreement: float  # members' mean tau-b with each other over their shared prompts (shrunk)


@dataclass
class LabelerGroups:
    """The groups found, and the labelers who agree with no group (why, in words)."""

    groups: list[LabelerGroup]
    no_group: dict[int, str]  # labeler id → their best agreement with a group, for the report
    agreement: PairAgreement

    @property
    def split(self) -> bool:
        """True when the labelers form two or more groups: then each is scored against their own."""
        return len(self.groups) >= 2

    def group_of(self) -> dict[int, int]:
        """Labeler id → group index, for the labelers in a group."""
        return {lid: g.index for g in self.groups for lid in g.labeler_ids}


def find_groups(
    sets: Sequence[RankingSet],
    labeler_ids: Iterable[int],
    *,
    prior_strength: float = PRIOR_STRENGTH,
    min_agreement: float = MIN_AGREEMENT,
    same_taste: float = SAME_TASTE,
    min_fit: float = MIN_FIT,
) -> LabelerGroups:
    """Cluster the labelers in ``labeler_ids`` by how much they agree on the prompts they share."""
    ids = sorted(set(labeler_ids))
    size = max(ids + [int(rs.labeler_ids.max(initial=-1)) for rs in sets], default=-1) + 1
    pairs = pair_agreement(sets, size)
    clusters = [[lid] for lid in ids if pairs.shared[lid].sum() > 0]
    # Cluster-level sums, kept up to date on every merge: between[a, b] over a's × b's pairs, within[a] inside a.
    idx = np.array([c[0] for c in clusters], dtype=np.int64)
    between_sum = pairs.tau_sum[np.ix_(idx, idx)].copy()
    between_n = pairs.shared[np.ix_(idx, idx)].copy()
    within_sum = np.zeros(len(clusters))
    within_n = np.zeros(len(clusters))
    alive = np.ones(len(clusters), dtype=bool)
    while True:
        between = pairs.shrunk(between_sum, between_n, prior_strength)
        within = np.maximum(pairs.shrunk(within_sum, within_n, prior_strength), _WITHIN_FLOOR)
        sizes = np.array([len(c) for c in clusters])
        scale = np.where(sizes > 1, np.sqrt(within), 1.0)  # a lone labeler's own noise is unknown: no correction
        corrected = between / np.outer(scale, scale)
        both = np.outer(sizes > 1, sizes > 1)
        neither = np.outer(sizes == 1, sizes == 1)
        threshold = np.where(both, same_taste, np.where(neither, min_agreement, min_fit))
        ok = (corrected >= threshold) & (between_n > 0) & np.outer(alive, alive)
        np.fill_diagonal(ok, False)
        if not ok.any():
            break
        a, b = np.unravel_index(np.argmax(np.where(ok, between, -np.inf)), ok.shape)
        clusters[a] += clusters[b]
        within_sum[a] += within_sum[b] + between_sum[a, b]
        within_n[a] += within_n[b] + between_n[a, b]
        for m in (between_sum, between_n):
            m[a, :] += m[b, :]
            m[:, a] += m[:, b]
            m[a, a] = 0.0
        alive[b] = False
    found = sorted(
        (
            (sorted(c), float(pairs.shrunk(within_sum[i], within_n[i], prior_strength)))
            for i, c in enumerate(clusters)
            if alive[i] and len(c) > 1
        ),
        key=lambda g: (-len(g[0]), g[0]),
    )
    groups = [LabelerGroup(index=i + 1, labeler_ids=members, agreement=w) for i, (members, w) in enumerate(found)]
    placed = {lid for g in groups for lid in g.labeler_ids}
    no_group = {lid: _best_group(lid, groups, pairs, prior_strength) for lid in ids if lid not in placed}
    return LabelerGroups(groups=groups, no_group=no_group, agreement=pairs)


def _best_group(lid: int, groups: list[LabelerGroup], pairs: PairAgreement, prior_strength: float) -> str:
    """The lone labeler's highest agreement with a group, in words."""
    if not pairs.shared[lid].sum():
        return "judged no prompt with another labeler"
    best = None
    for g in groups:
        n = pairs.shared[lid, g.labeler_ids].sum()
        if n:
            tau = float(pairs.shrunk(pairs.tau_sum[lid, g.labeler_ids].sum(), n, prior_strength))
            if best is None or tau > best[0]:
                best = (tau, g.index, int(n))
    if best is None:
        return "shares no prompt with any group"
    tau, index, n = best
    return f"agrees with no group of labelers (at most tau {tau:+.2f}, with group {index}, over {n} shared judgements)"
