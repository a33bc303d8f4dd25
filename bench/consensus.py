"""Consensus at scale: aggregate and score 100 000 prompts × 3 rankings of K = 4, then export the pairs.

Stages timed (one process, numpy, float64):
  aggregate   Ranked Pairs consensus of every prompt (quality-weighted, as the report does)
  agreement   Kendall's W per prompt, Krippendorff's alpha (ordinal) and the pairwise agreement rate
  quality     every labeler's leave-one-out tau (two passes) and the outlier rule
  pairs       consensus → 600 000 Comparison records with provenance, written as TRL JSONL

The peer is the straightforward implementation: a per-prompt Python loop doing Ranked
Pairs with explicit pair sorting and cycle checks (as most voting libraries do). It runs
on a subsample and is extrapolated linearly.

    .venv/bin/python bench/consensus.py [--prompts 100000] [--labelers 30] [--peer-prompts 2000] [--repeats 3]

The machine is printed first; with ``--repeats N`` both run N times, alternating, and the
medians (and the consensus step's ratio with its spread) are reported.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import add_repeats, print_machine, ratio_line

from alignloop.consensus.aggregate import aggregate
from alignloop.consensus.agreement import kendall_w, krippendorff_alpha, pairwise_agreement, rank_units
from alignloop.consensus.quality import labeler_quality, quality_weights
from alignloop.consensus.rankings import RankingSet
from alignloop.pairs import write_pairs
from alignloop.pairs.build import consensus_pairs
from alignloop.records import Comparison
from alignloop.task_types import simulated_orders


def simulated_judgements(n_prompts: int, n_labelers: int, k: int, overlap: int, seed: int) -> RankingSet:
    """Noisy rankings (noise 0.5) of uniform judge scores; each prompt goes to `overlap` random labelers."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-1, 1, size=(n_prompts, k))
    labelers = np.argsort(rng.random((n_prompts, n_labelers)), axis=1)[:, :overlap]  # (P, R) distinct
    orders = simulated_orders(np.repeat(truth[:, None, :], overlap, axis=1), 0.5, rng)
    misreader = labelers == 0  # labeler 0 ranks by the opposite
    orders[misreader] = orders[misreader][:, ::-1]
    return RankingSet.from_orders(orders, labeler_ids=labelers)


def ranked_pairs_loop(rankings: list[list[int]], k: int) -> list[int]:
    """The per-prompt baseline: count majorities, sort pairs, lock unless a cycle forms."""
    wins = [[0] * k for _ in range(k)]
    for order in rankings:
        pos = {c: i for i, c in enumerate(order)}
        for a, b in itertools.permutations(range(k), 2):
            if pos[a] < pos[b]:
                wins[a][b] += 1
    majorities = sorted(
        ((wins[a][b] - wins[b][a], a, b) for a, b in itertools.permutations(range(k), 2) if wins[a][b] > wins[b][a]),
        reverse=True,
    )
    edges: dict[int, set[int]] = {c: set() for c in range(k)}

    def reaches(src: int, dst: int) -> bool:
        stack, seen = [src], set()
        while stack:
            node = stack.pop()
            if node == dst:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(edges[node])
        return False

    for _, a, b in majorities:
        if not reaches(b, a):
            edges[a].add(b)
    return sorted(range(k), key=lambda c: -sum(reaches(c, d) for d in range(k) if d != c))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--labelers", type=int, default=30)
    parser.add_argument("-k", type=int, default=4)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--peer-prompts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    add_repeats(parser)
    args = parser.parse_args()
    print_machine()

    rs = simulated_judgements(args.prompts, args.labelers, args.k, args.overlap, args.seed)
    names = {i: f"labeler-{i}" for i in range(args.labelers)}
    runs: list[dict[str, float]] = []  # seconds per stage, one dict per repeat
    peer_runs: list[float] = []  # the peer's extrapolated consensus seconds, one per repeat
    for _ in range(args.repeats):  # ours, then the peer, alternating
        times: dict[str, float] = {}

        t0 = time.perf_counter()
        quality = labeler_quality([rs], names)
        times["quality"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        weights = quality_weights(rs, quality)
        consensus = aggregate(rs, weights=weights)
        times["aggregate"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        w = kendall_w(rs)
        alpha = krippendorff_alpha(rank_units([rs]))
        agreement = pairwise_agreement([rs])
        times["agreement"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        arrays = consensus_pairs(rs, consensus.ranks, consensus.unusable, weights)
        prompts = [f"Prompt number {i}: say something." for i in range(args.prompts)]
        completions = [[f"Completion {c} of prompt {i}." for c in range(args.k)] for i in range(args.prompts)]
        pairs = [
            Comparison(
                prompt=prompts[row],
                chosen=completions[row][ch],
                rejected=completions[row][rj],
                margin=round(margin, 6),
                agreement=round(agree, 6),
                provenance={"prompt_id": row, "chosen_id": ch, "rejected_id": rj},
            )
            for row, ch, rj, agree, margin in zip(
                arrays.row.tolist(),
                arrays.chosen.tolist(),
                arrays.rejected.tolist(),
                arrays.agreement.tolist(),
                arrays.margin.tolist(),
            )
        ]
        with tempfile.TemporaryDirectory() as tmp:
            written = write_pairs(Path(tmp) / "pairs.jsonl", pairs, "trl")
        times["pairs"] = time.perf_counter() - t0

        orders = np.argsort(rs.ranks, axis=2)
        n_peer = min(args.peer_prompts, args.prompts)
        t0 = time.perf_counter()
        for p in range(n_peer):
            ranked_pairs_loop(orders[p].tolist(), args.k)
        peer_aggregate = (time.perf_counter() - t0) * args.prompts / n_peer
        runs.append(times)
        peer_runs.append(peer_aggregate)

    flagged = [q.name for q in quality if q.flagged]
    result = {
        "prompts": args.prompts,
        "rankings": int(rs.mask.sum()),
        "k": args.k,
        "pairs_written": written,
        "repeats": args.repeats,
        "seconds (median)": {name: round(statistics.median(r[name] for r in runs), 2) for name in runs[0]},
        "total_seconds (median)": round(statistics.median(sum(r.values()) for r in runs), 2),
        "total_seconds (min, max)": [
            round(min(sum(r.values()) for r in runs), 2),
            round(max(sum(r.values()) for r in runs), 2),
        ],
        "target_seconds": 30,
        "peer_ranked_pairs_loop_seconds (extrapolated, median)": round(statistics.median(peer_runs), 1),
        "kendall_w_mean": round(float(np.nanmean(w)), 4),
        "krippendorff_alpha": round(alpha, 4),
        "pairwise_agreement": round(agreement, 4),
        "flagged": flagged,
    }
    print(json.dumps(result, indent=2))
    print(ratio_line("consensus step, peer loop / alignloop", [p / r["aggregate"] for p, r in zip(peer_runs, runs)]))


if __name__ == "__main__":
    main()
