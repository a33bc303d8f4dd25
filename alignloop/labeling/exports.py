"""Admin exports and the labeler-quality view, which call the consensus and pairs stages.

Those stages live in ``alignloop.consensus`` and ``alignloop.pairs``; they are
imported when used, and when a build does not have them yet the admin gets a clear
message instead of an error page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from html import escape
from typing import Any

from alignloop.labeling.validation import TaskRefused

PAIRS_MISSING = "pair export needs the consensus stage (alignloop.pairs), which this installation does not have yet"
QUALITY_MISSING = (
    "labeler quality needs the consensus stage (alignloop.consensus), which this installation does not have yet"
)


def jsonl_stream(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    for row in rows:
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode()


def export_pairs_rows(svc, *, fmt: str, source: str = "consensus", min_agreement: float = 0.0) -> list[dict[str, Any]]:  # noqa: ANN001
    """Preference pairs of the whole project in ``fmt`` (alignloop, trl, openrlhf or hh)."""
    try:
        from alignloop.pairs import build_pairs, format_rows
    except ImportError:
        raise TaskRefused(501, PAIRS_MISSING) from None
    with svc.open_handle() as handle:
        return format_rows(build_pairs(handle, source=source, min_agreement=min_agreement), fmt)


def quality_report(svc) -> dict[str, Any]:  # noqa: ANN001
    """The consensus report as JSON: ``{"available": False, "message"}`` when the stage is missing or has no data."""
    try:
        from alignloop.consensus.report import project_consensus
    except ImportError:
        return {"available": False, "message": QUALITY_MISSING}
    with svc.open_handle() as handle:
        try:
            report = project_consensus(handle)
        except Exception as exc:  # the stage refuses (e.g. not enough judgements yet): show why
            return {"available": False, "message": f"no consensus yet: {exc}"}
    # summary() turns undefined statistics (NaN: too few overlapping judgements) into null for JSON.
    return {"available": True, **report.summary()}


def quality_chart_svg(labelers: list[dict[str, Any]], width: int = 640) -> str:
    """A horizontal bar chart of each labeler's agreement with the others (shrunk Kendall tau, -1..1).

    Flagged labelers are drawn in the warning colour with the reason as a tooltip.
    Drawn on the server as SVG, so the page needs no charting library.
    """
    bar_h, gap, label_w = 22, 8, 140
    height = max(1, len(labelers)) * (bar_h + gap) + 30
    value_w = 60  # room for the printed value right of the plot
    half = (width - label_w - value_w) / 2
    zero = label_w + half
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="Agreement of each labeler with the others">',
        f'<line x1="{zero}" y1="0" x2="{zero}" y2="{height - 24}" class="axis"/>',
        f'<text x="{label_w}" y="{height - 6}" class="tick">-1</text>',
        f'<text x="{zero - 4}" y="{height - 6}" class="tick">0</text>',
        f'<text x="{zero + half - 12}" y="{height - 6}" class="tick">+1</text>',
    ]
    for i, row in enumerate(labelers):
        tau = row.get("tau_shrunk")
        tau = 0.0 if tau is None else max(-1.0, min(1.0, float(tau)))
        y = i * (bar_h + gap)
        x, w = (zero, tau * half) if tau >= 0 else (zero + tau * half, -tau * half)
        css = "bar flagged" if row.get("flagged") else "bar"
        tip = f"{row.get('name')}: tau {tau:+.2f}, {row.get('n_judgements', 0)} judgements"
        if row.get("flagged"):
            tip += f" - flagged: {row.get('reason') or ''}"
        parts.append(f'<text x="0" y="{y + bar_h - 6}" class="label">{escape(str(row.get("name")))}</text>')
        rect = f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" class="{css}">'
        parts.append(f"{rect}<title>{escape(tip)}</title></rect>")
        parts.append(f'<text x="{width - value_w + 8}" y="{y + bar_h - 6}" class="value">{tau:+.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)
