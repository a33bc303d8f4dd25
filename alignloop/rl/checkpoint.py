"""Checkpoints of an RL run, for an exact ``--resume``.

``checkpoints/step-<n>/`` holds ``state.pt`` — the trained weights (LoRA adapters and
value head, or every weight under full fine-tuning), the optimiser and scheduler, the
algorithm's state (PPO's KL controller), the step, the elapsed time and the reward
history that the stopping rule averages — and ``rng-<rank>.pt``, each process's random
number generator states. A checkpoint is written to a staging folder and renamed into
place, so a crash never leaves half of one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignloop.runs import RunDir


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter that trains, by name (cloned to CPU)."""
    return {name: p.detach().cpu().clone() for name, p in module.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run: RunDir,
    step: int,
    state: dict[str, Any],
    rank: int,
    is_main: bool,
    barrier: Callable[[], object],
    keep: int = 2,
) -> Path | None:
    """Write the shared ``state`` (main process) and each process's RNG states, then publish atomically.

    The newest ``keep`` checkpoints stay (0 keeps them all, for an over-optimisation curve)."""
    staging = run.checkpoints / ".staging"
    if is_main:
        staging = run.staging_dir()
        torch.save(state, staging / "state.pt")
    barrier()
    torch.save(rng_state(), staging / f"rng-{rank}.pt")
    barrier()
    published = run.commit_checkpoint(staging, step, keep=keep) if is_main else None
    barrier()
    return published


def load_checkpoint(path: Path, rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(shared state, this process's RNG states or None when the run had fewer processes)."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    rng_file = path / f"rng-{rank}.pt"
    rng = torch.load(rng_file, map_location="cpu", weights_only=False) if rng_file.exists() else None
    return state, rng


def restore_trainable(module: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy saved weights into the module's trainable parameters; every one must be present."""
    params = {name: p for name, p in module.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(weights))
    if missing:
        raise ValueError(
            f"checkpoint lacks {len(missing)} trained weights (e.g. {missing[0]}); was it written with another config?"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.device, p.dtype))


def restore_training(
    path: Path, rank: int, module: nn.Module, optimizer: Any, scheduler: Any, weights_key: str
) -> dict[str, Any]:
    """Resume from checkpoint ``path``: the trained weights (``state[weights_key]``), optimiser and
    scheduler, and this process's RNG states. Returns the saved state for the caller's own parts."""
    from alignloop.errors import AlignloopError

    state, rng = load_checkpoint(path, rank)
    try:
        restore_trainable(module, state[weights_key])
    except ValueError as exc:
        raise AlignloopError(f"{path}: {exc}") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if rng is not None:
        set_rng_state(rng)
    return state
