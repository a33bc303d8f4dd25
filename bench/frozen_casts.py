"""What casting the frozen weights once buys a bf16 learn phase (``alignloop.frozen_casts``).

The demo's policy (SmolLM2-135M-Instruct, LoRA r 16 on every linear layer, as `alignloop demo` trains it)
runs the passes of a GRPO learn step under bf16 autocast: a training forward and backward over a
minibatch of rollouts, and a scoring pass without gradients (the reference's). Each pass is timed
with the frozen weights cast once (``ActorCritic.compute_in``) and with autocast casting them in
every pass, interleaved in one process so that a drift of the machine's speed hits both alike; the
median of ``--calls`` pairs is printed with the ratio. Only meaningful where ``dtype: auto`` picks
bf16 for training (a CPU with native bf16, or a GPU).

    .venv/bin/python bench/frozen_casts.py [--rows 8] [--prompt 40] [--completion 48] [--calls 12]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from machine import print_machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="rollouts per pass (the demo's GRPO minibatch: 8)")
    parser.add_argument("--prompt", type=int, default=40, help="prompt tokens per row")
    parser.add_argument("--completion", type=int, default=48, help="completion tokens per row (the demo's 48)")
    parser.add_argument("--calls", type=int, default=12, help="timed pairs per pass")
    args = parser.parse_args()
    print_machine()

    import torch

    from alignloop.precision import differentiated_attention
    from alignloop.rl.config import RLConfig
    from alignloop.rl.rollout import pad_rollout_tensors
    from alignloop.rl.setup import build_models, make_algorithm

    config = RLConfig(algo="grpo", policy="default", reward_model="x:y", lora_r=16, lora_targets=["all-linear"])
    torch.manual_seed(0)
    models = build_models(config, make_algorithm(config), "cpu")
    actor_critic = models.actor_critic
    vocab = actor_critic.policy.config.vocab_size
    prompts = [torch.randint(100, vocab, (args.prompt,)).tolist() for _ in range(args.rows)]
    completions = [torch.randint(100, vocab, (args.completion,)).tolist() for _ in range(args.rows)]
    tensors = pad_rollout_tensors(prompts, completions, models.tokenizer.pad_token_id)
    inputs = {k: tensors[k] for k in ("input_ids", "attention_mask", "position_ids", "completion_ids")}
    bf16 = torch.bfloat16
    actor_critic.compute_in(bf16)
    kept = actor_critic.casts

    def one(cast_once: bool, train: bool) -> float:
        actor_critic.casts = kept if cast_once else None
        started = time.perf_counter()
        if cast_once:
            with torch.set_grad_enabled(train):
                out = actor_critic(**inputs, with_values=False)["logprobs"]
        else:  # what ActorCritic.forward ran before: autocast and the training attention kernel, no kept casts
            attention = differentiated_attention(torch.device("cpu"), bf16) if train else contextlib.nullcontext()
            with torch.autocast("cpu", dtype=bf16), attention, torch.set_grad_enabled(train):
                out = actor_critic(**inputs, with_values=False)["logprobs"]
        if train:
            out.sum().backward()
            actor_critic.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    tokens = args.rows * (args.prompt + args.completion)
    shape = f"{args.rows} rows x {tokens // args.rows} tokens"
    print(f"SmolLM2-135M-Instruct, LoRA r 16 on every linear layer, bf16 autocast, {shape}")
    for train, name in ((True, "training forward + backward"), (False, "scoring pass (no gradient)")):
        times: dict[bool, list[float]] = {True: [], False: []}
        for call in range(args.calls + 2):
            for cast_once in (False, True) if call % 2 else (True, False):
                seconds = one(cast_once, train)
                if call >= 2:  # two warm-up pairs
                    times[cast_once].append(seconds)
        every, once = (1000 * statistics.median(times[k]) for k in (False, True))
        print(f"{name:28s} cast in every pass {every:7.1f} ms   cast once {once:7.1f} ms   {every / once:.2f}x")


if __name__ == "__main__":
    main()
