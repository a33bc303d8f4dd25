"""Active labeling against random order at equal labelling effort, over seeds.

    PYTHONPATH=. .venv/bin/python bench/active_labeling.py --judge sentiment --seeds 0,1,2

The completions come from a project holding K = 8 answers to many prompts (``--project``;
created with the demo's settings when missing: the built-in prompts, ``--prompts`` of them
sampled). Per seed, simulated labelers (five, one misreader, the demo's noise) rank every
prompt's completions by the judge once, so both orders below see the same labels for the
same prompt. ``--start`` random train prompts are labelled and a reward model is trained (the
demo's reward settings); then ``--add`` more prompts are labelled, either at random or the ones
that model is least sure about (``ranking_uncertainty`` of their completions, what
``alignloop prioritize`` stores and ``labeling.assignment: uncertainty`` serves first), and the
reward model is retrained on all of them. With ``--ensemble M`` every reward model is an ensemble
of M, and the uncertainty adds the members' disagreement to the mean's entropy. Every model is
scored on the same held-out pairs: each test prompt's consensus pairs. The table gives per seed
the three accuracies and, over seeds, the mean gain of active over random order with its t-interval.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from machine import print_machine

ROOT = Path(".bench/active_labeling")
JUDGES = {
    "sentiment": "alignloop.judges:sentiment",
    "concise": "alignloop.judges:concise",
    "follows_format": "alignloop.judges:follows_format",
}


@dataclass
class Prompt:
    text: str
    split: str
    completions: list[str]


def ensure_project(directory: Path, prompts: int, k: int) -> None:
    """A project with ``k`` completions for each of ``prompts`` built-in prompts (the demo's generation settings)."""
    import yaml

    from alignloop import api
    from alignloop.demo_sizes import SIZES

    if (directory / "alignloop.yaml").exists():
        return
    api.init(directory, name="active-labeling").close()
    path = directory / "alignloop.yaml"
    config = yaml.safe_load(path.read_text())
    config["split"]["test_fraction"] = 0.25
    config["generate"].update(k=k, max_new_tokens=SIZES["full"].max_new_tokens)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    api.add_prompts(directory, builtin=True)
    api.generate(directory, limit=prompts, progress=True)


def load_prompts(directory: Path, k: int) -> list[Prompt]:
    """Every prompt of the project with at least ``k`` completions (the first ``k``)."""
    from sqlalchemy import select

    from alignloop.project import open_project
    from alignloop.store import Completion
    from alignloop.store import Prompt as PromptRow

    handle = open_project(directory)
    try:
        with handle.store.session() as s:
            rows = s.execute(
                select(PromptRow.id, PromptRow.text, PromptRow.split, Completion.sample_index, Completion.text)
                .join(Completion, Completion.prompt_id == PromptRow.id)
                .order_by(PromptRow.id, Completion.sample_index)
            ).all()
    finally:
        handle.close()
    found: dict[int, Prompt] = {}
    for prompt_id, text, split, _, completion in rows:
        found.setdefault(prompt_id, Prompt(text, split, [])).completions.append(completion)
    return [Prompt(p.text, p.split, p.completions[:k]) for p in found.values() if len(p.completions) >= k]


def simulate_ranks(
    prompts: list[Prompt], judge: str, seed: int, allow_ties: bool = False
) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """(mid-ranks (P, 3, K), labeler ids (P, 3), misreaders): three of five simulated labelers rank each
    prompt; with ``allow_ties`` they place answers their judge scores the same level."""
    from alignloop.demo_sizes import NOISE
    from alignloop.judges import load_judge
    from alignloop.simulate import score_spread
    from alignloop.task_types import simulated_ranks

    rng = np.random.default_rng(seed)
    judge_fn = load_judge(judge)
    scores = np.array([[judge_fn(p.text, c) for c in p.completions] for p in prompts])  # (P, K)
    noise = NOISE * score_spread(scores, judge_name=judge)  # as the demo's labelers
    labelers, overlap, k = 5, 3, len(prompts[0].completions)
    misreaders = {int(rng.integers(labelers))}
    who = np.stack([rng.choice(labelers, size=overlap, replace=False) for _ in prompts])
    ranks = np.empty((len(prompts), overlap, k))
    for row in range(len(prompts)):
        for slot in range(overlap):
            misreader = int(who[row, slot]) in misreaders
            ranks[row, slot] = simulated_ranks(scores[row : row + 1], noise, rng, misreader, allow_ties)[0]
    return ranks, who, misreaders


def consensus_comparisons(prompts: list[Prompt], ranks: np.ndarray, who: np.ndarray, rows: list[int]) -> list:
    """The consensus pairs of the prompts ``rows``, as the loop makes them (quality-weighted, misreaders excluded)."""
    from alignloop.consensus.aggregate import aggregate
    from alignloop.consensus.quality import labeler_quality, quality_weights
    from alignloop.consensus.rankings import RankingSet
    from alignloop.pairs.build import consensus_pairs
    from alignloop.records import Comparison

    ranking_set = RankingSet.from_ranks(ranks[rows], labeler_ids=who[rows])
    quality = labeler_quality([ranking_set], {i: f"labeler-{i}" for i in range(5)})
    weights = quality_weights(ranking_set, quality)
    consensus = aggregate(ranking_set, weights=weights)
    arrays = consensus_pairs(ranking_set, consensus.ranks, consensus.unusable, weights)
    out = []
    for row, chosen, rejected, agreement, margin in zip(
        arrays.row, arrays.chosen, arrays.rejected, arrays.agreement, arrays.margin
    ):
        prompt = prompts[rows[row]]
        out.append(
            Comparison(
                prompt=prompt.text,
                chosen=prompt.completions[chosen],
                rejected=prompt.completions[rejected],
                margin=float(margin),
                split=prompt.split,
                agreement=float(agreement),
                provenance={
                    "labeler_ids": [f"labeler-{int(i)}" for i, w in zip(who[rows[row]], weights[row]) if w > 0]
                },
            )
        )
    return out


def train(pairs: list, output: Path, seed: int, ensemble: int, **settings: object) -> dict[str, float]:
    """Held-out accuracy (``rm/eval_accuracy``) and the labelers' agreement on the same pairs
    (``rm/inter_labeler``, where known) of a reward model trained as the full demo trains it, as an
    ensemble of ``ensemble``; ``settings``: other ``RewardConfig`` keys."""
    from alignloop.demo_sizes import SIZES
    from alignloop.reward import train_reward
    from alignloop.reward.config import RewardConfig

    size = SIZES["full"]
    demo = dict(epochs=size.reward_epochs, learning_rate=size.reward_lr, pooling=size.reward_pooling)
    config = RewardConfig(output=str(output), ensemble=ensemble, seed=seed, **(demo | settings))
    metrics = train_reward(config, pairs=pairs, overwrite=True).metrics
    return {key: float(metrics[key]) for key in ("rm/eval_accuracy", "rm/inter_labeler") if key in metrics}


def uncertainty(run: Path, prompts: list[Prompt], rows: list[int]) -> dict[int, float]:
    """``ranking_uncertainty`` of each prompt's completions under the reward model in ``run``."""
    from alignloop.reward import RewardModel
    from alignloop.reward.uncertainty import ranking_uncertainty

    model = RewardModel.load(run)
    found = {}
    for row in rows:
        p = prompts[row]
        found[row] = ranking_uncertainty(
            model.member_scores([p.text] * len(p.completions), p.completions, normalize=False)
        )
    return found


def run_seed(prompts: list[Prompt], judge: str, seed: int, start: int, add: int, ensemble: int) -> dict:
    """One seed: the start model, then random and active additions of ``add`` prompts."""
    ranks, who, _ = simulate_ranks(prompts, judge, seed)
    pool = [i for i, p in enumerate(prompts) if p.split == "train"]
    test = [i for i, p in enumerate(prompts) if p.split == "test"]
    if len(pool) < start + add:
        raise SystemExit(f"{len(pool)} train prompts: fewer than --start + --add = {start + add}")
    random.Random(seed).shuffle(pool)
    held_out = consensus_comparisons(prompts, ranks, who, test)
    runs = ROOT / "runs" / f"{judge.rsplit(':', 1)[-1]}-{seed}"
    labelled, rest = pool[:start], pool[start:]

    def accuracy(rows: list[int], tag: str) -> float:
        pairs = consensus_comparisons(prompts, ranks, who, rows) + held_out
        return train(pairs, runs / tag, seed, ensemble)["rm/eval_accuracy"]

    started = time.perf_counter()
    start_acc = accuracy(labelled, "start")
    unsure = uncertainty(runs / "start", prompts, rest)
    active = sorted(rest, key=lambda row: unsure[row], reverse=True)[:add]
    return {
        "seed": seed,
        "train_pool": len(pool),
        "test_prompts": len(test),
        "held_out_pairs": len(held_out),
        "start": start,
        "added": add,
        "ensemble": ensemble,
        "start_accuracy": start_acc,
        "random_accuracy": accuracy(labelled + rest[:add], "random"),
        "active_accuracy": accuracy(labelled + active, "active"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def append_result(results: Path, row: dict) -> None:
    """Add one result row to the JSONL file ``results`` and show it."""
    with results.open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def read_results(results: Path) -> list[dict]:
    """Every row of ``results`` (none when it does not exist yet)."""
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95 % t-interval (the interval is nan for one value)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def table(rows: list[dict]) -> str:
    lines = [
        "| judge | ensemble | seed | start (prompts) | + random | + uncertainty | active − random |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["active_accuracy"] - r["random_accuracy"]
        lines.append(
            f"| {r['judge']} | {r.get('ensemble', 1)} | {r['seed']} | {r['start_accuracy']:.3f} ({r['start']}) "
            f"| {r['random_accuracy']:.3f} (+{r['added']}) | {r['active_accuracy']:.3f} (+{r['added']}) | {gain:+.3f} |"
        )
    for judge, ensemble in sorted({(r["judge"], r.get("ensemble", 1)) for r in rows}):
        gains = [
            r["active_accuracy"] - r["random_accuracy"]
            for r in rows
            if (r["judge"], r.get("ensemble", 1)) == (judge, ensemble)
        ]
        mean, low, high = t_interval(gains)
        lines.append(
            f"| {judge} | {ensemble} | mean of {len(gains)} | | | | **{mean:+.3f}** [{low:+.3f}, {high:+.3f}] |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=ROOT / "k8", help="project with K completions per prompt")
    parser.add_argument("--prompts", type=int, default=152, help="prompts to sample when creating the project")
    parser.add_argument("--judge", default="sentiment", help="a built-in judge name or MODULE:FUNCTION")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--start", type=int, default=24, help="train prompts labelled before the first model")
    parser.add_argument("--add", type=int, default=24, help="train prompts labelled next, at random or by uncertainty")
    parser.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="reward models per ensemble: >1 adds their disagreement to the uncertainty",
    )
    parser.add_argument("--table-only", action="store_true", help="print the table of results.jsonl and stop")
    args = parser.parse_args()
    results = ROOT / "results.jsonl"
    if not args.table_only:
        print_machine()
        ROOT.mkdir(parents=True, exist_ok=True)
        ensure_project(args.project, args.prompts, k=8)
        prompts = load_prompts(args.project, k=8)
        judge = JUDGES.get(args.judge, args.judge)
        for seed in (int(s) for s in args.seeds.split(",")):
            row = {
                "judge": judge.rsplit(":", 1)[-1],
                **run_seed(prompts, judge, seed, args.start, args.add, args.ensemble),
            }
            append_result(results, row)
    print(table(read_results(results)))


if __name__ == "__main__":
    main()
