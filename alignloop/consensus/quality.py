"""Labeler quality: agreement with the others, position bias, and the outlier rule.

For every judgement, the labeler's ranking is compared (Kendall's tau-b) with the
consensus of the *other* labelers of the same prompt (leave-one-out, same aggregation
method). A labeler's ``tau`` is the mean over their judgements; ``tau_shrunk`` pulls it
toward the mean of all labelers in proportion to how few judgements they have:
``(n·tau + s·mean) / (n + s)`` with prior strength ``s`` (default 5 judgements).

**Outlier rule** — a labeler with at least ``min_judgements`` scored judgements is
flagged when any of these holds:

1. ``tau_shrunk < 0``: their rankings are closer to the reverse of their peers' than to
   them (the labeler who misread the instructions);
2. robust z-score ``0.6745·(tau_shrunk − median) / max(MAD, 0.05) < −3.5`` over all
   labelers (Iglewicz & Hoaglin's modified z-score; the MAD floor keeps a tight group of
   good labelers from flagging whoever is slightly below the rest);
3. position bias: they put the first-shown completion in their top tier in more than half
   of their tasks and that count is more than 3 standard deviations above chance. Display
   order is random, so a labeler without the bias puts it there with probability |top tier| / K
   in each task: 1/K for a strict ranking, more where they placed several answers level (a
   taste that ties most answers would otherwise flag every honest labeler). The count is a
   sum of Bernoulli draws with those probabilities; its variance is the sum of p·(1 − p).

**Groups** — when the labelers form two or more groups of consistent but different tastes
(``groups.find_groups``), each labeler in a group is compared with the leave-one-out
consensus of their own group only, rule 2 takes its median and MAD within the group, and a
rule replaces what pooling would have flagged:

4. the labeler agrees with no group (``groups.py``: a misreader, not a taste).

With one group (or none) nothing changes: everyone is compared with everyone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from alignloop.consensus.aggregate import aggregate
from alignloop.consensus.config import Method
from alignloop.consensus.rankings import RankingSet, pair_signs

if TYPE_CHECKING:
    from alignloop.consensus.groups import LabelerGroups

PRIOR_STRENGTH = 5.0
MIN_JUDGEMENTS = 5
ROBUST_Z = -3.5
MAD_FLOOR = 0.05
POSITION_Z = 3.0


@dataclass
class LabelerQuality:
    """One labeler's standing; ``reason`` says why they are flagged (empty when not)."""

    labeler_id: int
    name: str
    n_judgements: int  # rankings scored against the others (prompts shared with at least one other)
    tau: float  # mean Kendall tau-b with the leave-one-out consensus; NaN with no shared prompts
    tau_shrunk: float  # tau shrunk toward the mean of all labelers
    position_bias: float  # share of tasks with the first-shown completion in the top tier; NaN if unknown
    flagged: bool
    reason: str
    n_ranked: int = 0  # all their live rankings the consensus read (n_judgements counts those compared)
    group: int | None = None  # their group's index when the labelers split into groups; None otherwise


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between rows of mid-ranks ``a`` and ``b`` (N, K) → (N,); NaN if either is all tied."""
    sa = pair_signs(a)
    sb = pair_signs(b)
    concord = (sa * sb).sum(axis=(1, 2))
    denom = np.sqrt((sa * sa).sum(axis=(1, 2)) * (sb * sb).sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, concord / denom, np.nan)


@dataclass
class _Tally:
    """Per-labeler sums accumulated over RankingSets, indexed by labeler id."""

    tau_sum: np.ndarray
    tau_n: np.ndarray
    top_first: np.ndarray  # tasks with the first-shown completion in the top tier
    shown: np.ndarray  # tasks whose display order is known
    chance: np.ndarray  # Σ p over those tasks, p = |top tier| / K: the count a labeler without the bias expects
    chance_var: np.ndarray  # Σ p·(1 − p): that count's variance
    ranked: np.ndarray  # rankings read, compared with others or not


def leave_one_out_taus(
    rs: RankingSet, method: Method = "auto", weights: np.ndarray | None = None, peer_groups: np.ndarray | None = None
) -> np.ndarray:
    """tau-b (P, R) of each slot's ranking with the consensus of the other slots; NaN where undefined.

    ``weights`` (P, R) weigh the other labelers' votes (zero removes one). ``peer_groups``
    (P, R) int restricts each slot's others to the slots of its own group; a slot of group
    −1 (in no group) is compared with everyone.
    """
    p, r = rs.mask.shape
    taus = np.full((p, r), np.nan)
    slots = np.arange(r)
    for slot in range(r):
        others = rs.mask & (slots[None, :] != slot)
        if weights is not None:
            others &= weights > 0
        if peer_groups is not None:
            own = peer_groups[:, slot : slot + 1]
            others &= (peer_groups == own) | (own < 0)
        scored = rs.mask[:, slot] & others.any(axis=1)
        if not scored.any():
            continue
        cons = aggregate(rs.with_mask(others), method=method, weights=weights)
        taus[scored, slot] = kendall_tau_b(rs.ranks[scored, slot], cons.ranks[scored])
    return taus


def labeler_quality(
    sets: list[RankingSet],
    names: dict[int, str],
    *,
    method: Method = "auto",
    prior_strength: float = PRIOR_STRENGTH,
    min_judgements: int = MIN_JUDGEMENTS,
    refine: bool = True,
    groups: LabelerGroups | None = None,
) -> list[LabelerQuality]:
    """Quality of every labeler in ``names`` from their rankings in ``sets`` (grouped by K).

    ``groups`` (from ``groups.find_groups``) that split the labelers make each one's peers
    their own group, and flag whoever agrees with no group (rule 4); ``None`` or a single
    group scores everyone against everyone.

    With ``refine`` outliers are removed one at a time: after each pass the labeler the
    agreement rules (1, 2) flag with the lowest score is left out of everyone's peer
    consensus, and the scores are computed again with the others weighted by the last
    pass, until no one else is flagged. One at a time matters at small overlap: with three
    labelers per prompt, one misreader drags both honest labelers' first scores to about
    0, and removing everyone below 0 at once could remove an honest labeler and leave the
    other with no peers. The returned scores are the last pass's.
    """
    split = groups if groups is not None and groups.split else None
    scores, outliers = _score(sets, names, method, prior_strength, min_judgements, None, split)
    if not refine:
        return scores
    removed: dict[int, str] = {}  # labeler id -> the reason they were left out
    while True:
        remaining = {lid: reason for lid, reason in outliers.items() if lid not in removed}
        eligible = [q for q in scores if q.n_judgements >= min_judgements and q.labeler_id not in removed]
        if not remaining or len(eligible) <= 2:  # a peer group needs at least two who agree
            break
        worst = min(remaining, key=lambda lid: scores[_index(scores, lid)].tau_shrunk)
        removed[worst] = remaining[worst]
        # Vote weights for the next pass: the removed and the position-biased count 0, the rest by score.
        peers = [
            replace(q, flagged=q.labeler_id in removed or (q.flagged and q.labeler_id not in outliers)) for q in scores
        ]
        scores, outliers = _score(sets, names, method, prior_strength, min_judgements, peers, split)
    for lid, reason in removed.items():
        q = scores[_index(scores, lid)]
        if not q.flagged:  # left out earlier; keep the reason it was left out for
            scores[_index(scores, lid)] = replace(q, flagged=True, reason=reason)
    return scores


def _index(scores: list[LabelerQuality], labeler_id: int) -> int:
    return next(i for i, q in enumerate(scores) if q.labeler_id == labeler_id)


def _score(
    sets: list[RankingSet],
    names: dict[int, str],
    method: Method,
    prior_strength: float,
    min_judgements: int,
    previous: list[LabelerQuality] | None,
    groups: LabelerGroups | None,
) -> tuple[list[LabelerQuality], dict[int, str]]:
    """One pass: every labeler's scores, and the labelers the agreement rules flag (id → reason).

    ``previous`` weighs each labeler's vote in the others' consensus (flagged ones left out);
    ``groups``, when given, split the labelers into peer groups (rules 2 and 4 then per group).
    """
    size = max(names, default=-1) + 1
    for rs in sets:
        if rs.n_prompts:
            size = max(size, int(rs.labeler_ids.max()) + 1)
    group_of = {} if groups is None else groups.group_of()
    group_table = np.full(size, 0 if groups is None else -1, dtype=np.int64)
    for lid, index in group_of.items():
        group_table[lid] = index
    t = _Tally(*(np.zeros(size) for _ in range(7)))
    for rs in sets:
        if rs.n_prompts:
            weights = None if previous is None else quality_weights(rs, previous)
            peers = None if groups is None else group_table[np.maximum(rs.labeler_ids, 0)]
            _accumulate(rs, t, method, weights, peers)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = t.tau_sum / t.tau_n
        bias = t.top_first / t.shown
    overall = t.tau_sum.sum() / t.tau_n.sum() if t.tau_n.sum() else float("nan")
    shrunk = (t.tau_sum + prior_strength * overall) / (t.tau_n + prior_strength)
    eligible = [i for i in names if t.tau_n[i] >= min_judgements and not np.isnan(shrunk[i])]
    spread: dict[int, tuple[float, float]] = {}  # group → (median, MAD) of its eligible labelers' shrunk tau
    for g in {int(group_table[i]) for i in eligible} - {-1}:
        values = shrunk[[i for i in eligible if group_table[i] == g]]
        median = float(np.median(values))
        spread[g] = (median, float(np.median(np.abs(values - median))))
    out = []
    outliers: dict[int, str] = {}
    for lid in sorted(names):
        reasons = []
        if lid in eligible:
            if shrunk[lid] < 0:
                reasons.append(f"disagrees with the other labelers (tau {shrunk[lid]:+.2f} < 0)")
            if group_table[lid] >= 0:
                median, mad = spread[int(group_table[lid])]
                z = 0.6745 * (shrunk[lid] - median) / max(mad, MAD_FLOOR)
                if z < ROBUST_Z:
                    reasons.append(f"far below the other labelers (robust z {z:.1f} < {ROBUST_Z})")
            if reasons:
                outliers[lid] = "; ".join(reasons)
            if groups is not None and lid not in group_of:
                reasons.append(groups.no_group.get(lid, "agrees with no group of labelers"))
        if t.shown[lid] >= min_judgements:
            expected = t.chance[lid]
            sd = np.sqrt(t.chance_var[lid])
            if bias[lid] > 0.5 and t.top_first[lid] > expected + POSITION_Z * sd:
                reasons.append(
                    f"puts the first-shown completion first in {bias[lid]:.0%} of tasks "
                    f"(chance {expected / t.shown[lid]:.0%})"
                )
        out.append(
            LabelerQuality(
                labeler_id=lid,
                name=names[lid],
                n_judgements=int(t.tau_n[lid]),
                tau=float(tau[lid]),
                tau_shrunk=float(shrunk[lid]),
                position_bias=float(bias[lid]),
                flagged=bool(reasons),
                reason="; ".join(reasons),
                n_ranked=int(t.ranked[lid]),
                group=group_of.get(lid),
            )
        )
    return out, outliers


def _accumulate(
    rs: RankingSet, t: _Tally, method: Method, weights: np.ndarray | None, peer_groups: np.ndarray | None
) -> None:
    taus = leave_one_out_taus(rs, method, weights, peer_groups)
    np.add.at(t.ranked, rs.labeler_ids[rs.mask], 1.0)
    ok = rs.mask & ~np.isnan(taus)
    ids = rs.labeler_ids[ok]
    np.add.at(t.tau_sum, ids, taus[ok])
    np.add.at(t.tau_n, ids, 1.0)
    known = rs.mask & (rs.first_shown >= 0)
    if known.any():
        best = rs.ranks.min(axis=2, keepdims=True)
        first = np.take_along_axis(rs.ranks, np.maximum(rs.first_shown, 0)[:, :, None], axis=2)
        top = (first == best)[:, :, 0]
        p = (rs.ranks == best).sum(axis=2) / rs.k  # (P, R): the top tier's share of the answers
        np.add.at(t.top_first, rs.labeler_ids[known], top[known].astype(np.float64))
        np.add.at(t.shown, rs.labeler_ids[known], 1.0)
        np.add.at(t.chance, rs.labeler_ids[known], p[known])
        np.add.at(t.chance_var, rs.labeler_ids[known], (p * (1 - p))[known])


def quality_weights(rs: RankingSet, quality: list[LabelerQuality], *, exclude_flagged: bool = True) -> np.ndarray:
    """Vote weights (P, R) for ``aggregate``: each labeler's shrunk tau clipped to [0.05, 1].

    Flagged labelers get weight 0 when ``exclude_flagged`` (their flags are then ignored too).
    A labeler without a score (no shared prompts anywhere) counts with weight 1.
    """
    size = max([q.labeler_id for q in quality] + [int(rs.labeler_ids.max(initial=-1))]) + 1
    table = np.ones(size)
    for q in quality:
        w = 1.0 if np.isnan(q.tau_shrunk) else float(np.clip(q.tau_shrunk, 0.05, 1.0))
        table[q.labeler_id] = 0.0 if (q.flagged and exclude_flagged) else w
    return np.where(rs.mask, table[np.maximum(rs.labeler_ids, 0)], 0.0)
