"""Reward-model training throughput and accuracy: alignloop against TRL's ``RewardTrainer``, in one run.

Both train all-MiniLM-L6-v2 (the default backbone) on the same synthetic preference
pairs — the completion the VADER sentiment judge scores higher wins — with the same batch
size, max length, optimiser (AdamW, linear warm-up and decay), learning rate, epochs and
seed, one precision for both (``--dtype``, float32 by default; bf16 means autocast on both
sides), dropout off, no gradient checkpointing (TRL 1.16 turns it on by default, recomputing
every forward in the backward pass; the other benchmarks turn it off too), no evaluation during
training. TRL receives the very token ids alignloop builds (``[CLS] prompt [SEP] completion
[SEP]``). Afterwards both models are
scored on the same held-out pairs. The machine is printed first; the two sides alternate
``--repeats`` times and the median ratio with its spread is reported.

    .venv/bin/python bench/reward_vs_trl.py [--pairs 320] [--epochs 2] [--batch-size 16] [--repeats 3]
    .venv/bin/python bench/reward_vs_trl.py --device cuda --dtype auto     # on a GPU: bf16 autocast on both
    .venv/bin/python bench/reward_vs_trl.py --dtype bfloat16 --peer-attention math   # TRL on alignloop's CPU kernel
    .venv/bin/python bench/reward_vs_trl.py --dtype bfloat16 --train-embeddings      # both train the embeddings too

TRL 1.16.0 is installed with ``--no-deps`` into ``.bench/trl`` on first run; it is not an
alignloop dependency.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from machine import add_device, add_repeats, print_machine, ratio_line
from peers import install_trl

ROOT = Path(__file__).resolve().parent.parent
TRL_DIR = ROOT / ".bench" / "trl"
TRL_VERSION = "1.16.0"

PROMPTS = [
    "Write a short review of the restaurant you visited.",
    "How was your trip to the mountains?",
    "Tell me about your new job.",
    "What do you think of the film?",
    "Describe your neighbour's dog.",
    "How did the exam go?",
    "Give feedback on my essay.",
    "What was the concert like?",
    "How is the new phone?",
    "Tell me about the hotel.",
]
SENTENCES = [
    "It was a wonderful experience and I loved every minute.",
    "The staff were kind, helpful and genuinely friendly.",
    "Honestly it was great, better than I expected.",
    "I would happily recommend it to anyone.",
    "The view was beautiful in the morning light.",
    "It was fine, nothing special.",
    "The place opens at nine and closes at six.",
    "There were about twenty people there.",
    "We arrived on Tuesday by train.",
    "The colour of the walls was grey.",
    "It was terrible and I regret going.",
    "The service was slow, rude and disappointing.",
    "Everything was dirty and the food was awful.",
    "I was bored, tired and annoyed the whole time.",
    "Sadly the whole thing was a waste of money.",
]


@dataclass
class Measured:
    loop: float  # pairs/s inside the training loop (each framework's own count)
    end_to_end: float  # pairs/s over the whole call: loading, tokenised data in, trained model saved
    per_cpu_second: float  # pairs per second of this process's CPU time, end to end (robust to other load)
    wall: float  # seconds, end to end

    def line(self, name: str, accuracy: float) -> str:
        return (
            f"{name}: {self.loop:.2f} pairs/s in the training loop, {self.end_to_end:.2f} end to end "
            f"({self.wall:.1f} s), {self.per_cpu_second:.2f} per CPU-second; held-out accuracy {accuracy:.3f}"
        )


def make_pairs(n_pairs: int, seed: int) -> list:
    """Pairs of two completions to one prompt; the one the sentiment judge prefers (by at least 0.2) is chosen."""
    from alignloop.judges import sentiment
    from alignloop.records import Comparison

    rng = random.Random(seed)
    pairs = []
    while len(pairs) < n_pairs:
        prompt = f"{rng.choice(PROMPTS)} (#{rng.randrange(1000)})"
        a, b = (" ".join(rng.choices(SENTENCES, k=rng.randint(1, 7))) for _ in range(2))
        score_a, score_b = sentiment(prompt, a), sentiment(prompt, b)
        if abs(score_a - score_b) >= 0.2:
            chosen, rejected = (a, b) if score_a > score_b else (b, a)
            pairs.append(Comparison(prompt, chosen, rejected))
    return pairs


def held_out_accuracy(model, test, *, with_segments: bool) -> float:
    """Share of test pairs the model orders like the judge, from the same token ids for both frameworks."""
    from alignloop.reward.data import PairSet
    from alignloop.reward.evaluate import pair_deltas
    from alignloop.reward.packing import RewardScorer

    sequences = test.sequences
    if not with_segments:  # TRL trains without segment ids; evaluate it as it was trained
        sequences = [type(s)(s.input_ids, None, s.status) for s in sequences]
    pairs = PairSet(sequences, test.chosen, test.rejected, test.margin, test.agreement)
    deltas = pair_deltas(
        RewardScorer(model, packing=False), pairs, list(range(len(pairs))), pad_id=0, sequences_per_batch=64
    )
    return sum(d > 0 for d in deltas) / len(deltas)


def run_alignloop(args, train_pairs, out: Path) -> tuple[Measured, object]:
    from alignloop.reward import RewardConfig, train_reward
    from alignloop.reward.model import load_backbone

    config = RewardConfig(
        output=str(out), epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        max_length=args.max_length, eval_fraction=0.0, seed=args.seed, early_stopping_patience=0, dtype=args.dtype,
        freeze_embeddings=not args.train_embeddings,
    )  # fmt: skip
    started, cpu = time.perf_counter(), time.process_time()
    result = train_reward(config, pairs=train_pairs)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    model, _ = load_backbone(str(out / "model"))
    n = len(train_pairs) * args.epochs
    return Measured(result.pairs_per_s, n / wall, n / cpu, wall), model


def run_trl(args, train_set, out: Path) -> tuple[Measured, object]:
    import torch
    from datasets import Dataset
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from alignloop.models import resolve_reward_backbone
    from alignloop.reward.model import load_backbone

    rows = {
        "chosen_ids": [train_set.sequences[i].input_ids for i in train_set.chosen],
        "rejected_ids": [train_set.sequences[i].input_ids for i in train_set.rejected],
    }
    config = TRLRewardConfig(
        output_dir=str(out), num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.0, max_grad_norm=1.0,
        max_length=args.max_length, bf16=args.dtype == "bfloat16", fp16=False, use_cpu=args.device == "cpu",
        eval_strategy="no", gradient_checkpointing=False,
        save_strategy="no", report_to="none", logging_steps=10_000, seed=args.seed, disable_dropout=True,
        dataloader_num_workers=0,
    )  # fmt: skip
    started, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(args.seed)
    model, tokenizer = load_backbone(resolve_reward_backbone("default"))
    if not args.train_embeddings:  # as alignloop's default; the Trainer's optimiser takes only what requires a gradient
        model.get_input_embeddings().weight.requires_grad_(False)
    trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_dict(rows), processing_class=tokenizer)
    with peer_attention(args.peer_attention):
        output = trainer.train()
    trainer.save_model(str(out / "model"))  # a run is only useful once its model is saved, as alignloop's is
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    n = len(rows["chosen_ids"]) * args.epochs
    return Measured(output.metrics["train_samples_per_second"], n / wall, n / cpu, wall), trainer.model


def peer_attention(kernel: str):
    """TRL's attention kernel: torch's own choice (``auto``), or the math kernel that alignloop trains with in bf16
    on a CPU (``math``), for a like-for-like row."""
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH]) if kernel == "math" else contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=320, help="training pairs")
    parser.add_argument("--test-pairs", type=int, default=200, help="held-out pairs (new prompts)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtype", default="float32", help="both sides' precision: float32, bfloat16 (autocast) or auto (as alignloop)"
    )
    parser.add_argument(
        "--peer-attention",
        choices=("auto", "math"),
        default="auto",
        help="TRL's attention kernel: torch's choice, or the math kernel alignloop trains with in bf16 on a CPU",
    )
    parser.add_argument(
        "--train-embeddings",
        action="store_true",
        help="both sides also train the token embeddings (by default both keep them frozen, alignloop's default)",
    )
    add_repeats(parser)
    add_device(parser)
    args = parser.parse_args()
    print_machine()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    install_trl(TRL_VERSION, TRL_DIR)
    sys.path.insert(0, str(TRL_DIR))

    import torch

    from alignloop.models import pick_dtype, resolve_reward_backbone
    from alignloop.reward.data import SequenceEncoder, encode_pairs
    from alignloop.reward.model import load_backbone

    # one precision for both sides: `auto` is resolved as alignloop resolves it, and TRL gets the same
    args.dtype = str(pick_dtype(args.dtype, torch.device(args.device), "training")).removeprefix("torch.")

    train_pairs = make_pairs(args.pairs, seed=args.seed)
    test_pairs = make_pairs(args.test_pairs, seed=args.seed + 1)
    for pair in test_pairs:
        pair.split = "test"
    _, tokenizer = load_backbone(resolve_reward_backbone("default"))
    encoder = SequenceEncoder(tokenizer, args.max_length)
    train_set, _, _ = encode_pairs(train_pairs, encoder, too_long="skip")
    _, test_set, _ = encode_pairs(test_pairs, encoder, too_long="skip")
    lengths = [len(s.input_ids) for s in train_set.sequences]
    print(
        f"{len(train_set)} training pairs, {len(test_set)} held-out; sequence length {min(lengths)}-{max(lengths)} "
        f"tokens (mean {sum(lengths) / len(lengths):.0f}); batch {args.batch_size}, {args.epochs} epochs, "
        f"lr {args.lr}, max length {args.max_length}, {args.dtype}, TRL attention {args.peer_attention}, "
        f"{args.repeats} repeats interleaved",
        flush=True,
    )
    ours: list[Measured] = []
    trl: list[Measured] = []
    for repeat in range(args.repeats):
        work = Path(tempfile.mkdtemp(prefix="reward-bench-"))
        try:
            measured, ours_model = run_alignloop(args, train_pairs, work / "alignloop")
            ours_acc = held_out_accuracy(ours_model, test_set, with_segments=True)
            ours.append(measured)
            print(f"[{repeat + 1}] " + measured.line("alignloop", ours_acc), flush=True)
            measured, trl_model = run_trl(args, train_set, work / "trl")
            trl_acc = held_out_accuracy(trl_model, test_set, with_segments=False)
            trl.append(measured)
            print(f"[{repeat + 1}] " + measured.line(f"TRL {TRL_VERSION}", trl_acc), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print("ratio (alignloop / TRL), one per repeat:")
    print(ratio_line("  in the training loop", [a.loop / b.loop for a, b in zip(ours, trl)]))
    print(ratio_line("  end to end", [a.end_to_end / b.end_to_end for a, b in zip(ours, trl)]))
    print(ratio_line("  per CPU-second", [a.per_cpu_second / b.per_cpu_second for a, b in zip(ours, trl)]))
    print(f"held-out accuracy (last repeat): alignloop {ours_acc:.3f}, TRL {trl_acc:.3f}")


if __name__ == "__main__":
    main()
