"""Writing a project's comparisons: the ``alignloop export-pairs`` stage."""

from __future__ import annotations

from pathlib import Path

from alignloop.errors import AlignloopError
from alignloop.jsonl import write_jsonl
from alignloop.pairs.config import ExportPairsConfig
from alignloop.pairs.dataset import build_pairs, build_unpaired
from alignloop.pairs.formats import write_pairs
from alignloop.project import ProjectHandle
from alignloop.rounds import record


def export_project_pairs(handle: ProjectHandle, out: str | Path, config: ExportPairsConfig) -> dict[str, int]:
    """Write the pairs ``config`` selects to ``out`` in its format (and the unpaired examples to
    ``config.unpaired``); refused when nothing is selected. A file in the project's ``pairs/`` folder is
    noted as the round's dataset; a scratch copy elsewhere is not. Returns the counts written."""
    exclude_flagged = not config.include_flagged
    pairs = build_pairs(
        handle,
        source=config.source,
        exclude_flagged=exclude_flagged,
        min_agreement=config.min_agreement,
        rounds=config.rounds,
        by_group=config.by_group,
    )
    examples = build_unpaired(handle, source=config.source, exclude_flagged=exclude_flagged) if config.unpaired else []
    if config.split is not None:
        pairs = [p for p in pairs if p.split == config.split]
        examples = [e for e in examples if e["split"] == config.split]
    if not pairs and not examples:
        raise AlignloopError(
            "no pairs to export: label some prompts (`alignloop serve`), import pairs (`alignloop import-pairs`), "
            "or relax --min-agreement / --split / --round"
        )
    written = write_pairs(out, pairs, config.fmt, chat=config.chat)
    if config.unpaired:
        write_jsonl(config.unpaired, examples)
    if Path(out).resolve().parent == (handle.dir / "pairs").resolve():
        record(handle, dataset=str(out))
    return {
        "pairs": written,
        "train": sum(p.split == "train" for p in pairs),
        "test": sum(p.split == "test" for p in pairs),
        "prompts": len({(p.prompt, p.provenance.get("round")) for p in pairs}),
        "unpaired": len(examples),
    }
