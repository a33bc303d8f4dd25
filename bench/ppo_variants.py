"""RL settings compared on the full demo with everything before RL held fixed.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ppo_variants.py --judge concise --seed 0 \
        --variant grpo --variant "ppo=algo=ppo;k=1;batch_size=16;ppo.target_kl=6;ppo.minibatch_size=8"

The demo's stages up to the held-out reward model (generation, labels, consensus, pairs and
both reward models) run once in ``.bench/ppo_variants/<judge>-<seed>-<size>/base``. Then each
variant copies that project to ``variants/<name>`` beside it and runs the demo's RL → curve →
evaluation there, with its settings over the demo's (GRPO since 2026-12-05; the second variant
above is the demo's PPO until then; ``"qv=lora_targets=[q_proj,v_proj];grpo.kl_coef=0.04"`` is its GRPO until
2026-12-06, before the adapters went on every linear layer). Every variant therefore sees the same labels and the same
reward models, so the difference between two variants is RL's alone. A variant is
``NAME`` (the demo's settings) or ``NAME=KEY=VALUE[;KEY=VALUE...]`` with keys as
``api.train_rl`` takes them (dotted for an algorithm's section; ``algo`` picks another
algorithm). A second call reuses the base and the variants already run. Each variant's row goes
to ``variant.json`` in its folder, and all rows are printed as a table; its checkpoints and
policies are then deleted (``--keep-models`` keeps them). Runs repeat exactly only at the same thread count.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from alignment import JUDGES, machine, row, table

from alignloop.demo import DemoLoop, DemoResult
from alignloop.demo_sizes import SIZES

ROOT = Path(".bench/ppo_variants")
PREFIX = ("create_project", "generate", "label", "consensus", "pairs", "reward", "holdout_reward")


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME=KEY=VALUE;KEY=VALUE`` → (NAME, settings); values are read as YAML scalars."""
    name, _, rest = spec.partition("=")
    settings: dict[str, Any] = {}
    for item in filter(None, rest.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {spec!r}: expected KEY=VALUE, got {item!r}")
        settings[key.strip()] = yaml.safe_load(value)
    return name, settings


# the loop's paths inside the project (the tiny size's models too), moved into each variant's copy
MOVED = ("reward_model", "holdout_model", "start_policy", "policy", "backbone")


def loop_in(directory: Path, judge: str, seed: int, result: DemoResult) -> DemoLoop:
    sizes = SIZES[result.facts["size"]]
    return DemoLoop(directory, sizes, judge=judge, seed=seed, human=False, host="127.0.0.1", port=0, result=result)


def make_base(base: Path, judge: str, seed: int, size: str) -> dict[str, Any]:
    """The demo's stages up to the held-out reward model, once; what a variant needs to go on from them."""
    state = base.parent / "base.json"
    if state.exists():
        return json.loads(state.read_text())
    result = DemoResult.start(base, overwrite=True)
    result.facts.update(judge=judge, seed=seed, size=size, rounds=[])
    loop = loop_in(base, judge, seed, result)
    started = time.perf_counter()
    for stage in PREFIX:
        getattr(loop, stage)()
    saved = {"facts": result.facts, "seconds": round(time.perf_counter() - started, 1)}
    saved |= {key: getattr(loop, key) for key in MOVED}
    state.write_text(json.dumps(saved, indent=1))
    return saved


def run_variant(
    base: Path, saved: dict[str, Any], name: str, settings: dict[str, Any], judge: str, seed: int, keep_models: bool
) -> dict:
    """PPO → curve → evaluation on a copy of the base project, with ``settings`` over the demo's PPO settings;
    the run's models are deleted once its row is written unless ``keep_models``."""
    target = base.parent / "variants" / name
    done = target / "variant.json"
    if done.exists():
        return json.loads(done.read_text())
    if target.exists():
        shutil.rmtree(target)
    # the reward runs' resumable checkpoints (about 1 GB) are never read after training
    shutil.copytree(base, target, ignore=shutil.ignore_patterns("checkpoints"))
    result = DemoResult(project=target, report=target / "report.html")
    result.facts.update(copy.deepcopy(saved["facts"]))
    loop = loop_in(target, judge, seed, result)
    for key in MOVED:  # a base saved before `policy` was moved has no such key: it was None
        setattr(loop, key, saved.get(key) and saved[key].replace(str(base), str(target)))
    loop.rl_settings = settings
    started = time.perf_counter()
    loop.rl()
    loop.curve()
    loop.evaluate()
    record = {"variant": name, "settings": settings, "judge": judge, "seed": seed, "size": saved["facts"]["size"]}
    record |= {"machine": machine(), "minutes": round((time.perf_counter() - started) / 60, 1), "round": loop.facts}
    done.write_text(json.dumps(record, indent=1))
    if not keep_models:  # every checkpoint, the kept policy and the final one: about 2 GB a variant
        assert loop.rl_run is not None
        for name in ("checkpoints", "kept", "model"):
            shutil.rmtree(loop.rl_run / name, ignore_errors=True)
    return record


def table_row(record: dict[str, Any]) -> dict[str, Any]:
    """``alignment.py``'s row of a variant's round, its judge column naming the variant."""
    label = f"{record['judge'].rsplit(':', 1)[-1]} · {record['variant']}"
    facts = {"facts": {"rounds": [record["round"]]}}
    return row(label, record["seed"], record["size"], record["minutes"], facts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", default="sentiment", help="a built-in name or MODULE:FUNCTION")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=["full", "tiny"], default="full", help="tiny: random models, to try it")
    parser.add_argument("--variant", action="append", required=True, help="NAME or NAME=KEY=VALUE[;KEY=VALUE...]")
    parser.add_argument(
        "--keep-models", action="store_true", help="keep each variant's checkpoints and policies (about 2 GB each)"
    )
    args = parser.parse_args()
    judge = JUDGES.get(args.judge, args.judge)
    variants = [parse_variant(spec) for spec in args.variant]
    base = (ROOT / f"{judge.rsplit(':', 1)[-1]}-{args.seed}-{args.size}" / "base").resolve()
    print(f"machine: {machine()}", flush=True)
    saved = make_base(base, judge, args.seed, args.size)
    records = [
        run_variant(base, saved, name, settings, judge, args.seed, args.keep_models) for name, settings in variants
    ]
    print(table([table_row(record) for record in records]))


if __name__ == "__main__":
    main()
