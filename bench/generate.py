"""Completions/s of `alignloop generate` against transformers' text-generation pipeline.

Same model (the default SmolLM2-135M-Instruct, on the CPU or with ``--device cuda`` a GPU), same
prompts (the first N built-in prompts, chat template applied by both), same K, temperature,
top-p and max new tokens. The pipeline is called once per prompt with num_return_sequences=K,
as a user of transformers would, in float32 on a CPU (what `from_pretrained` gives) and in bf16
on a GPU. alignloop runs its generate stage into a temporary project (database writes
included) in the precision `dtype: auto` picks on this machine (see docs/config.md) and, when
that is not float32, also in float32, so that both the like-for-like ratio and what bf16 adds
are printed. The sides run interleaved, ``--repeats`` times; the median ratio and its spread are reported.

It also reports how close alignloop's decode runs to the memory-bandwidth bound: a decode step
reads every weight once (the tied embedding / LM head once) and each live row's KV cache, so
the bytes of the decode steps (timed apart from the prefill) per second of decode, against the
machine's measured read bandwidth (``machine.read_bandwidth`` of the device, the best of every
measurement in the run), as a percentage. That bound holds only while a step's arithmetic is
cheaper than its reads: with many rows the products are bound by the machine's arithmetic
instead. So it also reports the roofline: the larger of the step's read time at that bandwidth
and its FLOPs (every linear weight times the rows, plus attention over the cached positions) at
the measured matmul peak of the sampling precision (``machine.matmul_peak``), as a percentage
of the step's measured time, and which of the two bounds it is.

    .venv/bin/python bench/generate.py [--prompts 16] [-k 4] [--max-new-tokens 48] [--batch-size 64] [--repeats 3]
                                       [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from machine import add_device, add_repeats, matmul_peak, print_machine, ratio_line, read_bandwidth, spread

from alignloop import api
from alignloop.backends import DecodeStats, HFBackend, SamplingParams
from alignloop.config import GenerateConfig
from alignloop.generate import generate_completions
from alignloop.models import load_policy, pick_dtype, resolve_policy
from alignloop.project import open_project
from alignloop.prompts import builtin_prompts_path


def run_alignloop(
    backend: HFBackend, path: str, prompts: list[str], args: argparse.Namespace, sampling: dict
) -> tuple[float, DecodeStats]:
    """Completions/s of the generate stage into a fresh temporary project, and where its sampling time went."""
    backend.stats = DecodeStats()
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
    return result.generated / seconds, backend.stats


def attention_head_dim(config) -> int:
    """Width of one attention head: the config's own ``head_dim`` where it has one, else hidden size / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def decode_bytes(model: torch.nn.Module, stats: DecodeStats) -> tuple[float, float]:
    """(weight bytes, KV-cache bytes) that one decode step of ``stats`` read, on average.

    Weights: every parameter once in its sampling dtype (``parameters()`` yields a tied
    embedding / LM head once, and a step reads it once, as the head). KV cache: layers × 2
    (keys, values) × kv heads × head dim × dtype size per cached position, times the
    positions (rows × cache length, padding included) the steps attended to.
    """
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    config = model.config
    head_dim = attention_head_dim(config)
    dtype_size = next(model.parameters()).element_size()
    per_position = config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * dtype_size
    return weights, per_position * stats.cached_positions / max(stats.decode_forwards, 1)


def decode_flops(model: torch.nn.Module, stats: DecodeStats) -> float:
    """FLOPs of one decode step of ``stats``, on average: every linear weight (the LM head included, tied or
    not) times two per row, plus attention's two products (scores, then the weighted values) over each
    row's cached positions. Norms, rotary embeddings and sampling add a few per cent at most."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    config = model.config
    head_dim = attention_head_dim(config)
    steps = max(stats.decode_forwards, 1)
    attention = 4 * config.num_hidden_layers * config.num_attention_heads * head_dim * stats.cached_positions
    return (2 * linear * stats.row_steps + attention) / steps


def decode_line(name: str, model: torch.nn.Module, runs: list[DecodeStats], bandwidth: float, peak: float) -> str:
    """What alignloop's decode steps read per second, as a share of ``bandwidth``, and how close they run to
    the roofline: the larger of the step's reads at ``bandwidth`` and its FLOPs at ``peak`` (median over the runs)."""
    shares, step_ms, rates, reads, roofline = [], [], [], [], []
    for stats in runs:
        weights, cache = decode_bytes(model, stats)
        seconds = stats.decode_seconds / max(stats.decode_forwards, 1)
        reads.append((weights + cache) / seconds / 1e9)
        shares.append(100 * (weights + cache) / seconds / bandwidth)
        roofline.append(100 * max((weights + cache) / bandwidth, decode_flops(model, stats) / peak) / seconds)
        step_ms.append(1000 * seconds)
        rates.append(stats.row_steps / stats.decode_seconds)
    last = runs[-1]
    weights, cache = decode_bytes(model, last)
    flops = decode_flops(model, last)
    memory_ms, compute_ms = 1000 * (weights + cache) / bandwidth, 1000 * flops / peak
    bound = "compute" if compute_ms > memory_ms else "memory"
    prefill = last.prefill_seconds / (last.prefill_seconds + last.decode_seconds)
    return (
        f"{name} decode: {last.row_steps / max(last.decode_forwards, 1):.1f} rows/step, "
        f"weights {weights / 1e6:.0f} MB + KV cache {cache / 1e6:.1f} MB per step; "
        f"{spread(step_ms, ' ms/step', 1)}; {spread(rates, ' tokens/s', 1)}; "
        f"bytes read {spread(reads, ' GB/s', 1)} = {spread(shares, ' %', 1)} of bandwidth; "
        f"bounds: memory {memory_ms:.1f} ms, compute {compute_ms:.1f} ms "
        f"({flops / 1e9:.2f} GFLOP at {peak / 1e9:.1f} GFLOP/s), so {bound}-bound; "
        f"step at {spread(roofline, ' %', 1)} of the roofline; "
        f"prefill {100 * prefill:.0f} % of sampling time"
    )


def run_pipeline(pipe, prompts: list[str], args: argparse.Namespace, sampling: dict) -> float:
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
    batch = GenerateConfig.model_fields["batch_size"].default
    parser.add_argument(
        "--batch-size", type=int, default=batch, help=f"sequences per batch (default {batch}, the stage's)"
    )
    parser.add_argument("--dtype", default="auto", help="alignloop's sampling precision: auto, float32 or bfloat16")
    add_repeats(parser)
    add_device(parser)
    args = parser.parse_args()
    print_machine()
    torch.manual_seed(0)
    path = resolve_policy("default")
    lines = builtin_prompts_path().read_text().splitlines()[: args.prompts]
    prompts = [json.loads(line)["prompt"] for line in lines]
    sampling = {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": args.max_new_tokens}
    device = torch.device(args.device)
    chosen = str(pick_dtype(args.dtype, device, "sampling")).removeprefix("torch.")
    dtypes = [chosen] if chosen == "float32" else [chosen, "float32"]
    peer = "float32" if device.type == "cpu" else chosen  # what a transformers user gets on each

    backends = {}
    for dtype in dtypes:
        model, tokenizer = load_policy(path, dtype=dtype, device=args.device)
        backends[dtype] = HFBackend(model, tokenizer, batch_size=args.batch_size)
        # warm-up at the timed batch's shape: a GPU's first batch of that size loads kernels and plans
        rows = args.batch_size
        backends[dtype].generate_ids([[1, 2, 3]] * rows, SamplingParams(max_new_tokens=4), list(range(rows)))

    from transformers import pipeline

    pipe = pipeline("text-generation", model=backends[peer].model, tokenizer=backends[peer].tokenizer)
    pipe([{"role": "user", "content": "Hi"}], max_new_tokens=2)  # warm-up

    bandwidth = read_bandwidth(device=args.device)
    square = 1024 if device.type == "cpu" else 8192  # a GPU needs larger products to reach its peak
    peaks = {d: matmul_peak(d, args.device, size=square) for d in dtypes}
    print(
        f"prompts={len(prompts)} k={args.k} max_new_tokens={args.max_new_tokens} "
        f"alignloop dtype={args.dtype} -> {chosen}, pipeline {peer}; {args.repeats} repeats, interleaved",
        flush=True,
    )
    pipeline_name = f"pipeline {peer}"
    rates: dict[str, list[float]] = {f"alignloop {d}": [] for d in dtypes} | {pipeline_name: []}
    decodes: dict[str, list[DecodeStats]] = {d: [] for d in dtypes}
    for repeat in range(args.repeats):
        for dtype in dtypes:
            rate, stats = run_alignloop(backends[dtype], path, prompts, args, sampling)
            rates[f"alignloop {dtype}"].append(rate)
            decodes[dtype].append(stats)
        rates[pipeline_name].append(run_pipeline(pipe, prompts, args, sampling))
        bandwidth = max(bandwidth, read_bandwidth(device=args.device))
        peaks = {d: max(peaks[d], matmul_peak(d, args.device, size=square)) for d in dtypes}
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f}/s" for k, v in rates.items()), flush=True)

    n = len(prompts) * args.k
    where = f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"memory read bandwidth: {bandwidth / 1e9:.1f} GB/s (best sum over 1 GiB, {where})")
    for dtype in dtypes:
        print(f"{dtype} matmul peak: {peaks[dtype] / 1e9:.1f} GFLOP/s (best square product, {where})")
        print(decode_line(f"alignloop {dtype}", backends[dtype].model, decodes[dtype], bandwidth, peaks[dtype]))
    for name, values in rates.items():
        print(f"{name + ':':<28} {spread(values, ' completions/s')} ({n} per run)")
    pipe_rates = rates[pipeline_name]
    for dtype in dtypes:
        ours = rates[f"alignloop {dtype}"]
        print(ratio_line(f"ratio alignloop {dtype} / {pipeline_name}", [a / b for a, b in zip(ours, pipe_rates)]))
    if len(dtypes) == 2:
        ours, f32 = rates[f"alignloop {chosen}"], rates["alignloop float32"]
        print(ratio_line(f"ratio alignloop {chosen} / alignloop float32", [a / b for a, b in zip(ours, f32)]))


if __name__ == "__main__":
    main()
