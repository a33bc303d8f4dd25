"""What a reward run leaves behind: the model folder, the normalisation statistics and the plots."""

from __future__ import annotations

import copy
import json
import os
import shutil
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignloop.model_card import write_model_card
from alignloop.reward.data import PairSet, SequenceEncoder
from alignloop.reward.model import META_FILE, NORMALIZATION_FILE, RewardModel
from alignloop.runs import RunDir, series

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from alignloop.reward.grouped import GroupedScorer
    from alignloop.reward.packing import RewardScorer


def save_model(
    scorer: RewardScorer | GroupedScorer,
    tokenizer: PreTrainedTokenizerBase,
    run: RunDir,
    encoder: SequenceEncoder,
    pooling: str = "cls",
) -> Path:
    """Write ``run/model`` (save_pretrained + tokenizer + input format), replacing the previous one only once complete.

    A LoRA model is saved merged into its base, so loading it needs no peft. A per-group model's
    heads and group names are saved with it (see ``grouped.py``).
    """
    staging = run.path / ".model-staging"
    shutil.rmtree(staging, ignore_errors=True)
    model = scorer.model
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    meta: dict[str, Any] = {
        "input_format": encoder.format,
        "max_length": encoder.max_length,
        "pooling": pooling,
        "newline": encoder.newline,
    }
    names = getattr(scorer, "names", None)
    if names is not None:
        meta["groups"] = names
        scorer.save(staging)  # type: ignore[union-attr]
    (staging / META_FILE).write_text(json.dumps(meta))
    write_model_card(staging, run.path)
    old = run.path / ".model-old"
    shutil.rmtree(old, ignore_errors=True)
    if run.model_dir.exists():
        os.replace(run.model_dir, old)
    os.replace(staging, run.model_dir)
    shutil.rmtree(old, ignore_errors=True)
    return run.model_dir


def save_normalization(
    run: RunDir, train: PairSet, *, pad_id: int, sequences_per_batch: int, device: torch.device
) -> dict[str, float]:
    """Mean and std of the saved model's raw rewards over the distinct training completions → ``normalization.json``;
    for a per-group model also each group's, over the completions its pairs hold, under ``groups``."""
    import torch

    from alignloop.reward.packing import make_batch

    reward_model = RewardModel.load(run.path, device=str(device))
    scorer = reward_model.members[0].scorer  # the run directory being saved holds one model
    ids = sorted(set(train.chosen) | set(train.rejected), key=lambda i: len(train.sequences[i].input_ids))
    raw: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(ids), sequences_per_batch):
            chunk = ids[start : start + sequences_per_batch]
            batch = {k: v.to(device) for k, v in make_batch(train.sequences, chunk, pad_id, scorer.mode).items()}
            raw.extend(scorer(**batch).float().tolist())
    stats: dict[str, Any] = _stats(raw)
    names = reward_model.members[0].groups
    if names:
        group = [train.sequences[i].group for i in ids]
        stats["groups"] = {name: _stats([r for r, gi in zip(raw, group) if gi == g]) for g, name in enumerate(names)}
    (run.path / NORMALIZATION_FILE).write_text(json.dumps(stats, indent=2))
    return stats


def _stats(raw: list[float]) -> dict[str, Any]:
    """Mean, std (1 where it would be 0) and count of raw rewards."""
    std = statistics.pstdev(raw) if len(raw) > 1 else 1.0
    return {"mean": statistics.fmean(raw) if raw else 0.0, "std": std or 1.0, "n": len(raw)}


def save_plots(run: RunDir, history: list[dict[str, Any]]) -> None:
    """``plots/loss.png`` and ``plots/accuracy.png``: training and held-out curves against optimiser steps,
    with an ensemble's held-out evaluation (the record with ``rm/ensemble``) as a point of its own."""
    model = [m for m in history if "rm/ensemble" not in m]  # the model trained in this run directory
    ensemble = [m for m in history if "rm/ensemble" in m]
    loss = {"train": series(model, "step", "rm/loss"), "held-out": series(model, "step", "rm/eval_loss")}
    accuracy = {"train": series(model, "step", "rm/accuracy"), "held-out": series(model, "step", "rm/eval_accuracy")}
    if ensemble:
        loss["ensemble, held-out"] = series(ensemble, "step", "rm/eval_loss")
        accuracy["ensemble, held-out"] = series(ensemble, "step", "rm/eval_accuracy")
    run.plot("loss", loss, xlabel="optimiser step", ylabel="pairwise loss")
    ceiling = series(model, "step", "rm/inter_labeler")
    if ceiling:
        accuracy["labelers agree with each other (ceiling)"] = ceiling
    run.plot("accuracy", accuracy, xlabel="optimiser step", ylabel="pairwise accuracy")
