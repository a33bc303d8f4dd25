"""Held-out reward-model evaluation: each distinct text scored once (``pair_deltas``) against both
sides of every pair scored (how it was done before), on a real run's pairs, interleaved repeats.

    .venv/bin/python bench/reward_eval.py RUN_DIR/runs/reward-0 RUN_DIR/pairs/round-0.jsonl

A prompt's K answers make C(K,2) pairs, so pair by pair scores each answer K − 1 times.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import add_repeats, print_machine, ratio_line

from alignloop.pairs import read_pairs
from alignloop.reward import RewardModel
from alignloop.reward.data import PairSet, encode_pairs
from alignloop.reward.evaluate import pair_deltas
from alignloop.reward.packing import make_batch


def pair_by_pair(scorer: torch.nn.Module, pairs: PairSet, pad_id: int, per_batch: int) -> list[float]:
    """The peer: both sides of every pair in one batch, pairs sorted by length."""
    order = sorted(range(len(pairs)), key=pairs.pair_length)
    deltas = [0.0] * len(pairs)
    with torch.inference_mode():
        for start in range(0, len(order), per_batch):
            rows = order[start : start + per_batch]
            seqs = [pairs.chosen[j] for j in rows] + [pairs.rejected[j] for j in rows]
            chosen, rejected = scorer(**make_batch(pairs.sequences, seqs, pad_id, scorer.mode)).float().chunk(2)
            for j, d in zip(rows, (chosen - rejected).tolist()):
                deltas[j] = d
    return deltas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reward_run")
    parser.add_argument("pairs", help="pairs file; its test split is evaluated")
    add_repeats(parser)
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass")
    args = parser.parse_args()
    model = RewardModel.load(args.reward_run)
    _, test, _ = encode_pairs(read_pairs(args.pairs), model.encoder, too_long="skip")
    scorer, pad_id = model.members[0].scorer, model.tokenizer.pad_token_id
    texts = len({s for i in range(len(test)) for s in (test.chosen[i], test.rejected[i])})
    print_machine()
    print(f"{len(test)} held-out pairs, {texts} distinct texts")
    ratios, gap = [], 0.0
    for _ in range(args.repeats):
        started = time.perf_counter()
        peer = pair_by_pair(scorer, test, pad_id, args.batch_size // 2)
        peer_s = time.perf_counter() - started
        started = time.perf_counter()
        ours = pair_deltas(scorer, test, list(range(len(test))), pad_id=pad_id, sequences_per_batch=args.batch_size)
        ours_s = time.perf_counter() - started
        ratios.append(peer_s / ours_s)
        gap = max(gap, *(abs(a - b) for a, b in zip(peer, ours)))
        print(f"pair by pair {peer_s:.1f} s, each text once {ours_s:.1f} s: {peer_s / ours_s:.1f}x", flush=True)
    print(ratio_line("pair by pair / each text once", ratios) + f"; largest |Δ| {gap:.1e}")


if __name__ == "__main__":
    main()
