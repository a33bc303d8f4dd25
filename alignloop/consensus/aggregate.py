"""Aggregating several rankings of the same K completions into one consensus ranking.

Both methods start from the weighted preference counts ``C[p, i, j]``: the total weight
of the labelers who rank completion i above j (a tie gives half to each side).

- **Ranked Pairs** (Tideman 1987): take the pairwise majorities in order of decreasing
  margin ``C[i, j] − C[j, i]`` and lock each one in unless it would close a cycle with
  those already locked. Condorcet-consistent; the default for small K.
- **Bradley–Terry** maximum likelihood by the MM algorithm (Hunter 2004): strengths γ with
  P(i ≻ j) = γ_i / (γ_i + γ_j), fitted to the same counts with a small symmetric prior so a
  completion that wins every comparison still has a finite strength. Works for any K.
- **Plackett–Luce** maximum likelihood by MM (Hunter 2004, section 5): the same strengths,
  but fitted to whole rankings — each ranking is a sequence of choices, the best of all,
  then the best of the rest, ... — so it uses the information in every position, not just
  pairwise counts. Tied completions are chosen together from the same set. The default
  for K above ``RANKED_PAIRS_MAX_K``.

Everything is vectorised over prompts: the only Python loops run over the K·(K−1)/2 pair
slots (Ranked Pairs) or the iterations of the fit (Bradley–Terry), never over prompts.
A completion flagged unusable by any counted labeler is placed below all the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alignloop.consensus.config import Method
from alignloop.consensus.rankings import RankingSet, upper_pairs

RANKED_PAIRS_MAX_K = 10  # "auto" uses Ranked Pairs up to this K, Plackett–Luce above
_TIE_TOL = 1e-9


@dataclass
class Consensus:
    """The consensus of one ``RankingSet``."""

    scores: np.ndarray  # (P, K) higher is better; only the order within a prompt means anything
    ranks: np.ndarray  # (P, K) mid-ranks of the consensus, 1 = best, unusable completions last
    unusable: np.ndarray  # (P, K) bool: flagged by at least one counted labeler
    n_labelers: np.ndarray  # (P,) int: rankings counted


def preference_counts(rs: RankingSet, weights: np.ndarray | None = None) -> np.ndarray:
    """``C`` (P, K, K): weight of labelers preferring i to j; ties count half; diagonal 0."""
    w = rs.mask.astype(np.float64) if weights is None else np.where(rs.mask, weights, 0.0)
    diff = rs.ranks[:, :, None, :] - rs.ranks[:, :, :, None]  # (P, R, K, K): rank_j − rank_i
    wins = (diff > 0).astype(np.float64) + 0.5 * (diff == 0)
    counts = np.einsum("pr,prij->pij", w, wins)
    k = rs.k
    counts[:, np.arange(k), np.arange(k)] = 0.0
    return counts


def ranked_pairs_scores(counts: np.ndarray) -> np.ndarray:
    """Ranked Pairs: (P, K) scores whose order is the locked-in order.

    Score = number of completions a completion beats through locked edges (it beats
    everything it reaches), plus a Borda term that only orders completions the
    locked graph leaves incomparable: the term lies in [−¼, ¼], so two completions whose
    dominance differs by one can never tie or swap through it. Equal margins are taken in
    a fixed pair order, so the result does not depend on the order of the labelers.
    """
    p, k, _ = counts.shape
    margins = counts - counts.transpose(0, 2, 1)  # (P, K, K)
    i_idx, j_idx = upper_pairs(k)
    pair_margin = margins[:, i_idx, j_idx]  # (P, n_pairs): > 0 means i beats j
    winner = np.where(pair_margin > 0, i_idx, j_idx)
    loser = np.where(pair_margin > 0, j_idx, i_idx)
    strength = np.abs(pair_margin)
    order = np.argsort(-strength, axis=1, kind="stable")  # strongest majority first
    reach = np.zeros((p, k, k), dtype=bool)  # reach[p, a, b]: a beats b through locked edges
    rows = np.arange(p)
    items = np.arange(k)
    for slot in range(order.shape[1]):
        pair = order[:, slot]
        a = winner[rows, pair]
        b = loser[rows, pair]
        lock = (strength[rows, pair] > _TIE_TOL) & ~reach[rows, b, a]
        into_a = reach[rows, :, a] | (items[None, :] == a[:, None])  # (P, K): x reaches a (or is a)
        from_b = reach[rows, b, :] | (items[None, :] == b[:, None])  # (P, K): b reaches y (or is y)
        reach |= lock[:, None, None] & into_a[:, :, None] & from_b[:, None, :]
    dominance = reach.sum(axis=2).astype(np.float64)
    borda = margins.sum(axis=2)  # (P, K)
    scale = np.abs(borda).max(axis=1, keepdims=True)
    borda = np.divide(borda, 4.0 * scale, out=np.zeros_like(borda), where=scale > 0)
    return dominance + borda


def bradley_terry_scores(
    counts: np.ndarray, *, prior: float = 0.1, max_iter: int = 1000, tol: float = 1e-10
) -> np.ndarray:
    """Bradley–Terry log-strengths (P, K) by Hunter's MM updates.

    ``prior`` pseudo-comparisons are added to every pair (half a win each way), which keeps
    the maximum finite when one completion wins everything and leaves the order of a
    consistent set of rankings unchanged.
    """
    p, k, _ = counts.shape
    off = 1.0 - np.eye(k)
    c = counts + 0.5 * prior * off  # (P, K, K)
    n = c + c.transpose(0, 2, 1)  # comparisons of each pair
    wins = c.sum(axis=2)  # (P, K)
    gamma = np.ones((p, k))
    for _ in range(max_iter):
        denom = (n / (gamma[:, :, None] + gamma[:, None, :])).sum(axis=2)
        new = wins / denom
        new /= np.exp(np.log(new).mean(axis=1, keepdims=True))  # fix the scale: geometric mean 1
        change = np.max(np.abs(np.log(new) - np.log(gamma)))
        gamma = new
        if change < tol:
            break
    return np.log(gamma)


def plackett_luce_scores(
    rs: RankingSet,
    weights: np.ndarray | None = None,
    *,
    prior: float = 0.1,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> np.ndarray:
    """Plackett–Luce log-strengths (P, K) of weighted rankings by Hunter's MM updates.

    A ranking with tiers is a sequence of choice stages, one per tier but the last: at the
    stage of a tier, each of its completions is chosen from the set of that tier and all
    below it. ``prior`` adds the Bradley–Terry pseudo-comparisons of ``bradley_terry_scores``
    (half a win each way per pair), which keeps the maximum finite.
    """
    p, r, k = rs.ranks.shape
    w = rs.mask.astype(np.float64) if weights is None else np.where(rs.mask, weights, 0.0)
    tie = (rs.ranks[:, :, :, None] == rs.ranks[:, :, None, :]).sum(axis=3)  # (P, R, K) tier size
    start = np.rint(rs.ranks - (tie + 1) / 2).astype(np.int64)  # 0-based first position of the tier
    last = start == start.max(axis=2, keepdims=True)  # completions in the bottom tier are never chosen
    stages = np.arange(k)
    in_set = start[:, :, None, :] >= stages[None, None, :, None]  # (P, R, S, K): completion in stage s's set
    chosen_at = (start[:, :, None, :] == stages[None, None, :, None]) & ~last[:, :, None, :]  # (P, R, S, K)
    n_chosen = chosen_at.sum(axis=3) * w[:, :, None]  # (P, R, S) weighted choices made at stage s
    wins = (chosen_at.sum(axis=2) * w[:, :, None]).sum(axis=1) + 0.5 * prior * (k - 1)  # (P, K)
    off = 1.0 - np.eye(k)
    gamma = np.ones((p, k))
    for _ in range(max_iter):
        set_mass = np.einsum("prsk,pk->prs", in_set, gamma)  # (P, R, S)
        rate = np.divide(n_chosen, set_mass, out=np.zeros_like(n_chosen), where=set_mass > 0)
        denom = np.einsum("prs,prsk->pk", rate, in_set)
        denom += (prior * off / (gamma[:, :, None] + gamma[:, None, :])).sum(axis=2)
        new = wins / denom
        new /= np.exp(np.log(new).mean(axis=1, keepdims=True))
        change = np.max(np.abs(np.log(new) - np.log(gamma)))
        gamma = new
        if change < tol:
            break
    return np.log(gamma)


def scores_to_ranks(scores: np.ndarray, unusable: np.ndarray | None = None) -> np.ndarray:
    """Mid-ranks (P, K), 1 = best, from scores (higher better); unusable completions go last."""
    if unusable is None:
        unusable = np.zeros(scores.shape, dtype=bool)
    tol = _TIE_TOL * np.maximum(1.0, np.abs(scores))
    s_i = scores[:, :, None]
    s_j = scores[:, None, :]
    u_i = unusable[:, :, None]
    u_j = unusable[:, None, :]
    same_flag = u_i == u_j
    better = (u_i & ~u_j) | (same_flag & (s_j > s_i + tol[:, :, None]))  # j ranks above i
    level = same_flag & (np.abs(s_j - s_i) <= tol[:, :, None])  # includes j == i
    return 1.0 + better.sum(axis=2) + 0.5 * (level.sum(axis=2) - 1)


def aggregate(rs: RankingSet, *, method: Method = "auto", weights: np.ndarray | None = None) -> Consensus:
    """Consensus ranking of every prompt in ``rs``.

    ``weights`` (P, R) scale each labeler's vote (e.g. by labeler quality); a zero weight
    removes the labeler, flags included. Prompts with no counted ranking get all-tied ranks.
    """
    counted = rs.mask if weights is None else rs.mask & (weights > 0)
    counts = preference_counts(rs, weights)
    if method == "auto":
        method = "ranked_pairs" if rs.k <= RANKED_PAIRS_MAX_K else "plackett_luce"
    if method == "ranked_pairs":
        scores = ranked_pairs_scores(counts)
    elif method == "bradley_terry":
        scores = bradley_terry_scores(counts)
    elif method == "plackett_luce":
        scores = plackett_luce_scores(rs, weights)
    else:
        raise ValueError(f"unknown aggregation method {method!r}")
    unusable = (rs.unusable & counted[:, :, None]).any(axis=1)
    return Consensus(
        scores=scores,
        ranks=scores_to_ranks(scores, unusable),
        unusable=unusable,
        n_labelers=counted.sum(axis=1),
    )
