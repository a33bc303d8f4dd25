"""Which attention kernel a training forward should run on this CPU, in each precision.

``alignloop.precision.differentiated_attention`` sends bf16 training forwards on a CPU to torch's
math kernel instead of its flash kernel, because the flash kernel's bf16 backward was measured
2-3x slower (torch 2.13). This prints, for the attention shapes alignloop trains, the forward
and the forward + backward time of both kernels in float32 and bf16 (the median of ``--calls``
calls each), so the choice can be checked on any machine and torch version:

    .venv/bin/python bench/attention_kernels.py [--calls 10]

Shapes: (rows, heads, length, head dim) with an additive padding mask (and a causal one for
decoders): MiniLM's attention over a packed reward-model batch, and SmolLM2's over a learn
phase's micro-batches.
"""

from __future__ import annotations

import argparse
import statistics
import time

from machine import print_machine

SHAPES = {
    "MiniLM, packed batch of 32 pairs' texts": (21, 12, 87, 32, False),
    "SmolLM2, 4 rollouts x 128 tokens": (4, 9, 128, 64, True),
    "SmolLM2, 8 rollouts x 160 tokens": (8, 9, 160, 64, True),
    "SmolLM2, 64 rollouts x 100 tokens": (64, 9, 100, 64, True),
}


def timed(kernel: str, dtype: str, shape: tuple, backward: bool, calls: int) -> float:
    """Median milliseconds of one attention call (and its backward) with ``kernel`` in ``dtype``."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows, heads, length, dim, causal = shape
    dt = getattr(torch, dtype)
    q, k, v = (torch.randn(rows, heads, length, dim, dtype=dt, requires_grad=backward) for _ in range(3))
    lowest = torch.finfo(dt).min
    mask = torch.zeros(rows, 1, length, length, dtype=dt)
    mask[rows // 2 :, :, :, : length // 8] = lowest  # half the rows left-padded
    if causal:
        mask = (mask + torch.full((length, length), lowest, dtype=dt).triu(1)).clamp(min=lowest)
    backend = SDPBackend.FLASH_ATTENTION if kernel == "flash" else SDPBackend.MATH
    times = []
    for call in range(calls + 2):
        started = time.perf_counter()
        with sdpa_kernel([backend]), torch.set_grad_enabled(backward):
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if backward:
            out.sum().backward()
        if call >= 2:  # two warm-up calls
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="timed calls per kernel, precision and shape")
    args = parser.parse_args()
    print_machine()
    print("ms per call, median; flash / math: > 1 means the math kernel is faster")
    for name, shape in SHAPES.items():
        for backward in (False, True):
            cells = []
            for dtype in ("float32", "bfloat16"):
                flash, math = (timed(kernel, dtype, shape, backward, args.calls) for kernel in ("flash", "math"))
                cells.append(f"{dtype} flash {flash:6.1f} math {math:6.1f} ({flash / math:.2f})")
            print(f"{name:38s} {'fwd+bwd' if backward else 'fwd    '}  " + "   ".join(cells))


if __name__ == "__main__":
    main()
