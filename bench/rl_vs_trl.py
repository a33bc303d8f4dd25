"""GRPO and RLOO: alignloop against TRL 1.16's GRPOTrainer / RLOOTrainer, SmolLM2-135M-Instruct + LoRA, CPU.

Same for every run: the policy (SmolLM2-135M-Instruct, float32, LoRA r 16 / alpha 32 on q/v),
the reward (the VADER sentiment judge ``alignloop.judges:sentiment``, a Python function), the
prompts (alignloop's built-in set, in the same order), group size 8, 48 new tokens, temperature
1, top-p 1, learning rate, KL coefficient, one prompt (8 completions) per step and one
optimisation step per batch. TRL runs with bf16 off and no gradient checkpointing. Each run
is its own subprocess (peak RSS is its own). alignloop runs in ``--dtype`` (default ``auto``: a bf16
sampling copy and bf16 autocast over float32 weights on a GPU, and on a CPU where the precision
probe measured bf16 faster). ``--device cuda`` runs both sides on a GPU, TRL with ``bf16=True``
(bf16 autocast over float32 weights), and adds peak GPU memory to the report.

Reported per run: seconds per step (mean, first step excluded), peak RSS, the training reward
of the first and last steps and its mean over the run (both sides see the same prompt at
every step), and — outside the timing, with one evaluator for all — the mean
reward of completions sampled by the trained policy for held-out prompts (same seeds for every
run) and by the untrained policy. The machine is printed first; ``--repeats N`` (default 3)
runs both sides N times, alternating, and reports the median speed and memory ratios with
their spread (the held-out reward difference is the first repeat's).

    .venv/bin/python bench/rl_vs_trl.py                 # 8 steps each
    .venv/bin/python bench/rl_vs_trl.py --algos grpo --steps 4

TRL is installed into ``.bench/trl`` on first run (``pip install --target --no-deps``).
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

from machine import add_device, add_repeats, print_machine, ratio_line
from peers import builtin_prompts, install_trl, step_timer

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
TRL_DIR = BENCH / "trl"
TRL_VERSION = "1.16.0"
GROUP = 8
KL = {"grpo": 0.04, "rloo": 0.05}


def run_alignloop(args: argparse.Namespace, algo: str, prompts: list[str], out: Path) -> dict:
    from alignloop.jsonl import write_jsonl
    from alignloop.rl.config import GRPOConfig, RLConfig, RLOOConfig
    from alignloop.rl.trainer import train_rl
    from alignloop.runs import RunDir

    prompt_file = out.parent / f"{algo}-prompts.jsonl"
    write_jsonl(prompt_file, ({"prompt": p} for p in prompts))
    config = RLConfig(
        algo=algo,
        policy="default",
        reward_model="alignloop.judges:sentiment",
        prompts=str(prompt_file),
        output=str(out),
        lora_r=16,
        lora_alpha=32,
        learning_rate=args.lr,
        batch_size=1,
        k=GROUP,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        missing_eos_penalty=0.0,  # TRL adds none: the reward is the judge's score alone on both sides
        max_steps=args.steps,
        save_every=10**6,
        sample_every=10**6,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        grpo=GRPOConfig(kl_coef=KL["grpo"]),
        rloo=RLOOConfig(kl_coef=KL["rloo"]),
    )
    started = time.perf_counter()
    result = train_rl(config, overwrite=True)
    total = time.perf_counter() - started
    metrics = [m for m in RunDir(out).read_metrics() if "time/step" in m]
    return {
        "total_s": total,
        "step_s": [m["time/step"] for m in metrics],
        "train_reward": [m[f"{algo}/reward_mean"] for m in metrics],
        "adapter": str(result.model_dir),
    }


def run_trl(args: argparse.Namespace, algo: str, prompts: list[str], out: Path) -> dict:
    sys.path.insert(0, str(TRL_DIR))
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignloop.judges import sentiment
    from alignloop.models import resolve_policy

    if algo == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer

    step_times: list[float] = []

    def sentiment_reward(prompts, completions, **kwargs):
        return [sentiment("", c[0]["content"] if isinstance(c, list) else c) for c in completions]

    config = Config(
        output_dir=str(out),
        per_device_train_batch_size=GROUP,  # completions per device per step = one prompt's group
        gradient_accumulation_steps=1,
        num_generations=GROUP,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.01,  # what alignloop's AdamW uses (torch's default)
        max_grad_norm=1.0,
        beta=KL[algo],
        num_iterations=1,
        max_steps=args.steps,
        bf16=args.device == "cuda",
        fp16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=args.device == "cpu",
        seed=args.seed,
        disable_tqdm=True,
        shuffle_dataset=False,
    )
    path = resolve_policy("default")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    trainer = Trainer(
        model=model,
        reward_funcs=sentiment_reward,
        args=config,
        train_dataset=Dataset.from_list(
            [{"prompt": [{"role": "user", "content": p}]} for p in in_alignloop_order(prompts, args.seed)]
        ),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
        ),
        callbacks=[step_timer(step_times)],
    )
    trainer.train()
    trainer.model.save_pretrained(out / "model")
    total = time.perf_counter() - started
    rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log]
    return {"total_s": total, "step_s": step_times, "train_reward": rewards, "adapter": str(out / "model")}


def in_alignloop_order(prompts: list[str], seed: int) -> list[str]:
    """The prompts in the order alignloop's trainer visits them (one per step), so that TRL,
    which reads its dataset in order here, trains on the same prompt at every step."""
    from alignloop.rl.trainer import step_prompt_indices

    return [prompts[step_prompt_indices(len(prompts), 1, step, seed)[0]] for step in range(1, len(prompts) + 1)]


def evaluate(adapter: str | None, prompts: list[str], max_new_tokens: int, device: str) -> list[float]:
    """Sentiment of completions sampled for held-out prompts (2 each); ``None`` = untrained policy.

    The seeds are the same for every adapter, so two adapters' scores pair up sample by sample.
    """
    from peft import PeftModel

    from alignloop.backends import HFBackend, SamplingParams
    from alignloop.judges import sentiment
    from alignloop.models import load_policy

    model, tokenizer = load_policy("default", device=device, dtype="float32")
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    conversations = [[{"role": "user", "content": p}] for p in prompts for _ in range(2)]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens)
    texts = HFBackend(model, tokenizer, batch_size=16).generate(conversations, params, list(range(len(conversations))))
    return [sentiment("", t.text) for t in texts]


def child(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(args.seed)
    prompts = builtin_prompts()
    train, held_out = prompts[: args.steps], prompts[-args.n_eval :]
    if args.side == "baseline":
        scores = evaluate(None, held_out, args.max_new_tokens, args.device)
        print("RESULT " + json.dumps({"eval_scores": scores, "eval_reward": mean(scores)}), flush=True)
        return
    algo, impl = args.side.split("-")
    out = Path(args.workdir) / args.side
    if args.eval_only:
        result: dict = {"adapter": str(out / "model")}
    else:
        result = (run_alignloop if impl == "alignloop" else run_trl)(args, algo, train, out)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["peak_rss_mb"] = usage.ru_maxrss / 1024
        result["cpu_s"] = usage.ru_utime + usage.ru_stime  # work done, steadier than wall time on a shared machine
        if args.device == "cuda":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["eval_scores"] = evaluate(result["adapter"], held_out, args.max_new_tokens, args.device)
    result["eval_reward"] = mean(result["eval_scores"])
    print("RESULT " + json.dumps(result), flush=True)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def paired(a: list[float], b: list[float]) -> str:
    """Mean of a − b over paired samples, with its standard error."""
    diffs = [x - y for x, y in zip(a, b)]
    m = mean(diffs)
    se = (sum((d - m) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) ** 0.5
    return f"{m:+.3f} ± {se:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="optimisation steps (one prompt x 8 completions each)")
    parser.add_argument("--algos", default="grpo,rloo", help="grpo, rloo or both")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate (constant)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="completion length limit")
    parser.add_argument(
        "--n-eval", type=int, default=8, help="held-out prompts (2 samples each) for the reward after training"
    )
    parser.add_argument("--workdir", default=str(BENCH / "rl"), help="where runs are written")
    parser.add_argument(
        "--parallel", action="store_true", help="run alignloop and TRL at the same time (busy machines)"
    )
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="evaluate the runs already in --workdir again (e.g. with a larger --n-eval)",
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed of both sides")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="alignloop's precision (default auto: bf16 sampling and autocast where this CPU measured it faster; "
        "TRL runs float32 on a CPU)",
    )
    add_repeats(parser)
    add_device(parser)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        child(args)
        return
    print_machine()
    repeats = 1 if args.eval_only else args.repeats

    install_trl(TRL_VERSION, TRL_DIR)
    from alignloop.models import resolve_policy

    resolve_policy("default")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    timings: dict[str, list[dict]] = {}  # side -> one result per repeat
    for repeat in range(repeats):
        # the first repeat writes where --eval-only looks; later ones beside it
        workdir = args.workdir if repeat == 0 else str(Path(args.workdir) / f"repeat-{repeat + 1}")
        if repeats > 1:
            print(f"repeat {repeat + 1} of {repeats}", flush=True)
        results = run_sides(args, env, workdir, with_baseline=repeat == 0)
        for side, r in results.items():
            timings.setdefault(side, []).append(r)
        (Path(workdir) / ("evaluation.json" if args.eval_only else "summary.json")).write_text(
            json.dumps(results, indent=1)
        )
    for algo in args.algos.split(","):
        ours, theirs = timings[f"{algo}-alignloop"], timings[f"{algo}-trl"]
        print(
            f"{algo}: held-out reward alignloop − TRL {paired(ours[0]['eval_scores'], theirs[0]['eval_scores'])} "
            f"({len(ours[0]['eval_scores'])} paired samples, first repeat)"
        )
        if args.eval_only:
            continue
        print(
            ratio_line(
                f"{algo}: alignloop / TRL steps/s", [b["mean_step_s"] / a["mean_step_s"] for a, b in zip(ours, theirs)]
            )
        )
        print(
            ratio_line(
                f"{algo}: alignloop / TRL peak memory",
                [a["peak_rss_mb"] / b["peak_rss_mb"] for a, b in zip(ours, theirs)],
            )
        )
        if args.device == "cuda":
            ratios = [a["peak_gpu_mb"] / b["peak_gpu_mb"] for a, b in zip(ours, theirs)]
            print(ratio_line(f"{algo}: alignloop / TRL peak GPU memory", ratios))


def run_sides(args: argparse.Namespace, env: dict, workdir: str, with_baseline: bool) -> dict[str, dict]:
    """One run of every side (a subprocess each, in turn or --parallel), its lines printed as it ends."""
    passthrough = ["--steps", str(args.steps), "--lr", str(args.lr), "--max-new-tokens", str(args.max_new_tokens)]
    passthrough += ["--n-eval", str(args.n_eval), "--workdir", workdir, "--seed", str(args.seed)]
    passthrough += ["--device", args.device, "--dtype", args.dtype] + (["--eval-only"] if args.eval_only else [])
    results: dict[str, dict] = {}
    batches = [["baseline"]] if with_baseline else []
    batches += [[f"{algo}-alignloop", f"{algo}-trl"] for algo in args.algos.split(",")]
    if args.parallel and with_baseline:
        batches = [batches[0] + batches[1], *batches[2:]]
    elif not args.parallel:
        batches = [[side] for batch in batches for side in batch]
    for batch in batches:
        # --parallel runs alignloop and TRL side by side, so a busy machine slows both alike
        running = {
            side: subprocess.Popen(
                [sys.executable, __file__, "--side", side, *passthrough],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for side in batch
        }
        for side, proc in running.items():
            stdout, stderr = proc.communicate()
            lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.exit(f"{side} failed:\n{stderr[-4000:]}")
            r = results[side] = json.loads(lines[-1][len("RESULT ") :])
            if side == "baseline":
                print(f"untrained policy: held-out reward {r['eval_reward']:+.3f}", flush=True)
                continue
            if args.eval_only:
                print(f"{side:15s} held-out reward {r['eval_reward']:+.3f}", flush=True)
                continue
            steps = r["step_s"][1:] or r["step_s"]
            r["mean_step_s"] = sum(steps) / len(steps)
            print(
                f"{side:15s} step {r['mean_step_s']:6.2f} s   CPU {r['cpu_s']:7.1f} s   "
                f"peak RSS {r['peak_rss_mb']:6.0f} MB   "
                + (f"peak GPU {r['peak_gpu_mb']:6.0f} MB   " if "peak_gpu_mb" in r else "")
                + f"train reward first {r['train_reward'][0]:+.3f} last {r['train_reward'][-1]:+.3f} "
                f"mean {sum(r['train_reward']) / len(r['train_reward']):+.3f}   "
                f"held-out reward after training {r['eval_reward']:+.3f}   steps {[round(t, 1) for t in r['step_s']]}",
                flush=True,
            )
    if args.eval_only:
        base = results["baseline"]["eval_scores"]
        for side, r in results.items():
            if side != "baseline":
                print(f"{side:15s} held-out reward vs untrained {paired(r['eval_scores'], base)}")
    return results


if __name__ == "__main__":
    main()
