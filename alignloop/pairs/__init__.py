"""Pairs: rankings and thumbs → chosen/rejected comparisons; import and export formats.

``build`` turns ranking arrays into pair arrays (vectorised), ``dataset`` builds the
project's comparisons with provenance and keeps imported pairs, ``formats`` holds the
registry of pairs formats (alignloop / TRL / OpenRLHF / HH) and writes and reads them.

``formats`` is imported at once and is light, so the CLI's help and the labeling app can
list ``FORMATS``; ``dataset`` (the consensus stage, numpy, the store) loads on first use
of one of its names.
"""

from __future__ import annotations

import importlib
from typing import Any

from alignloop.pairs.formats import FORMATS, PairsFormat, detect_format, format_rows, read_pairs, write_pairs

_FROM_DATASET = ("ImportResult", "build_pairs", "build_unpaired", "import_pairs", "imported_pairs")

__all__ = [
    "FORMATS",
    "ImportResult",
    "PairsFormat",
    "build_pairs",
    "build_unpaired",
    "detect_format",
    "format_rows",
    "import_pairs",
    "imported_pairs",
    "read_pairs",
    "write_pairs",
]


def __getattr__(name: str) -> Any:
    if name in _FROM_DATASET:
        return getattr(importlib.import_module("alignloop.pairs.dataset"), name)
    raise AttributeError(f"module 'alignloop.pairs' has no attribute {name!r}")
