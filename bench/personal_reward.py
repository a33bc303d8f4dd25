"""A reward model conditioned on who judges against the pooled one, per group of labelers, over seeds.

    PYTHONPATH=. .venv/bin/python bench/personal_reward.py --seeds 0,1,2

The completions are ``bench/active_labeling.py``'s project (``--project``, K = 8 answers to 152
prompts; created with its settings when missing). Per seed, seven simulated labelers rank every
prompt's completions with the demo's noise: three by ``--judge-a``, three by ``--judge-b``, one
misreader by the opposite of ``--judge-a``. The consensus stage finds the groups
(``find_groups``) and scores the labelers; then on the same ``--train-prompts`` train prompts
(all of them by default):

- the **pooled** model trains on everyone's consensus pairs (quality-weighted, flagged labelers
  left out), as ``alignloop train-reward`` does today;
- the **per-group** model (``per_group``) trains on each group's own consensus pairs, one head per
  group, as ``export-pairs --by-group`` + ``train-reward --per-group`` do.

Both are scored on each group's held-out consensus pairs (the test prompts, that group's
labelers alone): per group the pooled model's pairwise accuracy, the per-group model's, and the
group's own inter-labeler agreement on those pairs (the ceiling).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from active_labeling import JUDGES, Prompt, ensure_project, load_prompts
from machine import print_machine

ROOT = Path(".bench/personal_reward")
TASTES = ("a", "a", "a", "b", "b", "b", "misreader")


def simulate_orders(prompts: list[Prompt], judge_a: str, judge_b: str, seed: int) -> np.ndarray:
    """Rankings (P, 7, K) of item indices best→worst: labeler i ranks by ``TASTES[i]``."""
    from alignloop.demo_sizes import NOISE
    from alignloop.judges import load_judge
    from alignloop.simulate import score_spread
    from alignloop.task_types import simulated_orders

    rng = np.random.default_rng(seed)
    judges = {"a": load_judge(judge_a), "b": load_judge(judge_b)}
    scores = {
        taste: np.array([[judge(p.text, c) for c in p.completions] for p in prompts]) for taste, judge in judges.items()
    }
    noise = {taste: NOISE * score_spread(rows) for taste, rows in scores.items()}  # as the demo's labelers
    orders = []
    for t in TASTES:
        taste = "b" if t == "b" else "a"  # the misreader misreads taste a
        orders.append(simulated_orders(scores[taste], noise[taste], rng, misreader=t == "misreader"))
    return np.stack(orders, axis=1)


def comparisons(prompts: list[Prompt], rows: list[int], arrays, voters: np.ndarray, group: str | None) -> list:
    """``Comparison`` records of pair arrays over the prompts ``rows``; ``voters`` (P,): labelers counted."""
    from alignloop.records import Comparison

    return [
        Comparison(
            prompt=prompts[rows[row]].text,
            chosen=prompts[rows[row]].completions[chosen],
            rejected=prompts[rows[row]].completions[rejected],
            margin=float(margin),
            split=prompts[rows[row]].split,
            agreement=float(agreement),
            provenance={"labeler_ids": list(range(int(voters[row])))},  # only their number is read
            group=group,
        )
        for row, chosen, rejected, agreement, margin in zip(
            arrays.row, arrays.chosen, arrays.rejected, arrays.agreement, arrays.margin
        )
    ]


def consensus_pairs_by_group(prompts: list[Prompt], orders: np.ndarray, rows: list[int]) -> tuple[list, dict]:
    """(everyone's consensus pairs, {group name: that group's consensus pairs}) of the prompts ``rows``,
    as the consensus and pairs stages make them (groups found, quality weights, flagged left out)."""
    from alignloop.consensus.aggregate import aggregate
    from alignloop.consensus.groups import find_groups
    from alignloop.consensus.quality import labeler_quality, quality_weights
    from alignloop.consensus.rankings import RankingSet
    from alignloop.pairs.build import consensus_pairs

    names = {i: f"labeler-{i}" for i in range(len(TASTES))}
    rs = RankingSet.from_orders(orders[rows])
    groups = find_groups([rs], names)
    weights = quality_weights(rs, labeler_quality([rs], names, groups=groups))

    def pairs(mask: np.ndarray, group: str | None) -> list:
        subset = rs.with_mask(mask)
        w = np.where(mask, weights, 0.0)
        consensus = aggregate(subset, weights=w)
        arrays = consensus_pairs(subset, consensus.ranks, consensus.unusable, w)
        return comparisons(prompts, rows, arrays, (w > 0).sum(axis=1), group)

    everyone = pairs(np.ones_like(rs.mask), None)
    per_group = {str(g.index): pairs(np.isin(rs.labeler_ids, g.labeler_ids), str(g.index)) for g in groups.groups}
    members = {str(g.index): g.labeler_ids for g in groups.groups}
    return everyone, {name: (members[name], p) for name, p in per_group.items()}


def train(pairs: list, output: Path, seed: int, epochs: int | None, per_group: bool) -> Path:
    """A reward model trained as the full demo trains it (pooled, or with a head per group)."""
    from alignloop.demo_sizes import SIZES
    from alignloop.reward import train_reward
    from alignloop.reward.config import RewardConfig

    size = SIZES["full"]
    config = RewardConfig(
        output=str(output),
        epochs=epochs or size.reward_epochs,
        learning_rate=size.reward_lr,
        pooling=size.reward_pooling,
        seed=seed,
        per_group=per_group,
    )
    return train_reward(config, pairs=pairs, overwrite=True).run_dir


def accuracy(run: Path, pairs: list, group: str | None) -> float:
    """Share of ``pairs`` whose chosen side the model in ``run`` scores higher (as ``group`` when given)."""
    from alignloop.reward import RewardModel

    model = RewardModel.load(run)
    prompts = [p.prompt for p in pairs]
    chosen = model.score(prompts, [p.chosen for p in pairs], normalize=False, group=group)
    rejected = model.score(prompts, [p.rejected for p in pairs], normalize=False, group=group)
    return sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)) / len(pairs)


def run_seed(prompts: list[Prompt], args: argparse.Namespace, seed: int) -> list[dict]:
    """One seed: both models on the same train prompts, scored on each group's held-out pairs."""
    from alignloop.reward.evaluate import inter_labeler_agreement

    started = time.perf_counter()
    orders = simulate_orders(
        prompts, JUDGES.get(args.judge_a, args.judge_a), JUDGES.get(args.judge_b, args.judge_b), seed
    )
    pool = [i for i, p in enumerate(prompts) if p.split == "train"]
    test = [i for i, p in enumerate(prompts) if p.split == "test"]
    random.Random(seed).shuffle(pool)
    rows = sorted(pool[: args.train_prompts] if args.train_prompts else pool) + test
    everyone, per_group = consensus_pairs_by_group(prompts, orders, rows)
    runs = ROOT / "runs" / str(seed)
    pooled = train(everyone, runs / "pooled", seed, args.epochs, per_group=False)
    grouped = train([p for _, ps in per_group.values() for p in ps], runs / "per-group", seed, args.epochs, True)
    out = []
    for name, (members, pairs) in sorted(per_group.items()):
        held_out = [p for p in pairs if p.split == "test"]
        tastes = sorted({TASTES[m] for m in members})
        ceiling = [inter_labeler_agreement(p.agreement, len(p.provenance["labeler_ids"])) for p in held_out]
        out.append(
            {
                "seed": seed,
                "group": name,
                "taste": "+".join(args.judge_a if t == "a" else args.judge_b if t == "b" else t for t in tastes),
                "members": members,
                "train_prompts": len(rows) - len(test),
                "held_out_pairs": len(held_out),
                "pooled_accuracy": accuracy(pooled, held_out, None),
                "per_group_accuracy": accuracy(grouped, held_out, name),
                "inter_labeler": sum(ceiling) / len(ceiling),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| seed | group (taste, labelers) | held-out pairs | pooled | per-group | ceiling | per-group − pooled |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['group']} ({r['taste']}, {r['members']}) | {r['held_out_pairs']} "
            f"| {r['pooled_accuracy']:.3f} | {r['per_group_accuracy']:.3f} | {r['inter_labeler']:.3f} "
            f"| {r['per_group_accuracy'] - r['pooled_accuracy']:+.3f} |"
        )
    for taste in sorted({r["taste"] for r in rows}):
        mine = [r for r in rows if r["taste"] == taste]
        gain = sum(r["per_group_accuracy"] - r["pooled_accuracy"] for r in mine) / len(mine)
        lines.append(f"| mean of {len(mine)} | {taste} | | | | | **{gain:+.3f}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path(".bench/active_labeling/k8"), help="K = 8 project")
    parser.add_argument("--prompts", type=int, default=152, help="prompts to sample when creating the project")
    parser.add_argument("--judge-a", default="sentiment", help="the first group's judge (and the misreader's)")
    parser.add_argument("--judge-b", default="concise", help="the second group's judge")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--train-prompts", type=int, default=0, help="train prompts used (0 = every one)")
    parser.add_argument("--epochs", type=int, default=None, help="reward epochs (default: the full demo's)")
    parser.add_argument("--results", type=Path, default=ROOT / "results.jsonl", help="jsonl the rows are appended to")
    parser.add_argument("--table-only", action="store_true", help="print the table of the results and stop")
    args = parser.parse_args()
    if not args.table_only:
        print_machine()
        ROOT.mkdir(parents=True, exist_ok=True)
        ensure_project(args.project, args.prompts, k=8)
        prompts = load_prompts(args.project, k=8)
        for seed in (int(s) for s in args.seeds.split(",")):
            for row in run_seed(prompts, args, seed):
                with args.results.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    results = args.results
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    print(table(rows))


if __name__ == "__main__":
    main()
