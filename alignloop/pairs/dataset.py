"""The project's preference data: pairs from judgements, unpaired thumbs examples, imported pairs.

Imported pairs (``import_pairs``) are kept as files in the project, in the ``alignloop``
format: ``<project>/pairs/imported/<name>-<hash>.jsonl``. ``build_pairs`` reads them back
and appends them to the pairs built from judgements (when no ``rounds`` filter is given).
Each imported prompt keeps the split of the same prompt in the store when there is one,
else the project's hash rule decides it, so a prompt never straddles the split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from alignloop.consensus.aggregate import aggregate
from alignloop.consensus.groups import LabelerGroup
from alignloop.consensus.report import ConsensusReport, Group, project_consensus
from alignloop.errors import AlignloopError, InputError
from alignloop.jsonl import read_jsonl, write_jsonl
from alignloop.pairs.build import PairArrays, consensus_pairs, labeler_pairs
from alignloop.pairs.config import SOURCES
from alignloop.pairs.formats import read_pairs
from alignloop.project import ProjectHandle
from alignloop.records import Comparison
from alignloop.store import TRAINING_ROUND_KINDS, Completion, Prompt

IMPORT_DIR = Path("pairs") / "imported"


@dataclass
class ImportResult:
    pairs: int
    prompts: int  # distinct prompts
    test: int  # pairs in the test split
    stored_as: Path


def build_pairs(
    handle: ProjectHandle,
    *,
    source: str = "consensus",
    exclude_flagged: bool = True,
    min_agreement: float = 0.0,
    rounds: list[int] | None = None,
    report: ConsensusReport | None = None,
    by_group: bool = False,
    ties: bool = False,
) -> list[Comparison]:
    """Comparisons from the project's judgements (all rounds by default) plus imported pairs.

    ``source``: ``consensus`` (one set of pairs per prompt, from the consensus ranking) or
    ``labelers`` (every labeler's own ranking, one pair per labeler and completion pair).
    ``exclude_flagged`` leaves out labelers the outlier rule flagged; ``min_agreement`` drops
    pairs fewer labelers agree with. Without ``rounds``, every training round and every serve round
    (users' feedback on a served model) is used (blind evaluation rounds are not training data) and
    imported pairs are appended; with ``rounds``, exactly those rounds and no imported pairs.

    ``by_group``: the pairs of each labeler group that the consensus found (``labeler_groups``),
    each made from that group's labelers alone — their consensus, aggregated as the project's is
    and with the same weights, or their own rankings — and carrying the group's name (its index,
    ``"1"``, ``"2"``, …) in ``group``. Labelers in no group (misreaders) give no pairs; neither do
    imported pairs, which have no labelers.

    ``ties``: also the pairs the ranking placed level, marked ``Comparison.tied`` (agreement about ½, margin
    0), for a reward model that learns what its labelers find equally good; a thumbs prompt gives none.
    """
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r} (choose from {', '.join(SOURCES)})", field="source")
    if not 0.0 <= min_agreement <= 1.0:
        raise InputError("expected a number in [0, 1]", field="min_agreement")
    if report is None:
        report = project_consensus(handle, exclude_flagged=exclude_flagged)
    flagged = {q.labeler_id for q in report.labelers if q.flagged} if exclude_flagged else set()
    if by_group and not report.labeler_groups:
        raise AlignloopError(
            "the labelers form no group yet (too few prompts judged by the same two labelers; see "
            "`alignloop consensus`), so there are no pairs per group"
        )
    selected = []  # (group of units, arrays, labeler group name or None)
    for group in report.groups:
        views = (
            [(_labeler_group_view(group, g, report.method), str(g.index)) for g in report.labeler_groups]
            if by_group
            else [(group, None)]
        )
        for view, name in views:
            arrays = _group_pairs(view, source, flagged, min_agreement, ties)
            if rounds is not None:
                wanted = [u.round_index in rounds for u in group.units]
            else:  # labelers' and users' feedback; blind human evaluation rounds are test data, never pairs
                wanted = [report.round_kinds.get(u.round_index, "train") in TRAINING_ROUND_KINDS for u in group.units]
            if arrays.row.size:
                arrays = _subset(arrays, np.array(wanted, dtype=bool)[arrays.row])
            selected.append((view, arrays, name))
    pairs = _materialise(handle, selected)
    if rounds is None and not by_group:
        pairs.extend(p for p in imported_pairs(handle) if ties or not p.tied)
    return pairs


def _labeler_group_view(group: Group, labelers: LabelerGroup, method: str) -> Group:
    """``group``'s units as the labelers of one labeler group alone judged them: the others' rankings
    masked out, and the consensus aggregated again from the members' rankings with their weights."""
    members = np.isin(group.rankings.labeler_ids, labelers.labeler_ids)  # (P, R)
    rankings = group.rankings.with_mask(members)
    weights = np.where(members, group.weights, 0.0)
    return replace(
        group, rankings=rankings, weights=weights, consensus=aggregate(rankings, method=method, weights=weights)
    )


def _group_pairs(group: Group, source: str, flagged: set[int], min_agreement: float, ties: bool) -> PairArrays:
    rs = group.rankings
    thumbs_rows = np.array([u.thumbs is not None for u in group.units], dtype=bool)
    if source == "consensus":
        cons = group.consensus
        ranks = cons.ranks.copy()
        # thumbs prompts: the majority vote decides, so pairs are exactly (up, down)
        for row in np.nonzero(thumbs_rows)[0].tolist():
            vote = _majority_thumbs(group, row)
            ranks[row] = np.where(vote > 0, 1.0, np.where(vote < 0, 3.0, 2.0))
        arrays = consensus_pairs(rs, ranks, cons.unusable, group.weights, min_agreement, ties)
        # a split thumbs vote (0) is neither up nor down: no pair involves it; two answers both up (or both
        # down) were each judged alone, never against each other, so they are no tie either
        if thumbs_rows.any():
            mid = ranks == 2.0
            bad = thumbs_rows[arrays.row] & (
                mid[arrays.row, arrays.chosen] | mid[arrays.row, arrays.rejected] | arrays.tied
            )
            arrays = _subset(arrays, ~bad)
        return arrays
    include = rs.mask & ~np.isin(rs.labeler_ids, list(flagged))
    return labeler_pairs(rs, include, include, min_agreement, ties)


def _majority_thumbs(group: Group, row: int) -> np.ndarray:
    unit = group.units[row]
    counted = group.rankings.mask[row] & (group.weights[row] > 0)
    keep = {int(x) for x in group.rankings.labeler_ids[row][counted]}
    total = np.array(
        [sum(v.get(c, 0) for lid, v in (unit.thumbs or {}).items() if lid in keep) for c in unit.completion_ids]
    )
    vote = np.sign(total)
    return np.where(group.consensus.unusable[row], -1, vote)


def _subset(a: PairArrays, keep: np.ndarray) -> PairArrays:
    return PairArrays(*(getattr(a, f)[keep] for f in PairArrays.__dataclass_fields__))


def _materialise(handle: ProjectHandle, selected: list[tuple[Group, PairArrays, str | None]]) -> list[Comparison]:
    """Comparison records with texts and provenance for the selected pair arrays (and their labeler group)."""
    prompt_ids: set[int] = set()
    completion_ids: set[int] = set()
    for group, a, _ in selected:
        for row in np.unique(a.row).tolist():
            prompt_ids.add(group.units[row].prompt_id)
            completion_ids.update(group.units[row].completion_ids)
    prompts, texts = _texts(handle, prompt_ids, completion_ids)
    out = []
    for group, a, labeler_group in selected:
        rs = group.rankings
        counted = rs.mask & (group.weights > 0)
        for row, ch, rj, agree, margin, slot, tied in zip(
            a.row.tolist(),
            a.chosen.tolist(),
            a.rejected.tolist(),
            a.agreement.tolist(),
            a.margin.tolist(),
            a.slot.tolist(),
            a.tied.tolist(),
        ):
            unit = group.units[row]
            chosen, rejected = texts[unit.completion_ids[ch]], texts[unit.completion_ids[rj]]
            if chosen == rejected:  # identical answers: no preference to learn from
                continue
            text, messages, split = prompts[unit.prompt_id]
            labelers = [int(rs.labeler_ids[row, slot])] if slot >= 0 else rs.labeler_ids[row][counted[row]].tolist()
            out.append(
                Comparison(
                    prompt=text,
                    chosen=chosen,
                    rejected=rejected,
                    margin=round(margin, 6),
                    messages=messages,
                    split=split,
                    agreement=round(agree, 6),
                    provenance={
                        "prompt_id": unit.prompt_id,
                        "chosen_id": unit.completion_ids[ch],
                        "rejected_id": unit.completion_ids[rj],
                        "labeler_ids": labelers,
                        "guideline_version": unit.guideline_version,
                        "round": unit.round_index,
                        "source": "labeler" if slot >= 0 else "consensus",
                        "task": unit.task_type,
                    },
                    group=labeler_group,
                    tied=tied,
                )
            )
    return out


def _texts(
    handle: ProjectHandle, prompt_ids: set[int], completion_ids: set[int]
) -> tuple[dict[int, tuple[str, Any, str]], dict[int, str]]:
    prompts: dict[int, tuple[str, Any, str]] = {}
    texts: dict[int, str] = {}
    with handle.store.session() as s:
        ids = sorted(prompt_ids)
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            for pid, text, messages, split in s.execute(
                select(Prompt.id, Prompt.text, Prompt.messages, Prompt.split).where(Prompt.id.in_(chunk))
            ):
                prompts[pid] = (text, messages, split)
        ids = sorted(completion_ids)
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            query = select(Completion.id, Completion.text).where(Completion.id.in_(chunk))
            texts.update({cid: text for cid, text in s.execute(query)})
    return prompts, texts


def build_unpaired(
    handle: ProjectHandle,
    *,
    source: str = "consensus",
    exclude_flagged: bool = True,
    report: ConsensusReport | None = None,
) -> list[dict[str, Any]]:
    """KTO-style labelled examples from thumbs tasks: ``{"prompt", "completion", "label", ...}``.

    ``consensus``: one example per completion with a clear majority (ties left out);
    ``labelers``: one per labeler and completion. An unusable flag is a thumbs-down.
    """
    if report is None:
        report = project_consensus(handle, exclude_flagged=exclude_flagged)
    flagged = {q.labeler_id for q in report.labelers if q.flagged} if exclude_flagged else set()
    items = []  # (prompt id, completion id, label, labeler ids, unit)
    for group in report.groups:
        for row, unit in enumerate(group.units):
            if unit.thumbs is None:
                continue
            if source == "consensus":
                vote = _majority_thumbs(group, row)
                counted = group.rankings.mask[row] & (group.weights[row] > 0)
                labelers = group.rankings.labeler_ids[row][counted].tolist()
                for c, v in zip(unit.completion_ids, vote.tolist()):
                    if v != 0:
                        items.append((unit, c, v > 0, labelers))
            else:
                for lid, votes in sorted(unit.thumbs.items()):
                    if lid in flagged:
                        continue
                    for c in unit.completion_ids:
                        items.append((unit, c, votes.get(c, -1) > 0, [lid]))
    prompts, texts = _texts(handle, {u.prompt_id for u, *_ in items}, {c for _, c, *_ in items})
    rows = []
    for unit, c, label, labelers in items:
        text, messages, split = prompts[unit.prompt_id]
        rows.append(
            {
                "prompt": text,
                "completion": texts[c],
                "label": bool(label),
                "messages": messages,
                "split": split,
                "provenance": {
                    "prompt_id": unit.prompt_id,
                    "completion_id": c,
                    "labeler_ids": labelers,
                    "guideline_version": unit.guideline_version,
                    "round": unit.round_index,
                },
            }
        )
    return rows


def imported_pairs(handle: ProjectHandle) -> list[Comparison]:
    """Every pair imported into the project, in import order."""
    folder = handle.dir / IMPORT_DIR
    out: list[Comparison] = []
    for path in sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns):
        out.extend(read_pairs(path, "alignloop"))
    return out


def _dataset_pairs(
    source: str | Path, fmt: str | None, split: str | None, subset: str | None
) -> tuple[list[Comparison], list[str | None], str]:
    """Pairs from a ``datasets`` directory or hub id, each with the split its dataset split maps to."""
    from alignloop.datasets_io import dataset_rows
    from alignloop.pairs.formats import FORMATS, parse_pair

    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown pairs format {fmt!r} (choose from {', '.join(FORMATS)})", field="--format")
    data = dataset_rows(source, split=split, subset=subset)
    pairs = [parse_pair(row, fmt, file=data.label, line=i) for i, (_, row) in enumerate(data.rows, start=1)]
    if not pairs:
        raise InputError("no pairs in the dataset", file=data.label)
    key = f"{source}|{subset}|{split}|{data.fingerprint}"
    return pairs, [row_split for row_split, _ in data.rows], hashlib.sha256(key.encode()).hexdigest()[:12]


def import_pairs(
    handle: ProjectHandle,
    path: str | Path,
    fmt: str | None = None,
    *,
    split: str | None = None,
    subset: str | None = None,
) -> ImportResult:
    """Validate a pairs file (any supported format), ``datasets`` directory or hub dataset id, and keep
    the pairs in the project for ``build_pairs``. ``split``/``subset`` choose what is read of a dataset."""
    from alignloop.datasets_io import is_dataset_source
    from alignloop.prompts import assign_split, legacy_prompt_hash, prompt_hash

    if is_dataset_source(path):
        pairs, given, digest = _dataset_pairs(path, fmt, split, subset)
        stem = Path(str(path)).name or "dataset"
    else:
        for flag, value in (("--split", split), ("--subset", subset)):
            if value is not None:
                raise InputError(f"{flag} applies to `datasets` directories and hub ids, not to files", field=flag)
        path = Path(path)
        pairs = read_pairs(path, fmt)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        from_file = fmt in (None, "alignloop")
        given = [obj["split"] if from_file and "split" in obj else None for _, obj in read_jsonl(path)]
        stem = path.stem
    folder = handle.dir / IMPORT_DIR
    existing = list(folder.glob(f"*-{digest}.jsonl"))
    if existing:
        raise AlignloopError(f"{path} was already imported (as {existing[0]}); nothing to do")
    keys = [prompt_hash(p.prompt, p.messages) for p in pairs]  # the key `prompts add` stores
    legacy = {key: legacy_prompt_hash(p.prompt, p.messages) for key, p in zip(keys, pairs)}
    hashes = set(keys)
    with handle.store.session() as s:
        known: dict[str, str] = {}
        wanted = sorted(hashes | set(legacy.values()))
        for start in range(0, len(wanted), 5000):
            known.update(
                s.execute(
                    select(Prompt.text_hash, Prompt.split).where(
                        Prompt.project_id == handle.project_id, Prompt.text_hash.in_(wanted[start : start + 5000])
                    )
                ).all()
            )
    decided: dict[str, str] = {}  # prompt hash → split, so a prompt never straddles the split
    for line, (pair, h, from_source) in enumerate(zip(pairs, keys, given), start=1):
        if h not in decided:
            decided[h] = known.get(h) or known.get(legacy[h]) or from_source or assign_split(h, handle.config.split)
        pair.split = decided[h]
        pair.provenance = {**pair.provenance, "source": "import", "file": Path(str(path)).name, "line": line}
        if split is not None:
            pair.provenance["dataset_split"] = split
    target = folder / f"{stem}-{digest}.jsonl"
    write_jsonl(target, (p.to_json() for p in pairs))
    return ImportResult(
        pairs=len(pairs),
        prompts=len(hashes),
        test=sum(p.split == "test" for p in pairs),
        stored_as=target,
    )
