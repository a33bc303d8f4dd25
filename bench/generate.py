"""Completions/s of `alignloop generate` against transformers' text-generation pipeline.

Same model (the default SmolLM2-135M-Instruct, CPU), same prompts (the first N built-in
prompts, chat template applied by both), same K, temperature, top-p and max new tokens. The
pipeline is called once per prompt with num_return_sequences=K, as a user of transformers
would, in float32 (what `from_pretrained` gives). alignloop runs its generate stage into a
temporary project (database writes included) in the precision `dtype: auto` picks on this
machine (see docs/config.md) and, when that is not float32, also in float32, so that both
the like-for-like ratio and what bf16 adds are printed. The sides run interleaved,
``--repeats`` times; the median ratio and its spread are reported.

    .venv/bin/python bench/generate.py [--prompts 16] [-k 4] [--max-new-tokens 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from machine import add_repeats, print_machine, ratio_line, spread

from alignloop import api
from alignloop.backends import HFBackend, SamplingParams
from alignloop.config import GenerateConfig
from alignloop.generate import generate_completions
from alignloop.models import load_policy, pick_dtype, resolve_policy
from alignloop.project import open_project
from alignloop.prompts import builtin_prompts_path


def run_alignloop(backend: HFBackend, path: str, prompts: list[str], args: argparse.Namespace, sampling: dict) -> float:
    """Completions/s of the generate stage into a fresh temporary project."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bench"
        api.init(project).close()
        (Path(tmp) / "p.txt").write_text("\n".join(prompts))
        api.add_prompts(project, Path(tmp) / "p.txt")
        handle = open_project(project)
        config = GenerateConfig(model=path, k=args.k, batch_size=args.batch_size, **sampling)
        started = time.perf_counter()
        result = generate_completions(handle, config, backend=backend)
        seconds = time.perf_counter() - started
        handle.close()
    return result.generated / seconds


def run_pipeline(pipe, prompts: list[str], args: argparse.Namespace, sampling: dict) -> float:  # noqa: ANN001
    """Completions/s of transformers' pipeline, one call per prompt."""
    started = time.perf_counter()
    produced = 0
    for prompt in prompts:
        out = pipe(
            [{"role": "user", "content": prompt}],
            do_sample=True,
            num_return_sequences=args.k,
            return_full_text=False,
            **sampling,
        )
        produced += len(out)
    return produced / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("-k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="auto", help="alignloop's sampling precision: auto, float32 or bfloat16")
    add_repeats(parser)
    args = parser.parse_args()
    print_machine()
    torch.manual_seed(0)
    path = resolve_policy("default")
    lines = builtin_prompts_path().read_text().splitlines()[: args.prompts]
    prompts = [json.loads(line)["prompt"] for line in lines]
    sampling = {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": args.max_new_tokens}
    chosen = str(pick_dtype(args.dtype, torch.device("cpu"), "sampling")).removeprefix("torch.")
    dtypes = [chosen] if chosen == "float32" else [chosen, "float32"]

    backends = {}
    for dtype in dtypes:
        model, tokenizer = load_policy(path, dtype=dtype)
        backends[dtype] = HFBackend(model, tokenizer, batch_size=args.batch_size)
        backends[dtype].generate_ids([[1, 2, 3]], SamplingParams(max_new_tokens=2), [0])  # warm-up

    from transformers import pipeline

    model32 = backends["float32"].model if "float32" in backends else load_policy(path, dtype="float32")[0]
    pipe = pipeline("text-generation", model=model32, tokenizer=backends[dtypes[0]].tokenizer)
    pipe([{"role": "user", "content": "Hi"}], max_new_tokens=2)  # warm-up

    print(
        f"prompts={len(prompts)} k={args.k} max_new_tokens={args.max_new_tokens} "
        f"alignloop dtype={args.dtype} -> {chosen}, pipeline float32; {args.repeats} repeats, interleaved",
        flush=True,
    )
    rates: dict[str, list[float]] = {f"alignloop {d}": [] for d in dtypes} | {"pipeline float32": []}
    for repeat in range(args.repeats):
        for dtype in dtypes:
            rates[f"alignloop {dtype}"].append(run_alignloop(backends[dtype], path, prompts, args, sampling))
        rates["pipeline float32"].append(run_pipeline(pipe, prompts, args, sampling))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f}/s" for k, v in rates.items()), flush=True)

    n = len(prompts) * args.k
    for name, values in rates.items():
        print(f"{name + ':':<28} {spread(values, ' completions/s')} ({n} per run)")
    pipe_rates = rates["pipeline float32"]
    for dtype in dtypes:
        ours = rates[f"alignloop {dtype}"]
        print(ratio_line(f"ratio alignloop {dtype} / pipeline float32", [a / b for a, b in zip(ours, pipe_rates)]))
    if len(dtypes) == 2:
        ours, f32 = rates[f"alignloop {chosen}"], rates["alignloop float32"]
        print(ratio_line(f"ratio alignloop {chosen} / alignloop float32", [a / b for a, b in zip(ours, f32)]))


if __name__ == "__main__":
    main()
