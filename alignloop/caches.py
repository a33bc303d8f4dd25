"""Where files come from and go on this machine: alignloop's own cache, and whether the hub may be asked.

A leaf module (nothing from alignloop, nothing heavy), so ``precision``, ``models`` and
``datasets_io`` share it without importing each other: the web layer imports
``datasets_io`` through the pairs stage and must not reach ``models``, which loads torch.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$ALIGNLOOP_CACHE`` (default ``~/.cache/alignloop``): de-quantised default models, the dtype probe."""
    return Path(os.environ.get("ALIGNLOOP_CACHE", Path.home() / ".cache" / "alignloop"))


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads (read at call time, not at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return constants.HF_HUB_OFFLINE if value is None else value.strip().upper() in {"1", "ON", "YES", "TRUE"}
