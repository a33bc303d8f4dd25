"""How the reward model's held-out accuracy grows with labelled prompts, over seeds (issue 11 item 1).

    PYTHONPATH=. .venv/bin/python bench/reward_scaling.py --judge sentiment --sizes 48,96,144,187 --seeds 0,1

Every built-in prompt gets K = 8 completions with the demo's generation settings (the project
``--project`` is created when missing; a quarter of the prompts are held out). Per seed the
simulated labelers of ``bench/active_labeling.py`` (five, one misreader, the demo's noise,
three per prompt) rank every prompt once; a reward model is trained as the full demo trains it
on the consensus pairs of the first N shuffled train prompts, for each N in ``--sizes``, and
scored on the held-out prompts' consensus pairs, the same for every N. The table gives each
accuracy beside the labelers' agreement with each other on those pairs (the ceiling issue 11
measures against), and per N the mean over seeds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from active_labeling import (
    JUDGES,
    append_result,
    consensus_comparisons,
    ensure_project,
    load_prompts,
    read_results,
    simulate_ranks,
    train,
)
from machine import print_machine

from alignloop.cli_options import parse_set

ROOT = Path(".bench/reward_scaling")


def run_seed(
    prompts: list,
    judge: str,
    seed: int,
    sizes: list[int],
    ensemble: int,
    dtype: str,
    settings: dict[str, object],
    ties: bool = False,
) -> Iterator[dict]:
    """One seed: a reward model (of ``ensemble`` members, trained with ``settings`` over the demo's) per size of
    the labelled train set, all scored on the same held-out pairs, each result as soon as its model is trained.
    ``ties``: the labelers place answers their judge scores the same level (their pairs are then left out)."""
    ranks, who, _ = simulate_ranks(prompts, judge, seed, allow_ties=ties)
    pool = [i for i, p in enumerate(prompts) if p.split == "train"]
    test = [i for i, p in enumerate(prompts) if p.split == "test"]
    if max(sizes) > len(pool):
        raise SystemExit(f"{len(pool)} train prompts: fewer than the largest size {max(sizes)}")
    random.Random(seed).shuffle(pool)
    held_out = consensus_comparisons(prompts, ranks, who, test)
    name = judge.rsplit(":", 1)[-1]
    variant = describe(settings)
    for n in sizes:
        started = time.perf_counter()
        pairs = consensus_comparisons(prompts, ranks, who, pool[:n])
        run = ROOT / "runs" / f"{name}-{seed}-{n}-x{ensemble}-{dtype}{'-' + variant if variant else ''}{'-ties' * ties}"
        metrics = train(pairs + held_out, run, seed, ensemble, dtype=dtype, **settings)
        yield {
            "judge": name,
            "seed": seed,
            "train_prompts": n,
            "ensemble": ensemble,
            "dtype": dtype,
            "settings": variant,
            "ties": ties,
            "train_pairs": len(pairs),
            "held_out_pairs": len(held_out),
            "accuracy": metrics["rm/eval_accuracy"],
            "inter_labeler": metrics.get("rm/inter_labeler"),
            "seconds": round(time.perf_counter() - started, 1),
        }


def describe(settings: dict[str, object]) -> str:
    """``settings`` as one name: ``key=value`` joined by commas, in key order (empty for the demo's own)."""
    return ",".join(f"{key}={value}" for key, value in sorted(settings.items()))


def table(rows: list[dict]) -> str:
    lines = [
        "| judge | train prompts | ensemble | dtype | settings | ties | seeds | accuracy per seed | mean "
        "| labelers agree with each other | gap (points) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def variant(row: dict) -> tuple:
        return (
            row["judge"],
            row["train_prompts"],
            row.get("ensemble", 1),
            row.get("dtype", "auto"),
            row.get("settings", ""),
            row.get("ties", False),
        )

    for key in sorted({variant(r) for r in rows}):
        group = [r for r in rows if variant(r) == key]
        accuracy = statistics.fmean(r["accuracy"] for r in group)
        ceiling = statistics.fmean(r["inter_labeler"] for r in group if r["inter_labeler"] is not None)
        each = " / ".join(f"{r['accuracy']:.3f}" for r in sorted(group, key=lambda r: r["seed"]))
        gap = 100 * (ceiling - accuracy)
        judge, n, members, dtype, settings, ties = key
        lines.append(
            f"| {judge} | {n} | {members} | {dtype} | {settings or 'demo'} | {'allowed' if ties else 'no'} "
            f"| {len(group)} | {each} "
            f"| {accuracy:.3f} | {ceiling:.3f} | {gap:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=ROOT / "k8", help="project with K completions per prompt")
    parser.add_argument("--prompts", type=int, default=255, help="built-in prompts to sample when creating it")
    parser.add_argument("--judge", default="sentiment", help="a built-in judge name or MODULE:FUNCTION")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--sizes", default="48,96,144,187", help="comma-separated numbers of labelled train prompts")
    parser.add_argument(
        "--ensemble", type=int, default=None, help="reward models per ensemble (default: the full demo's)"
    )
    parser.add_argument("--dtype", default="auto", help="the reward model's training precision")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a RewardConfig setting over the demo's"
    )
    parser.add_argument(
        "--ties", action="store_true", help="the labelers place answers their judge scores the same level"
    )
    parser.add_argument("--table-only", action="store_true", help="print the table of results.jsonl and stop")
    args = parser.parse_args()
    results = ROOT / "results.jsonl"
    if not args.table_only:
        from alignloop.demo_sizes import SIZES

        print_machine()
        ROOT.mkdir(parents=True, exist_ok=True)
        ensure_project(args.project, args.prompts, k=8)
        prompts = load_prompts(args.project, k=8)
        judge = JUDGES.get(args.judge, args.judge)
        sizes = [int(s) for s in args.sizes.split(",")]
        ensemble = args.ensemble or SIZES["full"].reward_ensemble
        settings = parse_set(args.set)
        for seed in (int(s) for s in args.seeds.split(",")):
            for row in run_seed(prompts, judge, seed, sizes, ensemble, args.dtype, settings, args.ties):
                append_result(results, row)
    print(table(read_results(results)))


if __name__ == "__main__":
    main()
