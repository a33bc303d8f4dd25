"""Completions/s of `alignloop generate` against transformers' text-generation pipeline.

Same model (the default SmolLM2-135M-Instruct, float32, CPU), same prompts (the first
N built-in prompts, chat template applied by both), same K, temperature, top-p and
max new tokens. The pipeline is called once per prompt with num_return_sequences=K,
as a user of transformers would; alignloop runs its generate stage into a temporary
project (database writes included).

    .venv/bin/python bench/generate.py [--prompts 16] [-k 4] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from alignloop import api
from alignloop.backends import HFBackend, SamplingParams
from alignloop.config import GenerateConfig
from alignloop.generate import generate_completions
from alignloop.models import load_policy, resolve_policy
from alignloop.project import open_project
from alignloop.prompts import builtin_prompts_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("-k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    path = resolve_policy("default")
    lines = builtin_prompts_path().read_text().splitlines()[: args.prompts]
    prompts = [json.loads(line)["prompt"] for line in lines]
    sampling = {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": args.max_new_tokens}

    model, tokenizer = load_policy(path)
    backend = HFBackend(model, tokenizer, batch_size=args.batch_size)
    backend.generate_ids([[1, 2, 3]], SamplingParams(max_new_tokens=2), [0])  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bench"
        api.init(project).close()
        (Path(tmp) / "p.txt").write_text("\n".join(prompts))
        api.add_prompts(project, Path(tmp) / "p.txt")
        handle = open_project(project)
        config = GenerateConfig(model=path, k=args.k, batch_size=args.batch_size, **sampling)
        started = time.perf_counter()
        result = generate_completions(handle, config, backend=backend)
        ours_s = time.perf_counter() - started
        handle.close()
    ours = result.generated / ours_s

    from transformers import pipeline

    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    pipe([{"role": "user", "content": "Hi"}], max_new_tokens=2)  # warm-up
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
    theirs_s = time.perf_counter() - started
    theirs = produced / theirs_s

    print(f"prompts={len(prompts)} k={args.k} max_new_tokens={args.max_new_tokens} threads={torch.get_num_threads()}")
    print(f"alignloop generate:          {ours:6.2f} completions/s ({result.generated} in {ours_s:.1f} s)")
    print(f"transformers pipeline:       {theirs:6.2f} completions/s ({produced} in {theirs_s:.1f} s)")
    print(f"ratio alignloop / pipeline:  {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
