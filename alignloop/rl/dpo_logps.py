"""Log-probabilities of DPO pairs: one batched forward that shares each prompt, and the reference's, cached.

The reference is the policy before training: with LoRA, the same weights with the adapter
disabled; with full fine-tuning, the initial weights. Its log-probabilities never change,
so they are computed once, before the first step, and cached in the run directory
(``reference_logps.pt``), which ``--resume`` reuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from alignloop.errors import AlignloopError
from alignloop.rl.dpo_config import DPOConfig
from alignloop.rl.dpo_data import EncodedPair, collate
from alignloop.runs import RunDir

if TYPE_CHECKING:
    from accelerate import Accelerator

REFERENCE_CACHE = "reference_logps.pt"


def batch_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log-probability of each completion under ``model``: (2B,), chosen rows then rejected rows.

    Two passes share the prompt: the prompts run once (B rows) and leave their keys and values
    in a KV cache, which is repeated for the two completions of each pair; the completions
    (2B rows) then run on top of it. Gradients flow through the cache into the prompt pass.
    Against running 2B full sequences, this skips B·P tokens of compute per step.
    """
    from alignloop.losses import completion_logps
    from alignloop.models import decoder_and_head
    from alignloop.rl.rollout import hidden_after_shared_prompts

    decoder, head = decoder_and_head(model)
    pairs = batch["prompt_ids"].shape[0]
    hidden = hidden_after_shared_prompts(
        decoder,
        {"input_ids": batch["prompt_ids"], "attention_mask": batch["prompt_mask"],
         "position_ids": batch["prompt_positions"]},
        torch.arange(pairs, device=batch["prompt_ids"].device).repeat_interleave(2),  # chosen and rejected
        {"input_ids": batch["completion_ids"][:, :-1], "attention_mask": batch["attention_mask"][:, :-1],
         "position_ids": batch["completion_positions"][:, :-1]},  # the last token predicts nothing we score
    )  # fmt: skip
    logits = head(hidden).float()  # (2B, C, vocab)
    logps = completion_logps(logits, batch["completion_ids"], batch["completion_mask"])
    return torch.cat([logps[0::2], logps[1::2]])


class PairLogps(nn.Module):
    """``batch_logps`` as one module call, so DDP sees a single forward per backward."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch_logps(self.policy, batch)


def pairs_fingerprint(config: DPOConfig, encoded: Sequence[EncodedPair]) -> str:
    """Identifies what the cached reference log-probs were computed for (pairs, tokens, policy)."""
    digest = hashlib.sha256(config.policy.encode())
    for pair in encoded:
        digest.update(json.dumps([pair.prompt, pair.chosen, pair.rejected]).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def reference_model(model: torch.nn.Module, config: DPOConfig, step: int) -> Iterator[torch.nn.Module]:
    """The reference policy: the adapter disabled (LoRA), the current weights before the first update
    (full fine-tuning, step 0), or a fresh copy of the initial policy loaded from disk."""
    if config.lora_r:
        with model.disable_adapter():
            yield model
    elif step == 0:
        yield model
    else:
        from alignloop.models import load_policy

        fresh, _ = load_policy(config.policy, device=str(next(model.parameters()).device), dtype=config.dtype)
        yield fresh.eval()


def distributed_logps(
    accelerator: Accelerator,
    model: torch.nn.Module,
    encoded: Sequence[EncodedPair],
    pad_id: int,
    batch_size: int,
) -> torch.Tensor:
    """Log-probs (n, 2) = (chosen, rejected) of every pair under ``model`` (no gradients). Each process
    computes a contiguous chunk and the chunks are gathered, so every process holds all of them."""
    n, world, rank = len(encoded), accelerator.num_processes, accelerator.process_index
    chunk = math.ceil(n / world) if n else 0
    mine = list(range(rank * chunk, min((rank + 1) * chunk, n)))
    mine += [max(n - 1, 0)] * (chunk - len(mine))  # equal shapes for the gather; the padding is dropped below
    rows = [torch.zeros((0, 2), device=accelerator.device)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            idx = mine[start : start + batch_size]
            batch = {k: v.to(accelerator.device) for k, v in collate([encoded[i] for i in idx], pad_id).items()}
            logps = batch_logps(model, batch)
            rows.append(torch.stack([logps[: len(idx)], logps[len(idx) :]], dim=1))
    model.train(was_training)
    local = torch.cat(rows)
    return (accelerator.gather(local) if world > 1 else local)[:n].cpu()


def cached_reference_logps(
    run: RunDir,
    accelerator: Accelerator,
    model: torch.nn.Module,
    encoded: Sequence[EncodedPair],
    config: DPOConfig,
    pad_id: int,
    step: int,
) -> torch.Tensor:
    """Load ``reference_logps.pt`` when it matches these pairs; otherwise compute it once and save it."""
    path = run.path / REFERENCE_CACHE
    fingerprint = pairs_fingerprint(config, encoded)
    if path.exists():
        cached = torch.load(path, weights_only=True)
        if cached.get("fingerprint") == fingerprint:
            return cached["logps"]
        if step > 0:
            raise AlignloopError(
                f"{path} was computed for other pairs or another policy; start a fresh run instead of resuming"
            )
    with reference_model(model, config, step) as ref:
        logps = distributed_logps(accelerator, ref, encoded, pad_id, 2 * config.batch_size)
    if accelerator.is_main_process:
        tmp = path.with_suffix(".tmp")
        torch.save({"fingerprint": fingerprint, "logps": logps}, tmp)
        tmp.replace(path)
    accelerator.wait_for_everyone()
    return logps
