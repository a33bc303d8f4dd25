"""The labeler-quality chart: agreement with the others (shrunk tau) and position bias per labeler.

One drawing for every place that shows it: ``labelers.png`` beside the consensus files, the
HTML report (which embeds that file) and the labeling app's admin page (the same PNG, inline).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def labeler_quality_chart(labelers: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Save the chart of ``labelers`` (rows of ``ConsensusReport.summary()["labelers"]``) as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(labeler_quality_png(labelers))
    return path


def labeler_quality_png(labelers: Sequence[dict[str, Any]]) -> bytes:
    """The chart as PNG bytes: one bar per labeler in each panel, flagged ones in red.

    ``labelers`` are the JSON rows of the consensus summary (``name``, ``tau_shrunk``,
    ``position_bias``, ``flagged``); an undefined statistic (``None``) draws no bar.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def values(key: str) -> list[float]:
        return [float("nan") if row.get(key) is None else float(row[key]) for row in labelers]

    names = [str(row["name"]) for row in labelers]
    colours = ["#c0392b" if row.get("flagged") else "#2e86c1" for row in labelers]
    height = max(2.5, 0.35 * len(labelers) + 1.2)
    fig, (ax_tau, ax_bias) = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    ax_tau.barh(names, values("tau_shrunk"), color=colours)
    ax_tau.axvline(0.0, color="black", linewidth=0.8)
    ax_tau.set_xlim(-1, 1)
    ax_tau.set_xlabel("agreement with the other labelers (Kendall tau, shrunk)")
    ax_bias.barh(names, values("position_bias"), color=colours)
    ax_bias.set_xlim(0, 1)
    ax_bias.set_xlabel("first-shown completion ranked first (share of tasks)")
    ax_tau.invert_yaxis()
    fig.suptitle("Labeler quality (red: flagged by the outlier rule)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
