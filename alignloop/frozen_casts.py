"""Frozen weights cast once to the autocast precision, instead of in every pass.

Under ``torch.autocast`` a linear layer's float32 weight is cast to bf16 for each product.
Autocast keeps that cast for the rest of the autocast region only for weights that require
a gradient; a frozen weight is cast again in every pass. Under LoRA every weight of the
policy is frozen, and so is the whole reference model, so each forward of a 135M model reads
540 MB of float32 and writes 270 MB of bf16 before its first product, and the reference and
old-policy passes of an RL step do it again.

``FrozenCasts`` keeps one cast of each frozen ``nn.Linear`` weight (a tied output head shares its
embedding's) and runs those layers on it while its context is open. The float32 weights stay as
they are, for saving, merging and the sampler's copy, so the products are the ones autocast would
compute (the same rounding to bf16) and only the repeated casts go. A cast is remade when its weight
was changed in place or replaced (its version counter, its storage), and a weight that requires a gradient is left
to autocast. The cost is one bf16 copy of the frozen weights (270 MB for SmolLM2-135M).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn


class FrozenCasts:
    """The frozen linear weights of ``model`` in ``dtype``, made on first use and kept."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        self.dtype = dtype
        # none where the weights are already in ``dtype`` (a float32 run): nothing to cast, nothing patched
        linears = [m for m in model.modules() if type(m) is nn.Linear and m.weight.dtype != dtype]
        self.forwards = [(module, self._forward(module)) for module in linears]  # made once, patched in per pass
        # id(weight) -> ((its storage, its version), its cast)
        self._casts: dict[int, tuple[tuple[int, int], torch.Tensor]] = {}
        self._depth = 0

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Run ``model``'s plain linear layers on the kept casts (a LoRA layer's base layer included)."""
        if self._depth == 0:
            for module, forward in self.forwards:
                module.forward = forward
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                for module, _ in self.forwards:
                    del module.forward

    def _forward(self, module: nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.weight(module.weight), module.bias)

        return forward

    def weight(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` itself where it is trained (autocast keeps its cast for the pass), else its kept cast."""
        if weight.requires_grad:
            return weight
        stamp = (weight.data_ptr(), weight._version)  # a new tensor put in its place, or written in place
        kept = self._casts.get(id(weight))
        if kept is None or kept[0] != stamp:
            # made outside inference mode even when the pass runs in it (a rollout's scoring), so that a later
            # training pass may save it for its backward
            with torch.inference_mode(False):
                kept = (stamp, weight.detach().to(self.dtype))
            self._casts[id(weight)] = kept
        return kept[1]
