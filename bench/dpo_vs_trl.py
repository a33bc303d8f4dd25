"""alignloop DPO against TRL 1.16's DPOTrainer on SmolLM2-135M-Instruct with LoRA (r 16, q/v), CPU, float32.

Both sides get the same pairs, batch size, maximum length, learning rate, β, LoRA settings and
number of steps, each in its own subprocess (so peak RSS is its own). TRL runs twice: with its
defaults (reference forward every step) and with ``precompute_ref_log_probs=True`` (its fastest
setting). Timed: the whole job from loading the model to the saved adapter, and the mean
optimisation step (first step excluded). Afterwards, outside the timing, one evaluator (alignloop's
``batch_logps``, adapter on = policy, adapter off = reference) measures the held-out preference
accuracy and mean implicit-reward margin of each trained adapter.

    .venv/bin/python bench/dpo_vs_trl.py            # 10 steps of 8 pairs
    .venv/bin/python bench/dpo_vs_trl.py --steps 4  # quicker
    .venv/bin/python bench/dpo_vs_trl.py --repeats 1  # each side once (default 3, alternating: median and spread)

TRL is installed into ``.bench/trl`` on first run (``pip install --target --no-deps``); it is not an
alignloop dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import add_repeats, print_machine, ratio_line
from peers import builtin_prompts, install_trl, step_timer

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
TRL_DIR = BENCH / "trl"
TRL_VERSION = "1.16.0"

OPENERS = ["Happy to help!", "Good question.", "Sure, here is what I would do.", "Great, let's work through it."]
ADVICE = [
    "Start with one small, concrete step you can finish today",
    "Write the plan down so you can see your progress",
    "Ask someone you trust for feedback after the first attempt",
    "Set a short timer and focus on a single task until it rings",
    "Keep what you need within reach and put the rest away",
    "Review what worked at the end of the week and adjust",
]
CLOSERS = ["I hope this helps, and good luck!", "You've got this.", "Let me know how it goes!"]
DISMISSIVE = [
    "I don't know, figure it out yourself.",
    "That's not something I care about.",
    "No idea. Search for it.",
    "Whatever, it doesn't matter much.",
]


def make_pairs(n_train: int, n_test: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Helpful, friendly answers preferred to dismissive ones, on alignloop's built-in prompts."""
    prompts = builtin_prompts()
    rng = random.Random(seed)
    rng.shuffle(prompts)
    rows = []
    for prompt in prompts[: n_train + n_test]:
        tips = rng.sample(ADVICE, 2)
        chosen = f"{rng.choice(OPENERS)} {tips[0]}. {tips[1]}. {rng.choice(CLOSERS)}"
        rejected = rng.choice(DISMISSIVE)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows[:n_train], rows[n_train:]


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def run_alignloop(args: argparse.Namespace, train: list[dict], out: Path) -> dict:
    from alignloop.records import Comparison
    from alignloop.rl.dpo import train_dpo
    from alignloop.rl.dpo_config import DPOConfig
    from alignloop.runs import RunDir

    config = DPOConfig(
        policy="default",
        output=str(out),
        beta=args.beta,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_steps=args.steps,
        epochs=1.0,
        max_length=args.max_length,
        max_prompt_length=args.max_length,
        eval_fraction=0.0,
        save_every=10**6,
        merge_lora=False,
        dtype="float32",
    )
    pairs = [Comparison(**row) for row in train]
    started = time.perf_counter()
    train_dpo(config, pairs=pairs, overwrite=True)
    total = time.perf_counter() - started
    steps = [m["time/step_s"] for m in RunDir(out).read_metrics() if "time/step_s" in m]
    return {"total_s": total, "step_s": steps, "adapter": str(out / "model")}


def run_trl(args: argparse.Namespace, train: list[dict], out: Path, precompute: bool) -> dict:
    sys.path.insert(0, str(TRL_DIR))
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from alignloop.models import resolve_policy

    step_times: list[float] = []

    rows = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in train
    ]
    config = DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=args.beta,
        max_length=args.max_length,
        max_steps=args.steps,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        precompute_ref_log_probs=precompute,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    path = resolve_policy("default")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(),
        callbacks=[step_timer(step_times)],
    )
    trainer.train()
    trainer.model.save_pretrained(out / "model")
    total = time.perf_counter() - started
    return {"total_s": total, "step_s": step_times, "adapter": str(out / "model")}


def evaluate(adapter: str, test: list[dict], beta: float, max_length: int) -> dict:
    """Held-out preference accuracy and margin of a trained adapter, by one evaluator for every side."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from alignloop.models import load_tokenizer, resolve_policy
    from alignloop.records import Comparison
    from alignloop.rl.dpo_data import collate, encode_pairs
    from alignloop.rl.dpo_logps import batch_logps

    path = resolve_policy("default")
    tokenizer = load_tokenizer(path)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), adapter).eval()
    encoded = encode_pairs(tokenizer, [Comparison(**r) for r in test], max_length, max_length)
    margins = []
    with torch.no_grad():
        for start in range(0, len(encoded), 16):
            batch = collate(encoded[start : start + 16], tokenizer.pad_token_id)
            policy = batch_logps(model, batch)
            with model.disable_adapter():
                reference = batch_logps(model, batch)
            ratio = beta * (policy - reference)
            n = len(ratio) // 2
            margins.extend((ratio[:n] - ratio[n:]).tolist())
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins)}


def child(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(0)
    train, test = make_pairs(args.steps * args.batch_size, args.n_test)
    out = Path(args.workdir) / args.side
    if args.side == "alignloop":
        result = run_alignloop(args, train, out)
    else:
        result = run_trl(args, train, out, precompute=args.side == "trl-precompute")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # work done, steadier than wall time on a shared machine
    result.update(evaluate(result["adapter"], test, args.beta, args.max_length))
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="optimisation steps (one pass over steps x batch pairs)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    parser.add_argument("--n-test", type=int, default=48, help="held-out pairs for the accuracy")
    parser.add_argument("--lr", type=float, default=2e-4, help="learning rate (constant)")
    parser.add_argument("--beta", type=float, default=0.1, help="DPO beta")
    parser.add_argument("--max-length", type=int, default=256, help="longest prompt + completion in tokens")
    parser.add_argument("--sides", default="alignloop,trl,trl-precompute", help="which runs, comma-separated")
    parser.add_argument("--workdir", default=str(BENCH / "dpo"), help="where runs are written")
    add_repeats(parser)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args)
        return
    print_machine()

    install_trl(TRL_VERSION, TRL_DIR)
    from alignloop.models import resolve_policy

    resolve_policy("default")  # convert the shipped GGUF once, outside the timings
    runs: dict[str, list[dict]] = {}  # side -> one result per repeat; the sides alternate
    for side in [side for _ in range(args.repeats) for side in args.sides.split(",")]:
        cmd = [
            sys.executable,
            __file__,
            "--side",
            side,
            "--steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
        ]
        cmd += ["--n-test", str(args.n_test), "--lr", str(args.lr), "--beta", str(args.beta)]
        cmd += ["--max-length", str(args.max_length), "--workdir", args.workdir]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            sys.exit(f"{side} failed:\n{done.stderr[-4000:]}")
        r = json.loads(lines[-1][len("RESULT ") :])
        runs.setdefault(side, []).append(r)
        steps = r["step_s"][1:] or r["step_s"]
        r["mean_step_s"] = sum(steps) / len(steps)
        print(
            f"{side:15s} total {r['total_s']:7.1f} s   step {r['mean_step_s']:6.2f} s   "
            f"CPU {r.get('cpu_s', float('nan')):7.1f} s   peak RSS {r['peak_rss_mb']:6.0f} MB   "
            f"held-out accuracy {r['accuracy']:.3f}   margin {r['margin']:+.3f}",
            flush=True,
        )
    if "alignloop" in runs:
        ours = runs["alignloop"]
        for side, theirs in runs.items():
            if side != "alignloop":
                pairs = list(zip(ours, theirs))
                print(ratio_line(f"alignloop vs {side}, end to end", [b["total_s"] / a["total_s"] for a, b in pairs]))
                print(
                    ratio_line(
                        f"alignloop vs {side}, per step", [b["mean_step_s"] / a["mean_step_s"] for a, b in pairs]
                    )
                )
                print(
                    ratio_line(f"alignloop vs {side}, memory", [a["peak_rss_mb"] / b["peak_rss_mb"] for a, b in pairs])
                )


if __name__ == "__main__":
    main()
