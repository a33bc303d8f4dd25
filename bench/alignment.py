"""Does the loop align the model? The full demo for each (judge, seed), one row each.

    .venv/bin/python bench/alignment.py --judges sentiment,concise,follows_format --seeds 0,1,2

Each run is ``alignloop demo`` in ``.bench/alignment/<judge>-<seed>`` with that judge as the
simulated labelers' taste. A row: the reward model's held-out accuracy against the labelers'
agreement with each other (the ceiling) and with their consensus; the judge's mean before and
after on held-out prompts with the paired-difference 95 % interval; the judge's win rate with
its Wilson interval; KL of the kept policy; best-of-N's judge score and KL; the checkpoint kept,
by which criterion (the held-out reward model, or the KL budget when that model is too unsure),
and the one where the judge peaked; minutes. Rows are appended to ``results.jsonl`` beside the
runs, so a table can be rebuilt (``--table-only``) without running anything.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(".bench/alignment")
JUDGES = {
    "sentiment": "alignloop.judges:sentiment",
    "concise": "alignloop.judges:concise",
    "follows_format": "alignloop.judges:follows_format",
}


def machine() -> str:
    """CPU model, whether it computes bf16 natively, cores and the torch version."""
    import torch

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if "model name" in line), "?")
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    threads = torch.get_num_threads()
    native = "native" if bf16 else "emulated"
    return f"{model} ({platform.machine()}, bf16 {native}), {threads} threads, torch {torch.__version__}"


def run_one(judge: str, seed: int, size: str, rounds: int) -> dict:
    """One demo run; returns its row (and leaves the run in ``.bench/alignment``)."""
    name = judge.rsplit(":", 1)[-1]
    directory = ROOT / (f"{name}-{seed}-{size}" + (f"-r{rounds}" if rounds > 1 else ""))
    command = [".venv/bin/alignloop", "demo", "--dir", str(directory), "--overwrite"]
    command += ["--judge", judge, "--seed", str(seed), "--rounds", str(rounds)]
    if size != "full":
        command.append(f"--{size}")
    started = time.perf_counter()
    subprocess.run(command, check=True)
    minutes = (time.perf_counter() - started) / 60
    record = json.loads((directory / "demo.json").read_text())
    return row(name, seed, size, minutes, record)


def row(judge: str, seed: int, size: str, minutes: float, record: dict) -> dict:
    """The table's row from a demo's ``demo.json``."""
    rounds = record["facts"]["rounds"]
    last = rounds[-1]
    rm, ev, curve = last["reward"], last["evaluate"], last["curve"]
    return {
        "judge": judge,
        "seed": seed,
        "size": size,
        "rounds": len(rounds),
        "rm_accuracy": rm.get("rm/eval_accuracy"),
        "inter_labeler": rm.get("rm/inter_labeler"),
        "consensus_agreement": rm.get("rm/ceiling"),
        "judge_before": ev["judge_before"],
        "judge_after": ev["judge_after"],
        "judge_diff_ci": ev["judge_diff_ci"],
        "win_rate": ev["win_rate_judge"],
        "win_ci": ev["win_rate_judge_ci"],
        "kl": ev["kl"],
        "best_of_n": ev["best_of_n"],
        "kept_step": curve["picked_step"],
        "kept_by": "held-out RM" if last.get("holdout_reward", {}).get("used") else "KL budget",
        "holdout_accuracy": last.get("holdout_reward", {}).get("accuracy"),
        "judge_peak_step": curve["judge_peak_step"],
        "judge_per_round": [r["evaluate"]["judge_after"] for r in rounds],
        "minutes": round(minutes, 1),
    }


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    head = (
        "| judge | seed | RM acc | inter-labeler | judge before → after | paired Δ 95% CI | win rate (95% CI) "
        "| KL | best-of-N judge (Δ CI, KL) | kept (by) / judge peak | min |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        b = r["best_of_n"]
        lo, hi = r["judge_diff_ci"]
        wlo, whi = r["win_ci"]
        blo, bhi = b["judge_diff_ci"]
        lines.append(
            f"| {r['judge']} | {r['seed']} | {r['rm_accuracy']:.3f} | {r['inter_labeler'] or float('nan'):.3f} "
            f"| {r['judge_before']:+.3f} → {r['judge_after']:+.3f} | [{lo:+.3f}, {hi:+.3f}] "
            f"| {r['win_rate']:.2f} [{wlo:.2f}, {whi:.2f}] | {r['kl']:.2f} "
            f"| {b['judge']:+.3f} ([{blo:+.3f}, {bhi:+.3f}], {b['kl']:.2f}) "
            f"| {r['kept_step']} ({r.get('kept_by', 'KL budget')}) / {r['judge_peak_step']} | {r['minutes']} |"
        )
    return head + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judges", default="sentiment", help="comma-separated: built-in names or MODULE:FUNCTION")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--size", choices=["full", "quick", "tiny"], default="full")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--table-only", action="store_true", help="print the table of results.jsonl and stop")
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    results = ROOT / "results.jsonl"
    if not args.table_only:
        print(f"machine: {machine()}", flush=True)
        for name in args.judges.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                result = run_one(JUDGES.get(name, name), seed, args.size, args.rounds)
                result["machine"] = machine()
                with results.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(result) + "\n")
                print(table([result]), flush=True)
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    print(table(rows))


if __name__ == "__main__":
    main()
