"""Reward-model ensembles: M models trained alike on the same pairs, differing only in their seed, scored as one.

One reward model is a seed lottery: three MiniLM models trained with identical settings on the same
2408 pairs reached 0.647, 0.703 and 0.698 held-out accuracy, the mean of their normalised scores
0.694. ``RewardConfig.ensemble`` = M trains members i = 0 … M − 1 one after another, member i with
seed + i (its head initialisation and data order), all on the same pairs and the same held-out split:

    run_dir/                 member 0, the layout of a single-model run (model/, normalization.json,
                             metrics.jsonl, plots/, checkpoints/), so every reader of a run still works
    run_dir/members/<i>/     member i ≥ 1, the same layout (config.yaml with seed + i)
    run_dir/ensemble.json    {"members": ["members/1", …]}, written once every member is trained;
                             ``RewardModel.load`` reads it and scores with all members

The run's held-out evaluation is the ensemble's: on member 0's held-out pairs, each member's raw
difference Δr_m = r_m(chosen) − r_m(rejected) is normalised by its σ_m, and the ensemble's difference
is their mean on the members' average raw scale, Δ = σ̄ · (1/M) Σ_m Δr_m / σ_m — the difference of
``RewardModel.score(normalize=False)``, whose σ(Δ) is the ``p_chosen`` of ``alignloop score``. Its
accuracy, loss, ECE and the labelers' ceilings are appended to run_dir's ``metrics.jsonl`` with
``rm/ensemble`` (M) and ``rm/member_accuracy`` (each member's accuracy on the same pairs).
"""

from __future__ import annotations

import json
from dataclasses import replace

from alignloop.errors import AlignloopError
from alignloop.records import Comparison
from alignloop.reward.artifacts import save_plots
from alignloop.reward.config import RewardConfig
from alignloop.reward.data import assign_test_split, encode_pairs
from alignloop.reward.evaluate import pair_deltas, pair_metrics
from alignloop.reward.model import ENSEMBLE_FILE, RewardModel
from alignloop.reward.train import RewardRunResult, load_training_pairs, train_member, usable_ties
from alignloop.rounds import record_in_project
from alignloop.runs import RunDir

MEMBERS_DIR = "members"


def train_reward(
    config: RewardConfig,
    *,
    pairs: list[Comparison] | None = None,
    progress: bool = False,
    resume: bool = False,
    overwrite: bool = False,
) -> RewardRunResult:
    """Train a reward model as ``config`` says, on ``pairs`` or else on the pairs the config names: one model,
    or ``config.ensemble`` members (see the module docstring), and note it on ``config.project``'s round: as
    its reward model, or with ``train_split: test`` as its held-out one, for picking checkpoints (the round's
    reward model stays the one RL optimises).

    ``resume`` continues the run in ``config.output`` (default: the project's newest reward run) from
    its last checkpoint, member by member, ending with the same weights and metrics as an
    uninterrupted run; ``overwrite`` replaces an existing run directory. For an ensemble, ``metrics``
    holds member 0's training metrics and the ensemble's held-out ones, ``steps`` counts every
    member's optimiser steps and ``pairs_per_s`` is the members' mean throughput.
    """
    result = _train_models(config, pairs=pairs, progress=progress, resume=resume, overwrite=overwrite)
    role = "reward_model" if config.train_split == "train" else "holdout_reward_model"
    record_in_project(config.project, **{role: str(result.run_dir)})
    return result


def _train_models(
    config: RewardConfig, *, pairs: list[Comparison] | None, progress: bool, resume: bool, overwrite: bool
) -> RewardRunResult:
    """``train_reward`` without the note on the round."""
    if config.per_group and config.ensemble > 1:
        raise AlignloopError("per_group trains one model with a head per labeler group; set ensemble to 1")
    if config.ensemble == 1:
        return train_member(config, pairs=pairs, progress=progress, resume=resume, overwrite=overwrite)
    # one held-out split for all members: salted with the run's seed, not each member's
    pairs = assign_test_split(
        list(pairs) if pairs is not None else load_training_pairs(config), config.eval_fraction, config.seed
    )
    pairs = usable_ties(pairs, config)
    held_out = any(p.split == "test" for p in pairs)
    first = train_member(config, pairs=pairs, progress=progress, resume=resume, overwrite=overwrite)
    members = [first]
    for i in range(1, config.ensemble):
        member_dir = first.run_dir / MEMBERS_DIR / str(i)
        update: dict[str, object] = {"seed": config.seed + i, "ensemble": 1, "output": str(member_dir)}
        if not held_out:  # else its own seed could hold out prompts the other members train on
            update["eval_fraction"] = 0.0
        members.append(
            train_member(
                config.model_copy(update=update),
                pairs=pairs,
                progress=progress,
                resume=resume and member_dir.exists(),
                overwrite=overwrite,
            )
        )
    result = replace(
        first,
        steps=sum(m.steps for m in members),
        pairs_per_s=sum(m.pairs_per_s for m in members) / len(members),
        stopped_early=any(m.stopped_early for m in members),
    )
    if not first.main_process:  # the main process alone evaluates the ensemble and writes its files
        return result
    run = RunDir(first.run_dir)
    others = [f"{MEMBERS_DIR}/{i}" for i in range(1, config.ensemble)]
    (run.path / ENSEMBLE_FILE).write_text(json.dumps({"members": others}, indent=2))
    metrics: dict[str, float] = {"rm/ensemble": float(config.ensemble)}
    member_accuracy: list[float] = []
    if held_out:
        evaluation, member_accuracy = evaluate_ensemble(RewardModel.load(run.path), pairs, config)
        metrics.update(evaluation)
        run.log({"step": first.steps, **metrics, "rm/member_accuracy": member_accuracy})
        save_plots(run, run.read_metrics())
    return replace(
        result, metrics={**first.metrics, **metrics}, history=run.read_metrics(), member_accuracy=member_accuracy
    )


def evaluate_ensemble(
    model: RewardModel, pairs: list[Comparison], config: RewardConfig
) -> tuple[dict[str, float], list[float]]:
    """The ensemble's held-out metrics (``pair_metrics`` of Δ = σ̄ · mean_m Δr_m / σ_m) on the test split of
    ``pairs``, and each member's held-out accuracy on the same pairs."""
    _, test_set, _ = encode_pairs(pairs, model.encoder, too_long=config.too_long)
    indices = list(range(len(test_set)))
    per_member = [  # (members, pairs): each member's raw r_chosen − r_rejected
        pair_deltas(
            member.scorer,
            test_set,
            indices,
            pad_id=model.tokenizer.pad_token_id,
            sequences_per_batch=config.eval_batch_size,
        )
        for member in model.members
    ]
    deltas = [
        model.std * sum(d / m.std for d, m in zip(column, model.members)) / len(model.members)
        for column in zip(*per_member)
    ]

    def metrics(d: list[float]) -> dict[str, float]:
        return pair_metrics(
            d, test_set.margin, test_set.agreement, use_margin=config.use_margin, voters=test_set.voters
        )

    return metrics(deltas), [metrics(d)["rm/eval_accuracy"] for d in per_member]
