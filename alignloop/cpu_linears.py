"""How the sampler's matrix products run on a CPU.

A decode step multiplies a few rows by every weight matrix and should be bound by reading
the weights, but torch's default ``x·Wᵀ`` for such skinny products falls well short of that
on this kind of CPU. What was faster, measured on SmolLM2-135M's 211 matrices (AMD EPYC with
AVX-512 BF16, 2 threads):

* float32 weights, decode steps: the weight as the left operand (``W·xᵀ``): 33 ms instead of
  40 ms for the 210 matrices of the body and 7 ms instead of 15.5 ms for the 49k-token head, at
  8 rows. Not for the prefill: with hundreds of rows ``x·Wᵀ`` is the faster one.
* bf16 weights: oneDNN with the weights reordered once into its blocked layout, instead of
  reordering them inside every product: 23 ms instead of 35 ms for all 211 at 16 rows, 16 ms
  instead of 28 ms at 4 (``W·xᵀ`` is no faster there), and 1.1–1.4x faster for a prefill.

Both compute the same products (float rounding aside; the reordered bf16 weights give
identical results). ``sampler_linears`` patches each plain ``nn.Linear``'s forward for one
sampling call only, so the reordered copies never go stale and training never sees them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def sampler_linears(model: torch.nn.Module, rows: int) -> AbstractContextManager[None]:
    """The faster way to run ``model``'s linears while sampling batches of ``rows``; a no-op off a CPU."""
    import torch

    weight = next(model.parameters())
    if weight.device.type != "cpu":
        return contextlib.nullcontext()
    if weight.dtype == torch.float32:
        return weight_first_linears(model)
    if weight.dtype == torch.bfloat16 and bf16_prepacking_supported():
        return prepacked_linears(model, rows)
    return contextlib.nullcontext()


def bf16_prepacking_supported() -> bool:
    """Whether oneDNN can reorder bf16 weights on this CPU: it needs AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT,
    and on an AVX2-only CPU it raises instead; there a bf16 sampler runs the plain linears."""
    import torch

    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@contextlib.contextmanager
def _patched_linears(
    model: torch.nn.Module, make_forward: Callable[[torch.nn.Linear], Callable[[torch.Tensor], torch.Tensor]]
) -> Iterator[None]:
    """Every plain ``nn.Linear`` of ``model`` (a LoRA layer's base layer included) runs ``make_forward(module)``."""
    import torch

    patched = [m for m in model.modules() if type(m) is torch.nn.Linear]
    for module in patched:
        module.forward = make_forward(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def weight_first_linears(model: torch.nn.Module) -> AbstractContextManager[None]:
    """Compute each decode step's products (one position per row) as W·xᵀ instead of x·Wᵀ (float32 weights)."""
    import torch

    def make_forward(module: torch.nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            if x.dim() != 3 or x.shape[1] != 1:  # a prefill: x·Wᵀ is faster
                return torch.nn.functional.linear(x, module.weight, module.bias)
            flat = x.reshape(-1, x.shape[-1])
            out = torch.mm(module.weight, flat.t()).t().contiguous()  # row-major, as attention kernels expect
            if module.bias is not None:
                out = out + module.bias
            return out.reshape(*x.shape[:-1], module.weight.shape[0])

        return forward

    return _patched_linears(model, make_forward)


def prepacked_linears(model: torch.nn.Module, rows: int) -> AbstractContextManager[None]:
    """Compute every ``nn.Linear`` of ``model`` with its weight reordered once for oneDNN (bf16 weights).

    The reordered copies are made on entry (one pass over the weights, about two decode steps'
    time) and dropped on exit. ``rows``: the batch the layout is chosen for (any count works).
    """
    import torch

    def make_forward(module: torch.nn.Linear) -> Callable[[torch.Tensor], torch.Tensor]:
        packed = torch.ops.mkldnn._reorder_linear_weight(module.weight, rows)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return torch.ops.mkldnn._linear_pointwise(x, packed, module.bias, "none", [], "")

        return forward

    return _patched_linears(model, make_forward)
