"""What every benchmark prints and how it repeats: the machine it ran on, and ratios over repeats.

A ratio measured once on a shared machine moves with the load, and the same ratio on another
CPU can invert (bf16 is ~8x slower than float32 on an AVX2-only CPU and ~3x faster on one with
AVX-512 BF16). So each benchmark prints the machine first (``print_machine``), runs alignloop
and its peer interleaved ``--repeats`` times (default 3), and reports the median ratio with its
spread (``ratio_line``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics


def machine_line() -> str:
    """CPU model, the ISA flags that decide float32 vs bf16 speed, cores, torch threads and versions, load."""
    from alignloop.precision import cpu_info

    cpu = cpu_info()
    parts = [f"cpu: {cpu.model}", f"flags: {' '.join(cpu.flags) or 'none of avx2/avx512f/avx512_bf16/amx'}"]
    parts.append(f"cores: {cpu.cores}")
    try:
        import torch

        parts.append(f"torch {torch.__version__} threads {torch.get_num_threads()}")
        if torch.cuda.is_available():
            parts.append(f"gpu: {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    parts.append(f"python {platform.python_version()}")
    if hasattr(os, "getloadavg"):
        parts.append("load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return "machine: " + "; ".join(parts)


def read_bandwidth(mib: int = 1024, runs: int = 5, device: str = "cpu") -> float:
    """Bytes per second this process reads from ``device``'s memory (on a CPU, with torch's current thread count).

    The best of ``runs`` sums over a ``mib`` MiB float32 buffer, far larger than any L3 (or a
    GPU's L2) cache, so every byte comes from DRAM or HBM; a sum does one add per 4 bytes, far
    below what the cores compute, so the time is the read. Best, not median: other jobs only
    ever slow it down.
    """
    import time

    import torch

    buffer = torch.ones(mib * 2**20 // 4, device=device)
    synchronize = torch.cuda.synchronize if buffer.is_cuda else (lambda: None)
    buffer.sum()
    best = float("inf")
    for _ in range(runs):
        synchronize()
        started = time.perf_counter()
        buffer.sum()
        synchronize()
        best = min(best, time.perf_counter() - started)
    return buffer.numel() * buffer.element_size() / best


def matmul_peak(dtype: str = "float32", device: str = "cpu", size: int = 1024, repeats: int = 20) -> float:
    """Best ``torch.matmul`` throughput of ``device`` in ``dtype`` (FLOP/s), with torch's current thread count.

    Square ``size`` products, the shape that runs nearest a machine's arithmetic peak (a GPU needs
    larger ones to fill it); the best of ``repeats``, because other jobs only ever slow it down.
    """
    import time

    import torch

    a, b = (torch.randn(size, size, dtype=getattr(torch, dtype), device=device) for _ in range(2))
    synchronize = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        torch.matmul(a, b)
        synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def print_machine() -> None:
    print(machine_line(), flush=True)


def add_repeats(parser: argparse.ArgumentParser, default: int = 3) -> None:
    parser.add_argument(
        "--repeats",
        type=int,
        default=default,
        help=f"runs of each side, interleaved (default {default}); the median ratio and its spread are reported",
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where both sides run (default cpu); on cuda both use bf16 where the GPU has it",
    )


def spread(values: list[float], unit: str = "", digits: int = 2) -> str:
    """``median X (min–max A–B, n N)``."""
    if not values:
        return "no values"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}{unit} (one run)"
    low, high = min(values), max(values)
    return f"median {med:.{digits}f}{unit} (min–max {low:.{digits}f}–{high:.{digits}f}{unit}, n {len(values)})"


def ratio_line(label: str, ratios: list[float]) -> str:
    """One line for a ratio measured once per repeat, e.g. ``alignloop / pipeline: median 3.9x (...)``."""
    return f"{label}: {spread(ratios, 'x')}"
