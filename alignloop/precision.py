"""Which floating-point precision `dtype: auto` means on this machine, decided by measuring.

bfloat16 halves the bytes every matrix product reads, but only pays where the hardware
computes it natively: on an AVX2-only CPU it is emulated and several times slower than
float32, while on a CPU with AVX-512 BF16 or AMX (and on most recent GPUs) it is 2–10x
faster. A flag alone does not settle it (the BLAS build, the shapes and the thread count
matter), so on a CPU that has a native bf16 flag a short probe times a few matrix
products of the two shapes that matter, in both precisions, interleaved:

* ``decode``: a decode step — 8 rows times a 2048 × 2048 weight (``x·Wᵀ``, as ``nn.Linear``);
* ``train``: a training step's body — 256 tokens times a 1024 × 1024 weight.

bf16 is chosen for a purpose when it is at least ``MIN_SPEEDUP`` times faster on that
purpose's shape. The answer is cached per machine in ``$ALIGNLOOP_CACHE/dtype-probe.json``
(default ``~/.cache/alignloop``), keyed by the CPU model, its precision flags, the torch
version and the thread count, so the probe (< 1 s) runs once. A CPU without a native bf16
flag is never probed: `auto` is float32 there at no cost.

The purposes: ``sampling`` (weights held in bf16 while sampling) follows ``decode``;
``training`` (bf16 autocast, float32 master weights and optimiser state) follows ``train``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from alignloop.caches import cache_dir

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

Purpose = Literal["sampling", "training"]
SHAPE_OF_PURPOSE: dict[str, str] = {"sampling": "decode", "training": "train"}
MIN_SPEEDUP = 1.2  # bf16 must beat float32 by this factor on the purpose's shape to be chosen
PROBE_FILE = "dtype-probe.json"
# CPU flags (Linux /proc/cpuinfo names) that decide what bf16 costs; `bf16` is Arm's.
PRECISION_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16", "bf16")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})

T = TypeVar("T")

# A function that returns the seconds one call of ``shape`` takes in ``dtype`` ("float32" / "bfloat16").
Measure = Callable[[str, str], float]


@dataclass(frozen=True)
class CPUInfo:
    model: str
    flags: tuple[str, ...]  # the PRECISION_FLAGS this CPU has, in that order
    cores: int

    @property
    def native_bf16(self) -> bool:
        return bool(NATIVE_BF16_FLAGS.intersection(self.flags))


def cpu_info(cpuinfo: str | None = None) -> CPUInfo:
    """The CPU model and its precision flags, from ``/proc/cpuinfo`` where there is one (``cpuinfo`` for tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, present = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in {"model name", "cpu model"} and value.strip():
            model = value.strip()
        elif name in {"flags", "features"}:
            present.update(value.split())
    return CPUInfo(model, tuple(f for f in PRECISION_FLAGS if f in present), os.cpu_count() or 1)


@dataclass(frozen=True)
class ProbeResult:
    """Seconds per call of each probe shape in each precision (the fastest of a few calls)."""

    key: str
    float32_s: dict[str, float]  # shape name -> seconds
    bfloat16_s: dict[str, float]

    def speedup(self, shape: str) -> float:
        """How many times faster bf16 ran ``shape`` than float32."""
        return self.float32_s[shape] / max(self.bfloat16_s[shape], 1e-12)

    def choice(self, purpose: Purpose) -> str:
        return "bfloat16" if self.speedup(SHAPE_OF_PURPOSE[purpose]) >= MIN_SPEEDUP else "float32"


def probe_key(cpu: CPUInfo | None = None) -> str:
    import torch

    cpu = cpu or cpu_info()
    return f"{cpu.model} | {' '.join(cpu.flags)} | torch {torch.__version__} | threads {torch.get_num_threads()}"


def _operands(shape: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    g = torch.Generator().manual_seed(0)
    if shape == "decode":
        return torch.randn(8, 2048, generator=g).to(dtype), torch.randn(2048, 2048, generator=g).to(dtype)
    return torch.randn(256, 1024, generator=g).to(dtype), torch.randn(1024, 1024, generator=g).to(dtype)


def timed_matmul(shape: str, dtype: str, calls: int = 3) -> float:
    """The fastest of ``calls`` timed products ``x·Wᵀ`` of ``shape`` in ``dtype`` (after one warm-up)."""
    import torch

    x, w = _operands(shape, getattr(torch, dtype))
    best = float("inf")
    for _ in range(calls + 1):
        started = time.perf_counter()
        torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - started)
    return best


def run_probe(key: str, measure: Measure = timed_matmul, rounds: int = 3) -> ProbeResult:
    """Time every shape in both precisions, interleaved over ``rounds`` (the minimum of each is kept)."""
    shapes = ("decode", "train")
    best: dict[str, dict[str, float]] = {"float32": {}, "bfloat16": {}}
    for _ in range(rounds):
        for shape in shapes:
            for dtype in ("float32", "bfloat16"):
                seconds = measure(shape, dtype)
                best[dtype][shape] = min(best[dtype].get(shape, float("inf")), seconds)
    return ProbeResult(key, best["float32"], best["bfloat16"])


def probe_path() -> Path:
    return cache_dir() / PROBE_FILE


def cached_probe(cpu: CPUInfo | None = None, measure: Measure = timed_matmul, path: Path | None = None) -> ProbeResult:
    """This machine's probe result: read from the cache file, else measured once and added to it."""
    key = probe_key(cpu)

    def parse(entry: dict[str, Any]) -> ProbeResult:
        return ProbeResult(key, dict(entry["float32_s"]), dict(entry["bfloat16_s"]))

    def run() -> dict[str, Any]:
        result = run_probe(key, measure)
        log.info(
            "precision probe: bf16 %.1fx float32 on a decode step, %.1fx on a training matmul",
            result.speedup("decode"),
            result.speedup("train"),
        )
        return {k: v for k, v in asdict(result).items() if k != "key"}

    return cached_measurement(path or probe_path(), key, run, parse)


def cached_measurement(path: Path, key: str, measure: Callable[[], dict[str, Any]], parse: Callable[[dict], T]) -> T:
    """``parse`` of the JSON object stored under ``key`` in ``path``; where there is none (or it does not
    parse: another version wrote it), ``measure()`` once and store its object there, beside other keys.

    A file that cannot be read or written costs a measurement, never an error.
    """
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict):
        try:
            return parse(entry)
        except (KeyError, TypeError, ValueError):
            pass  # an entry from another version of this file: measure again
    entry = measure()
    known[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(known, f, indent=2)
        os.replace(staging, path)  # atomic: two processes probing at once each leave a whole file
    except OSError as exc:
        log.warning("could not cache the measurement in %s: %s", path, exc)
    return parse(entry)


def auto_dtype(
    device: torch.device, purpose: Purpose, *, cpu: CPUInfo | None = None, measure: Measure = timed_matmul
) -> str:
    """What ``dtype: auto`` resolves to for ``purpose`` on ``device``: ``"bfloat16"`` or ``"float32"``."""
    import torch

    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type != "cpu":
        return "float32"
    cpu = cpu or cpu_info()
    if not cpu.native_bf16:
        return "float32"  # emulated bf16 is several times slower: nothing to measure
    return cached_probe(cpu, measure).choice(purpose)


def differentiated_attention(device: torch.device, compute: torch.dtype) -> AbstractContextManager[None]:
    """The attention kernel for a forward pass that will be differentiated, computing in ``compute`` on ``device``.

    On a CPU in bf16, torch's flash-attention kernel runs the forward fastest but its backward 2–3x
    slower than the plain (math) kernel's: fwd + bwd 38 against 14 ms for MiniLM's attention over a
    packed batch (21 rows × 12 heads × 87 × 32), 124 against 64 ms at 64 × 9 × 100 × 64 (torch 2.13,
    Xeon with AMX, 2 threads); in float32 the flash kernel is the faster one both ways. A whole step
    gains less where the products dominate: the MiniLM reward model's 1.8x, SmolLM2's (LoRA on every
    linear layer, 8 × 156 tokens) 1.09x. So training forwards there run the math kernel, and torch
    chooses everywhere else (forwards without gradients included). A new context per pass.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if device.type == "cpu" and compute == torch.bfloat16:
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


@contextlib.contextmanager
def eager_training_attention(model: nn.Module, device: torch.device, compute: torch.dtype) -> Iterator[None]:
    """``differentiated_attention`` for the reward model: on a CPU in bf16, transformers' own eager attention.

    The math kernel spends a sixth of its time making fully masked rows safe (``isneginf``, ``all``,
    ``where`` over every score) and computes in float32; eager attention (product, masked softmax in
    float32, product) skips the checks, which alignloop's masks never need (every row keeps at least
    one position), and rounds the scores to bf16 before the softmax. A MiniLM reward-model step takes
    208 ms against the math kernel's 244 (Xeon with AMX, 2 threads), at the same held-out accuracy on
    nine demos' labels (docs/benchmarks.md). Not for RL: SmolLM2's step gains only 7 % and a tiny
    model's learning test moved, so policies keep ``differentiated_attention``. Every transformers
    model inside ``model`` is switched for the pass and switched back after it; elsewhere nothing
    changes.
    """
    import torch
    from transformers import PreTrainedModel

    if not (device.type == "cpu" and compute == torch.bfloat16):
        yield
        return
    models = [m for m in model.modules() if isinstance(m, PreTrainedModel)]
    before = [m.config._attn_implementation for m in models]
    for m in models:
        m.set_attn_implementation("eager")
    try:
        yield
    finally:
        for m, implementation in zip(models, before):
            m.set_attn_implementation(implementation)
