"""How the inference passes' matrix products run on a CPU: the sampler's, and an RL rollout's scoring.

A decode step multiplies a few rows by every weight matrix; torch's default ``x·Wᵀ`` (MKL)
for such skinny products falls well short of what the CPU can do. Two faster kernels, each
computing the same products (float rounding aside):

* **oneDNN with the weight reordered into its blocked layout** (``onednn``). bf16 weights
  (AMD EPYC with AVX-512 BF16, 2 threads): 23 ms instead of 35 ms for SmolLM2-135M's 211
  matrices at 16 rows, 16 instead of 28 at 4, 1.1–1.4x for a prefill. float32 weights (AMD
  EPYC, AVX2 only, 2 threads): at 8 rows 0.27 instead of 0.49 ms for a 576 × 1536 matrix and
  9.9 instead of 43.5 ms for the 49k-token head; at 320 rows (a rollout's scoring pass) 6.7
  instead of 9.1 and 262 instead of 335 ms. Reordering SmolLM2's float32 weights takes 0.26 s.
* **The weight as the left operand** (``W·xᵀ``, float32 decode steps only; ``weight_first``):
  on the AVX-512 EPYC 33 instead of 40 ms for the 210 matrices of the body and 7 instead of
  15.5 ms for the head, at 8 rows.

Which float32 kernel a CPU gets is measured, not assumed: a short probe (``float32_kernel``)
times both on decode-shaped products over weights larger than the caches, once per machine,
cached beside the precision probe. bf16 weights take oneDNN where it supports bf16 on the CPU
(it needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT, and raises on an AVX2-only CPU, which keeps the
plain linears).

Reordering costs one more copy of the weights while the pass runs (540 MB for SmolLM2-135M in
float32). Within ``kept_reorders`` (an RL step's rollout: its sampling and its scoring pass) the
copy of a frozen weight (a LoRA policy's base, a reference model) is made once and reused; the
copies go when it closes, so training never holds them. While sampling, a LoRA layer runs as one
product with its adapters merged (W + ΔW, computed on entry): 8 % of a GRPO rollout's sampling
time on the AVX2 EPYC went to the unmerged adapters' small products. The patches last one call,
so training never sees them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alignloop.caches import cache_dir

if TYPE_CHECKING:
    import torch

Kernel = Literal["onednn", "weight_first"]
KERNELS: tuple[Kernel, ...] = ("onednn", "weight_first")
PROBE_FILE = "linear-probe.json"
# The probe's decode step: 8 rows through 16 distinct 1536 × 576 float32 weights (56 MB, past the
# last-level cache, as a model's weights are; one weight timed again and again would sit in the cache).
PROBE_ROWS, PROBE_SHAPE, PROBE_WEIGHTS = 8, (1536, 576), 16

# id(frozen weight) -> (the weight, its version when reordered, its reordered copy), while kept_reorders is open
_kept: dict[int, tuple[torch.Tensor, int, torch.Tensor]] | None = None


@contextlib.contextmanager
def kept_reorders() -> Iterator[None]:
    """Reuse the reordered copies of frozen weights across the inference calls inside (nested: the outermost
    decides); they are dropped on exit."""
    global _kept
    if _kept is not None:
        yield
        return
    _kept = {}
    try:
        yield
    finally:
        _kept = None


def sampler_linears(model: torch.nn.Module, rows: int) -> AbstractContextManager[None]:
    """The fastest way measured to run ``model``'s linears while sampling batches of ``rows``, LoRA merged;
    a no-op off a CPU."""
    kernel = _kernel_for(model)
    if kernel is None:
        return contextlib.nullcontext()
    return _patched_linears(model, kernel, rows, merge_lora=True, frozen_only=False)


def scoring_linears(model: torch.nn.Module, rows: int) -> AbstractContextManager[None]:
    """For inference-mode passes over whole sequences (an RL rollout's policy and reference scores, an evaluation's
    KL pass): the frozen linears of ``model`` on oneDNN's reordered weights where that is this CPU's kernel.
    Trainable weights and LoRA adapters run as they are, so enabling or disabling adapters inside keeps its
    meaning."""
    if _kernel_for(model) != "onednn":
        return contextlib.nullcontext()
    return _patched_linears(model, "onednn", rows, merge_lora=False, frozen_only=True)


def _kernel_for(model: torch.nn.Module) -> Kernel | None:
    import torch

    weight = next(model.parameters())
    if weight.device.type != "cpu":
        return None
    if weight.dtype == torch.float32:
        return float32_kernel()
    if weight.dtype == torch.bfloat16 and bf16_prepacking_supported():
        return "onednn"
    return None


def bf16_prepacking_supported() -> bool:
    """Whether oneDNN can reorder bf16 weights on this CPU: it needs AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT,
    and on an AVX2-only CPU it raises instead; there a bf16 sampler runs the plain linears."""
    import torch

    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def float32_kernel(measure: Callable[[], dict[str, float]] | None = None, path: Path | None = None) -> Kernel:
    """The faster float32 decode kernel on this machine, from the cached probe (measured on first use)."""
    import torch

    from alignloop.precision import cached_measurement, probe_key

    if not torch.backends.mkldnn.is_available():
        return "weight_first"

    def parse(entry: dict[str, Any]) -> Kernel:
        seconds = {kernel: float(entry[kernel]) for kernel in KERNELS}
        return min(KERNELS, key=seconds.__getitem__)

    return cached_measurement(path or cache_dir() / PROBE_FILE, probe_key(), measure or timed_kernels, parse)


def timed_kernels(rounds: int = 3) -> dict[str, float]:
    """Seconds per probe decode step (all ``PROBE_WEIGHTS`` products) of each kernel, the best of ``rounds``,
    interleaved."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_ROWS, PROBE_SHAPE[1], generator=g)
    weights = [torch.randn(*PROBE_SHAPE, generator=g) for _ in range(PROBE_WEIGHTS)]
    with torch.inference_mode():
        forwards = {
            "onednn": [_onednn(_reorder(w, PROBE_ROWS), None) for w in weights],
            "weight_first": [_weight_first(w, None) for w in weights],
        }
        best = dict.fromkeys(KERNELS, float("inf"))
        for _ in range(rounds + 1):  # the first round warms up
            for kernel in KERNELS:
                started = time.perf_counter()
                for forward in forwards[kernel]:
                    forward(x[:, None, :])
                best[kernel] = min(best[kernel], time.perf_counter() - started)
    return best


@contextlib.contextmanager
def _patched_linears(
    model: torch.nn.Module, kernel: Kernel, rows: int, *, merge_lora: bool, frozen_only: bool
) -> Iterator[None]:
    """Every plain ``nn.Linear`` of ``model`` (a LoRA layer's base layer included) runs on ``kernel``; with
    ``merge_lora`` each LoRA layer whose adapters are active runs as one product of its merged weight."""
    import torch

    from alignloop.models import lora_merged_weight

    patched: list[torch.nn.Module] = []
    merged_parts: set[int] = set()  # modules inside a merged LoRA layer: they do not run
    with torch.no_grad():
        for module in model.modules() if merge_lora else ():
            if id(module) not in merged_parts and _mergeable_lora(module):
                weight = lora_merged_weight(module)
                module.forward = _make_forward(kernel, weight, module.base_layer.bias, rows, keep=False)
                patched.append(module)
                merged_parts.update(id(part) for part in module.modules())
        for module in model.modules():
            if type(module) is not torch.nn.Linear or id(module) in merged_parts:
                continue
            # an inference tensor keeps no version counter, so a kept copy could not tell it changed
            frozen = not module.weight.requires_grad and not module.weight.is_inference()
            if frozen_only and not frozen:
                continue
            module.forward = _make_forward(kernel, module.weight, module.bias, rows, keep=frozen)
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _mergeable_lora(module: torch.nn.Module) -> bool:
    """A peft LoRA layer over an ``nn.Linear`` whose active adapters are plain LoRA (no DoRA or other variant,
    no adapter bias), enabled and not merged already: its output is ``x·(W + ΔW)ᵀ + b``."""
    import torch

    if not (hasattr(module, "get_delta_weight") and type(getattr(module, "base_layer", None)) is torch.nn.Linear):
        return False
    if module.disable_adapters or module.merged:
        return False
    active = [a for a in module.active_adapters if a in module.lora_A]
    return all(a not in module.lora_variant and not module.lora_bias.get(a, False) for a in active)


def _make_forward(
    kernel: Kernel, weight: torch.Tensor, bias: torch.Tensor | None, rows: int, *, keep: bool
) -> Callable[..., torch.Tensor]:
    if kernel == "onednn":
        return _onednn(_kept_reorder(weight, rows) if keep else _reorder(weight, rows), bias)
    return _weight_first(weight, bias)


def _reorder(weight: torch.Tensor, rows: int) -> torch.Tensor:
    import torch

    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)


def _kept_reorder(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """``weight`` reordered: the copy made earlier within ``kept_reorders`` unless the weight changed since."""
    if _kept is None:
        return _reorder(weight, rows)
    kept = _kept.get(id(weight))
    if kept is not None and kept[0] is weight and kept[1] == weight._version:
        return kept[2]
    reordered = _reorder(weight, rows)
    _kept[id(weight)] = (weight, weight._version, reordered)
    return reordered


def _onednn(reordered: torch.Tensor, bias: torch.Tensor | None) -> Callable[..., torch.Tensor]:
    import torch

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, reordered, bias, "none", [], "")

    return forward


def _weight_first(weight: torch.Tensor, bias: torch.Tensor | None) -> Callable[..., torch.Tensor]:
    """``W·xᵀ`` for a decode step (one position per row); ``x·Wᵀ``, the faster one there, for a prefill."""
    import torch

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            return torch.nn.functional.linear(x, weight, bias)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.mm(weight, flat.t()).t().contiguous()  # row-major, as attention kernels expect
        if bias is not None:
            out = out + bias
        return out.reshape(*x.shape[:-1], weight.shape[0])

    return forward
