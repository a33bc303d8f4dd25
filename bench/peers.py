"""What the benchmarks against TRL share: installing the peer once, and alignloop's built-in prompts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def install_trl(version: str, target: Path) -> None:
    """``pip install trl==VERSION`` into ``target`` once, without dependencies (alignloop's venv has them).

    TRL is a peer to measure against, not an alignloop dependency, so it lives in its own
    directory under ``.bench`` and each benchmark puts that directory on ``sys.path`` itself.
    """
    if (target / "trl" / "__init__.py").exists():
        return
    print(f"installing trl=={version} into {target} (once)", flush=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    subprocess.run([*command, f"trl=={version}"], check=True)


def builtin_prompts() -> list[str]:
    """The text of alignloop's built-in prompts, in file order."""
    from alignloop.jsonl import read_jsonl
    from alignloop.prompts import builtin_prompts_path

    return [obj["prompt"] for _, obj in read_jsonl(builtin_prompts_path())]


def step_timer(times: list[float]):
    """A callback for TRL's trainers that appends each optimiser step's wall-clock seconds to ``times``."""
    import time

    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    return StepTimer()
