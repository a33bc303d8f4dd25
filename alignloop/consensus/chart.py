"""The labeler-quality chart: agreement with the others (shrunk tau) and position bias per labeler."""

from __future__ import annotations

from pathlib import Path

from alignloop.consensus.quality import LabelerQuality


def labeler_quality_chart(labelers: list[LabelerQuality], path: str | Path) -> Path:
    """Save a PNG with one bar per labeler (flagged ones in red) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(labeler_quality_png(labelers))
    return path


def labeler_quality_png(labelers: list[LabelerQuality]) -> bytes:
    """The chart as PNG bytes (the admin dashboard serves these directly)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [q.name for q in labelers]
    colours = ["#c0392b" if q.flagged else "#2e86c1" for q in labelers]
    height = max(2.5, 0.35 * len(labelers) + 1.2)
    fig, (ax_tau, ax_bias) = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    ax_tau.barh(names, [q.tau_shrunk for q in labelers], color=colours)
    ax_tau.axvline(0.0, color="black", linewidth=0.8)
    ax_tau.set_xlim(-1, 1)
    ax_tau.set_xlabel("agreement with the other labelers (Kendall tau, shrunk)")
    ax_bias.barh(names, [q.position_bias for q in labelers], color=colours)
    ax_bias.set_xlim(0, 1)
    ax_bias.set_xlabel("first-shown completion ranked first (share of tasks)")
    ax_tau.invert_yaxis()
    fig.suptitle("Labeler quality (red: flagged by the outlier rule)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
