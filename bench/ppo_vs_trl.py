"""alignloop PPO against TRL 1.12's PPOTrainer on SmolLM2-135M-Instruct with LoRA (r 16, q/v), on a CPU.

Both sides get the same prompts, reward model (a score head on SmolLM2, seeded, saved once: TRL
needs a reward model sharing the policy's tokenizer), prompts per step, completions per prompt (1),
max new tokens, PPO epochs, minibatch size, learning rate, fixed β, clip ranges, γ, λ and
missing-EOS penalty, and no gradient checkpointing (TRL's default turns it on). TRL runs in
float32; alignloop in ``--dtype`` (default ``auto``, what a user gets: a bf16 sampling copy and
bf16 autocast over float32 weights where the CPU's probe picks bf16, float32 elsewhere). Each
side runs in its own subprocess, so its peak RSS is its own. TRL's PPO trains a separate value
model (initialised from the reward model, as its examples do); alignloop uses a value head on the
policy's hidden states and the disabled adapter as the reference.

Printed: seconds per PPO step (first step excluded), the ratio, peak RSS, the reward at the first
and last steps and the gain, and alignloop's learn-phase FLOP/s as a fraction of this machine's
matmul peak in the precision its learn phase computes in (a ``torch.matmul`` microbenchmark in the
same run).

    .venv/bin/python bench/ppo_vs_trl.py              # 6 steps of 8 prompts x 48 tokens
    .venv/bin/python bench/ppo_vs_trl.py --steps 3    # quicker
    .venv/bin/python bench/ppo_vs_trl.py --repeats 1  # one run per side (default 3, median ratio and spread)
    .venv/bin/python bench/ppo_vs_trl.py --steps 16 --seeds 0,1 --lr 2e-4   # reward gain, two seeds

The reward gain of a run is the mean reward of its last quarter of steps minus that of its
first quarter (single steps of 8 completions are too noisy to compare); with several seeds
each side's gains are averaged.

TRL 1.12.0 (the last release with PPO, in ``trl.experimental.ppo``) is installed into
``.bench/trl112`` on first run (``pip install --target --no-deps``); it is not an alignloop dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import add_repeats, matmul_peak, print_machine, ratio_line
from peers import builtin_prompts, install_trl

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
TRL_DIR = BENCH / "trl112"
TRL_VERSION = "1.12.0"  # the last release with PPO (trl.experimental.ppo)
WORK = BENCH / "ppo"

SETTINGS = {
    "batch_size": 8,  # prompts (= completions) per PPO step
    "max_new_tokens": 48,
    "epochs": 2,
    "minibatch_size": 4,  # half the batch: two optimiser steps per PPO epoch
    "learning_rate": 5e-5,
    "kl_coef": 0.05,
    "clip": 0.2,
    "value_clip": 0.2,
    "value_coef": 0.1,
    "gamma": 1.0,
    "lam": 0.95,
    "missing_eos_penalty": 1.0,
    "temperature": 1.0,
    "seed": 0,
}


def prepare(n_prompts: int) -> dict[str, str]:
    """The shared prompts file and reward-model run directory (made once)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from alignloop.jsonl import write_jsonl
    from alignloop.models import resolve_policy

    policy = resolve_policy("default")
    WORK.mkdir(parents=True, exist_ok=True)
    prompts = WORK / "prompts.jsonl"
    builtin = builtin_prompts()[:n_prompts]
    write_jsonl(prompts, [{"prompt": p} for p in builtin])
    rm = WORK / "reward-model"
    if not (rm / "model" / "config.json").exists():
        torch.manual_seed(1234)
        model = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(policy)
        model.config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(rm / "model")
        tokenizer.save_pretrained(rm / "model")
        (rm / "normalization.json").write_text(json.dumps({"mean": 0.0, "std": 1.0}))  # raw scores, as TRL uses them
    return {"policy": policy, "prompts": str(prompts), "reward_model": str(rm)}


def run_alignloop(assets: dict[str, str], steps: int) -> dict:
    from alignloop.rl.config import RLConfig
    from alignloop.rl.trainer import train_rl
    from alignloop.runs import RunDir

    s = SETTINGS
    config = RLConfig.model_validate(
        {
            "algo": "ppo", "policy": assets["policy"], "reward_model": assets["reward_model"],
            "prompts": assets["prompts"], "output": str(WORK / "run-alignloop"), "batch_size": s["batch_size"], "k": 1,
            "max_new_tokens": s["max_new_tokens"], "learning_rate": s["learning_rate"], "temperature": s["temperature"],
            "missing_eos_penalty": s["missing_eos_penalty"], "max_steps": steps, "save_every": 10_000,
            "sample_every": 10_000, "seed": s["seed"], "lora_r": 16, "lora_alpha": 32, "dtype": s["dtype"],
            "ppo": {"epochs": s["epochs"], "minibatch_size": s["minibatch_size"], "clip": s["clip"],
                    "value_clip": s["value_clip"], "value_coef": s["value_coef"], "gamma": s["gamma"],
                    "lam": s["lam"], "kl_coef": s["kl_coef"], "target_kl": None},
        }
    )  # fmt: skip
    start = time.perf_counter()
    result = train_rl(config, overwrite=True)
    total = time.perf_counter() - start
    metrics = RunDir(result.run_dir).read_metrics()
    import torch
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(assets["policy"])
    embed = model_config.vocab_size * model_config.hidden_size
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(model_config).parameters())
    body = n_params - embed  # tied embeddings: the lookup costs no FLOPs; the head is counted per completion token
    learn_flops = []
    for m in metrics[1:]:
        completion_tokens = m["ppo/response_length"] * s["batch_size"] * s["epochs"]
        # forward 2N + backward to the activations 2N per token (frozen weights get no weight gradients under LoRA)
        flops = 4 * body * m["perf/learn_tokens"] + 4 * embed * completion_tokens
        learn_flops.append(flops / m["time/learn"])
    return {
        "step_times": [m["time/step"] for m in metrics],
        "cpu_times": [m["time/cpu_step"] for m in metrics],
        "learn_times": [m["time/learn"] for m in metrics],
        "generate_times": [m["time/generate"] for m in metrics],
        "rewards": [m["ppo/score_mean"] for m in metrics],  # after the missing-EOS penalty, as TRL's objective/scores
        "kl": [m["ppo/kl"] for m in metrics],
        "learn_flops_per_s": sum(learn_flops) / max(1, len(learn_flops)),
        "total_s": total,
    }


def run_trl(assets: dict[str, str], steps: int) -> dict:
    sys.path.insert(0, str(TRL_DIR))
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from alignloop.backends import encode_prompts
    from alignloop.jsonl import read_jsonl
    from alignloop.models import load_tokenizer

    s = SETTINGS
    torch.manual_seed(s["seed"])
    tokenizer = load_tokenizer(assets["policy"])
    prompts = [obj["prompt"] for _, obj in read_jsonl(assets["prompts"])]
    ids = encode_prompts(tokenizer, [[{"role": "user", "content": p}] for p in prompts])
    dataset = Dataset.from_dict({"input_ids": ids})
    rm_dir = str(Path(assets["reward_model"]) / "model")
    policy = AutoModelForCausalLM.from_pretrained(assets["policy"], dtype=torch.float32)
    value_model = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1, dtype=torch.float32)
    reward_model = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1, dtype=torch.float32)
    args = PPOConfig(
        # TRL 1.12: rollout batch = per_device_train_batch_size x gradient_accumulation_steps, split into
        # num_mini_batches minibatches (one optimiser step each) per PPO epoch.
        output_dir=str(WORK / "run-trl"), per_device_train_batch_size=s["batch_size"],
        gradient_accumulation_steps=1, num_mini_batches=s["batch_size"] // s["minibatch_size"],
        total_episodes=s["batch_size"] * steps, local_rollout_forward_batch_size=s["batch_size"],
        num_ppo_epochs=s["epochs"], response_length=s["max_new_tokens"],
        stop_token="eos", temperature=s["temperature"], missing_eos_penalty=s["missing_eos_penalty"],
        learning_rate=s["learning_rate"], kl_coef=s["kl_coef"], cliprange=s["clip"], cliprange_value=s["value_clip"],
        vf_coef=s["value_coef"], gamma=s["gamma"], lam=s["lam"], seed=s["seed"], bf16=False, fp16=False,
        use_cpu=True, report_to="none", logging_steps=1, save_strategy="no", num_sample_generations=0,
        lr_scheduler_type="constant", warmup_steps=0, gradient_checkpointing=False,  # TRL's default is on
    )  # fmt: skip
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    marks: list[float] = []  # perf_counter at the start of training and after each PPO step
    cpu_marks: list[float] = []  # process CPU time at the same moments
    logs: list[dict] = []  # TRL's per-step metrics

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks.append(time.perf_counter())
            cpu_marks.append(time.process_time())

        def on_step_end(self, *a, **k):
            marks.append(time.perf_counter())
            cpu_marks.append(time.process_time())

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "objective/scores" in logs:
                step_logs.append(dict(logs))

    step_logs = logs
    start = time.perf_counter()
    trainer = PPOTrainer(
        args=args, processing_class=tokenizer, model=policy, ref_model=None, reward_model=reward_model,
        train_dataset=dataset, value_model=value_model, peft_config=lora, callbacks=[Timer()],
    )  # fmt: skip
    trainer.train()
    total = time.perf_counter() - start
    return {
        "step_times": [b - a for a, b in zip(marks, marks[1:])],
        "cpu_times": [b - a for a, b in zip(cpu_marks, cpu_marks[1:])],
        "rewards": [entry["objective/scores"] for entry in logs],
        "kl": [entry.get("objective/kl") for entry in logs],
        "total_s": total,
    }


def child(side: str, steps: int, out: Path) -> None:
    assets = json.loads((WORK / "assets.json").read_text())
    result = run_alignloop(assets, steps) if side == "alignloop" else run_trl(assets, steps)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result))


def mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))


def steady(run: dict, key: str) -> float:
    """Mean seconds per step of one run, its first step excluded (unless it is the only one)."""
    return mean(run[key][1:] or run[key])


def gain(rewards: list[float]) -> float:
    """Mean reward of the last quarter of the steps minus that of the first quarter."""
    q = max(1, len(rewards) // 4)
    return mean(rewards[-q:]) - mean(rewards[:q])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="PPO steps per side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per side")
    parser.add_argument("--sequential", action="store_true", help="run the two sides one after the other")
    parser.add_argument("--batch-size", type=int, default=SETTINGS["batch_size"], help="prompts per PPO step")
    parser.add_argument("--max-new-tokens", type=int, default=SETTINGS["max_new_tokens"], help="completion length")
    parser.add_argument("--dtype", default="auto", help="alignloop's precision: auto, float32 or bfloat16")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; each runs both sides")
    parser.add_argument("--lr", type=float, default=SETTINGS["learning_rate"], help="learning rate, both sides")
    add_repeats(parser)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["alignloop", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    SETTINGS["batch_size"], SETTINGS["max_new_tokens"] = args.batch_size, args.max_new_tokens
    SETTINGS["minibatch_size"] = max(1, args.batch_size // 2)
    SETTINGS["learning_rate"], SETTINGS["seed"], SETTINGS["dtype"] = args.lr, args.seed, args.dtype
    if args.side:
        child(args.side, args.steps, args.out)
        return

    print_machine()
    install_trl(TRL_VERSION, TRL_DIR)
    assets = prepare(n_prompts=SETTINGS["batch_size"] * args.steps)
    (WORK / "assets.json").write_text(json.dumps(assets))
    import torch

    from alignloop.models import pick_dtype

    learn_dtype = str(pick_dtype(args.dtype, torch.device("cpu"), "training")).removeprefix("torch.")
    peak = matmul_peak(learn_dtype)
    # Both sides run at the same time, each in its own process: on a shared machine they then see the
    # same background load. CPU seconds per step (process time, all threads) is the comparison that
    # background load disturbs least; wall-clock seconds are printed too.
    seeds = [int(x) for x in args.seeds.split(",")]
    runs: dict[str, list[dict]] = {"alignloop": [], "trl": []}
    trials = [(repeat, seed) for repeat in range(args.repeats) for seed in seeds]  # both sides in each
    for repeat, seed in trials:
        children = {}
        for side in ("alignloop", "trl"):
            out = WORK / f"result-{side}-{seed}-{repeat}.json"
            out.unlink(missing_ok=True)
            command = [sys.executable, __file__, "--side", side, "--steps", str(args.steps), "--out", str(out),
                       "--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens),
                       "--lr", str(args.lr), "--seed", str(seed), "--dtype", args.dtype]  # fmt: skip
            # One thread each: on a loaded machine, idle OpenMP threads spinning for work inflate both the
            # wall-clock and the CPU time of every matmul.
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
            if args.sequential:
                subprocess.run(command, check=True, cwd=ROOT, env=env)
            else:
                children[side] = subprocess.Popen(command, cwd=ROOT, env=env)
        for side, process in children.items():
            if process.wait() != 0:
                raise SystemExit(f"the {side} side failed")
        for side in runs:
            runs[side].append(json.loads((WORK / f"result-{side}-{seed}-{repeat}.json").read_text()))
            if len(runs[side][-1]["step_times"]) != args.steps:
                raise SystemExit(f"{side} ran {len(runs[side][-1]['step_times'])} PPO steps, not {args.steps}")
    results = {side: merge(r) for side, r in runs.items()}
    ours, theirs = results["alignloop"], results["trl"]
    wall = {"alignloop": mean(ours["step_times"]), "trl": mean(theirs["step_times"])}
    cpu = {"alignloop": mean(ours["cpu_times"]), "trl": mean(theirs["cpu_times"])}
    print(f"SmolLM2-135M-Instruct, LoRA r16 q/v, CPU, alignloop {args.dtype} (learns in {learn_dtype}), TRL float32, "
          f"{SETTINGS['batch_size']} prompts x "
          f"{SETTINGS['max_new_tokens']} new tokens per step, {SETTINGS['epochs']} PPO epochs, minibatch "
          f"{SETTINGS['minibatch_size']}, lr {args.lr:g}, {args.steps} steps, seeds {seeds} "
          "(first step of each run excluded from per-step times)")  # fmt: skip
    header = ["s/step", "CPU s/step", "peak RSS MB", "reward gain", "per seed"]
    print(f"{'':>10} " + " ".join(f"{h:>11}" for h in header))
    for name, key, r in (("alignloop", "alignloop", ours), ("TRL 1.12", "trl", theirs)):
        gains = [gain(curve) for curve in r["reward_curves"]]
        row = [f"{wall[key]:.2f}", f"{cpu[key]:.2f}", f"{r['peak_rss_mb']:.0f}", f"{mean(gains):+.3f}"]
        print(f"{name:>10} " + " ".join(f"{v:>11}" for v in row) + "  " + " ".join(f"{g:+.3f}" for g in gains))
    for name, r in (("alignloop", ours), ("TRL 1.12", theirs)):
        curve = [mean(list(step)) for step in zip(*r["reward_curves"])]
        print(f"{name} reward per step (mean over seeds): " + " ".join(f"{v:+.2f}" for v in curve))
    memory = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
    print(f"speed-up (TRL / alignloop): {wall['trl'] / wall['alignloop']:.2f}x wall-clock, "
          f"{cpu['trl'] / cpu['alignloop']:.2f}x CPU time; alignloop uses {memory:.2f}x TRL's peak memory")  # fmt: skip
    per_trial = list(zip(runs["alignloop"], runs["trl"]))
    print(
        ratio_line(
            "speed-up (TRL / alignloop) per run, wall-clock",
            [steady(b, "step_times") / steady(a, "step_times") for a, b in per_trial],
        )
    )
    print(ratio_line("speed-up (TRL / alignloop) per run, CPU time",
                     [steady(b, "cpu_times") / steady(a, "cpu_times") for a, b in per_trial]))  # fmt: skip
    print(f"alignloop time split per step: generate {mean(ours['generate_times']):.2f}s, "
          f"learn {mean(ours['learn_times']):.2f}s")  # fmt: skip
    learn = ours["learn_flops_per_s"]
    print(f"{learn_dtype} matmul peak {peak / 1e9:.1f} GFLOP/s; alignloop learn phase {learn / 1e9:.1f} "
          f"GFLOP/s = {learn / peak:.0%} of peak")  # fmt: skip
    (WORK / "summary.json").write_text(
        json.dumps({"results": results, "peak_flops": peak, "settings": SETTINGS}, indent=1)
    )


def merge(runs: list[dict]) -> dict:
    """One side's runs (one per seed) together: per-step times without each run's first step, curves per run."""
    merged: dict = {"reward_curves": [r["rewards"] for r in runs], "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
    for key in ("step_times", "cpu_times", "learn_times", "generate_times"):
        if key in runs[0]:
            merged[key] = [t for r in runs for t in r[key][1:]]
    if "learn_flops_per_s" in runs[0]:
        merged["learn_flops_per_s"] = mean([r["learn_flops_per_s"] for r in runs])
    return merged


if __name__ == "__main__":
    main()
