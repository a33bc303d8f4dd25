"""A copy of the policy in the sampling precision, refreshed from the trained weights before each rollout.

On a CPU with native bf16 a decode step is bound by reading the weights, and bf16 weights
halve that (and run on native kernels): sampling from a bf16 copy is 2–3x faster than from
the float32 weights the optimiser updates. The copy is made once; before each rollout only
what training can have changed is written into it: under LoRA the adapted projections
(W + ΔW, merged), under full fine-tuning every weight. The copy samples slightly different
probabilities than the trainer computes; the rollout records the sampler's log-probs, the
trainer logs the gap (``<algo>/logprob_gap``) and weights each token's policy loss by the
truncated importance ratio min(π_train / π_sampler, C) (``importance_cap``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from alignloop.models import PEFT_PREFIX, lora_merged_weight


class SamplerCopy:
    """``model``: a plain causal LM in ``dtype`` (LoRA merged) that the generation backend samples from."""

    def __init__(self, policy: nn.Module, dtype: torch.dtype) -> None:
        self.policy = policy
        self.lora = hasattr(policy, "merge_and_unload")
        source = copy.deepcopy(policy)
        plain = source.merge_and_unload() if self.lora else source
        # Only the weights change precision: ``Module.to(dtype)`` would also round buffers such as
        # the rotary inverse frequencies, which transformers keeps in float32 (in bf16 their error
        # turns positions ~100 tokens in by a fifth of a radian), as loading with ``dtype`` does.
        for param in plain.parameters():
            param.data = param.data.to(dtype)
        self.model = plain.eval().requires_grad_(False)
        modules = dict(self.model.named_modules())
        # (trained module, its counterpart in the copy) for every module whose weights training updates
        self.pairs: list[tuple[nn.Module, nn.Module]] = []
        if self.lora:
            for name, module in policy.named_modules():
                if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
                    self.pairs.append((module, modules[name.removeprefix(PEFT_PREFIX)]))

    @torch.no_grad()
    def sync(self) -> None:
        """Write the trained weights into the copy (cast to its precision)."""
        if not self.lora:
            for target, source in zip(self.model.parameters(), self.policy.parameters()):
                target.copy_(source)
            return
        for lora_module, target in self.pairs:
            target.weight.copy_(lora_merged_weight(lora_module))
