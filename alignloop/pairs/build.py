"""Rankings → chosen/rejected pairs, vectorised over prompts.

A strict ranking of K completions gives K·(K−1)/2 pairs, the better completion as
``chosen``. A pair is dropped when the two are tied, or when the better one is flagged
unusable (a flagged completion is never a chosen side; it may be a rejected one).

``agreement`` of a pair = share of the counted labelers' votes for chosen over rejected, a
labeler who placed the two level giving half a vote to each, as the consensus counts them
(``consensus.aggregate``). A labeler who calls two answers equal has not preferred the
rejected one: counted as against, a pair one labeler ordered and two placed level would train
the reward model toward the other side (agreement 1/3) while the consensus chose this one.
``margin`` = normalised rank gap × agreement, in [0, 1]:
``(rank_rejected − rank_chosen) / (K − 1) · agreement``. A close call that few labelers
agree on gets a small margin; first versus last by everyone gets 1.

With ``ties`` the pairs the ranking places level are kept too, marked ``tied``: either answer as
``chosen``, agreement the share of votes for it (½ where every labeler placed them level), margin
0. They tell a reward model what its labelers find equally good (``RewardConfig.train_on_ties``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alignloop.consensus.rankings import RankingSet, upper_pairs


@dataclass
class PairArrays:
    """N pairs of one group: which unit (row), which completions (columns), how strong."""

    row: np.ndarray  # (N,) int: unit (prompt) index in the group
    chosen: np.ndarray  # (N,) int: column of the preferred completion
    rejected: np.ndarray  # (N,) int: column of the other completion
    agreement: np.ndarray  # (N,) float in [0, 1]
    margin: np.ndarray  # (N,) float in [0, 1]
    slot: np.ndarray  # (N,) int: labeler slot the pair comes from, −1 for the consensus
    tied: np.ndarray  # (N,) bool: the ranking placed the two level

    def __len__(self) -> int:
        return len(self.row)


def strict_pairs(
    ranks: np.ndarray,
    unusable: np.ndarray,
    rs: RankingSet,
    counted: np.ndarray,
    min_agreement: float = 0.0,
    slot: int = -1,
    ties: bool = False,
) -> PairArrays:
    """Pairs implied by one ranking per prompt, ``ranks`` (P, K) with ``unusable`` (P, K).

    ``counted`` (P, R) are the labelers whose votes define each pair's agreement; ``ties`` keeps the
    pairs placed level (``min_agreement`` does not apply to them: a tie has no side to agree with).
    """
    p, k = ranks.shape
    i_idx, j_idx = upper_pairs(k)
    ri, rj = ranks[:, i_idx], ranks[:, j_idx]  # (P, n_pairs)
    chosen = np.where(ri < rj, i_idx, j_idx)
    rejected = np.where(ri < rj, j_idx, i_idx)
    rows = np.arange(p)[:, None]
    r_chosen = ranks[rows, chosen]
    r_rejected = ranks[rows, rejected]
    # votes for chosen: labelers ranking it above rejected, and half of those placing the two level
    lab_chosen = np.take_along_axis(
        rs.ranks, np.broadcast_to(chosen[:, None, :], (p, rs.ranks.shape[1], chosen.shape[1])), axis=2
    )
    lab_rejected = np.take_along_axis(rs.ranks, np.broadcast_to(rejected[:, None, :], lab_chosen.shape), axis=2)
    ahead = (lab_rejected > lab_chosen) & counted[:, :, None]
    level = (lab_rejected == lab_chosen) & counted[:, :, None]
    votes = ahead.sum(axis=1) + 0.5 * level.sum(axis=1)  # (P, n_pairs)
    n = counted.sum(axis=1)[:, None]
    agreement = np.divide(votes, n, out=np.zeros(votes.shape), where=n > 0)
    margin = (r_rejected - r_chosen) / max(k - 1, 1) * agreement
    strict = (ri != rj) & ~unusable[rows, chosen] & (agreement >= min_agreement)
    level = (ri == rj) & ~unusable[rows, chosen] & ~unusable[rows, rejected] if ties else np.zeros_like(strict)
    keep = (strict | level) & (n > 0)
    row_idx = np.broadcast_to(np.arange(p)[:, None], keep.shape)
    return PairArrays(
        row=row_idx[keep],
        chosen=chosen[keep],
        rejected=rejected[keep],
        agreement=agreement[keep],
        margin=margin[keep],
        slot=np.full(int(keep.sum()), slot),
        tied=level[keep],
    )


def consensus_pairs(
    rs: RankingSet,
    consensus_ranks: np.ndarray,
    consensus_unusable: np.ndarray,
    weights: np.ndarray,
    min_agreement: float = 0.0,
    ties: bool = False,
) -> PairArrays:
    """Pairs from the consensus ranking; agreement among the labelers with a non-zero weight."""
    return strict_pairs(consensus_ranks, consensus_unusable, rs, rs.mask & (weights > 0), min_agreement, ties=ties)


def labeler_pairs(
    rs: RankingSet, include: np.ndarray, counted: np.ndarray, min_agreement: float = 0.0, ties: bool = False
) -> PairArrays:
    """Pairs from each included labeler's own ranking (``include`` (P, R)); agreement among ``counted``.

    A completion flagged unusable by any included labeler of the prompt is never chosen.
    """
    flagged = (rs.unusable & include[:, :, None]).any(axis=1)  # (P, K)
    parts = []
    for slot in range(rs.mask.shape[1]):
        rows = np.nonzero(include[:, slot])[0]
        if not len(rows):
            continue
        sub = RankingSet(
            ranks=rs.ranks[rows],
            mask=rs.mask[rows],
            unusable=rs.unusable[rows],
            labeler_ids=rs.labeler_ids[rows],
            first_shown=rs.first_shown[rows],
        )
        part = strict_pairs(rs.ranks[rows, slot], flagged[rows], sub, counted[rows], min_agreement, slot, ties)
        part.row = rows[part.row]
        parts.append(part)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return PairArrays(empty, empty, empty, np.zeros(0), np.zeros(0), empty, np.zeros(0, dtype=bool))
    return PairArrays(*(np.concatenate([getattr(x, f) for x in parts]) for f in PairArrays.__dataclass_fields__))
