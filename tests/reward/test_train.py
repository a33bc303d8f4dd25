"""Training a reward model on a synthetic preference: the completion with the marker word wins."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from alignloop.records import Comparison
from alignloop.reward import RewardConfig, RewardModel, train_reward
from alignloop.runs import RunDir

from .conftest import MARKER, WORDS, marker_pairs


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _config(backbone: Path, output: Path, **fields) -> RewardConfig:
    base = dict(
        backbone=str(backbone), output=str(output), epochs=3, batch_size=8, learning_rate=1e-3, eval_fraction=0.25
    )
    return RewardConfig(**{**base, **fields})


def _held_out_accuracy(run_dir: Path, marker_pairs) -> float:
    model = RewardModel.load(run_dir)
    pairs = marker_pairs(n_prompts=12, seed=99)  # prompts never seen in training
    chosen = model.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = model.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def test_encoder_learns_the_marker_preference_and_writes_a_complete_run(
    tiny_encoder: Path, tmp_path: Path, make_pairs
) -> None:
    marker_pairs = make_pairs
    # four epochs: the tiny tokenizer's vocabulary varies from build to build, and with it how fast this converges
    # hard labels, so the training loss can fall toward 0 (soft ones stop at the labels' entropy)
    result = train_reward(_config(tiny_encoder, tmp_path / "run", epochs=4, soft_labels=False), pairs=marker_pairs())

    history = RunDir(result.run_dir).read_metrics()
    train_losses = [m["rm/loss"] for m in history if "rm/loss" in m]
    assert train_losses[-1] < train_losses[0] * 0.5
    evals = [m for m in history if "rm/eval_accuracy" in m]
    assert len(evals) == 4 and evals[-1]["rm/eval_accuracy"] > 0.8
    assert evals[-1]["rm/eval_loss"] < evals[0]["rm/eval_loss"]
    assert 0 <= evals[-1]["rm/ece"] <= 1 and 0.5 < evals[-1]["rm/ceiling"] <= 1
    assert _held_out_accuracy(result.run_dir, marker_pairs) > 0.8

    run = result.run_dir
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "normalization.json",
        "plots/loss.png",
        "plots/accuracy.png",
        "model/config.json",
    ):
        assert (run / name).exists(), name
    norm = json.loads((run / "normalization.json").read_text())
    assert norm["std"] > 0
    trained, initial = _weights(run / "model"), _weights(tiny_encoder)
    encoder_keys = [k for k in initial if k.replace("bert.", "") in {t.replace("bert.", "") for t in trained}]
    changed = [k for k in encoder_keys if not torch.equal(trained.get(k, trained.get("bert." + k)), initial[k])]
    # every backbone parameter moved but the token embeddings, which stay as they were (freeze_embeddings)
    assert sorted(set(encoder_keys) - set(changed)) == ["embeddings.word_embeddings.weight"]


def test_scores_are_normalised_over_the_training_completions(tiny_encoder: Path, tmp_path: Path, make_pairs) -> None:
    marker_pairs = make_pairs
    pairs = marker_pairs(n_prompts=10, per_prompt=2)
    result = train_reward(_config(tiny_encoder, tmp_path / "run", epochs=1, eval_fraction=0.0), pairs=pairs)
    model = RewardModel.load(result.run_dir)
    texts = {(p.prompt, c) for p in pairs for c in (p.chosen, p.rejected)}
    scores = torch.tensor(model.score([t[0] for t in texts], [t[1] for t in texts]))
    assert abs(scores.mean().item()) < 1e-4
    assert abs(scores.std(unbiased=False).item() - 1) < 1e-3
    raw = model.score([t[0] for t in texts][:3], [t[1] for t in texts][:3], normalize=False)
    assert raw == pytest.approx([s * model.std + model.mean for s in scores[:3].tolist()], abs=1e-5)


def test_decoder_with_lora_learns_the_marker_preference(tiny_lm: Path, tmp_path: Path, make_pairs) -> None:
    marker_pairs = make_pairs
    result = train_reward(
        _config(tiny_lm, tmp_path / "run", lora_r=8, learning_rate=3e-3, epochs=4), pairs=marker_pairs()
    )

    history = result.history
    losses = [m["rm/loss"] for m in history if "rm/loss" in m]
    assert losses[-1] < losses[0]
    assert result.metrics["rm/eval_accuracy"] > 0.75
    assert json.loads((result.run_dir / "model" / "alignloop_reward.json").read_text())["input_format"] == "chat"
    assert not any("lora" in k for k in _weights(result.run_dir / "model"))  # saved merged: loads without peft
    trained, initial = _weights(result.run_dir / "model"), _weights(tiny_lm)
    assert not torch.equal(
        trained["model.layers.0.self_attn.q_proj.weight"], initial["model.layers.0.self_attn.q_proj.weight"]
    )
    assert _held_out_accuracy(result.run_dir, marker_pairs) > 0.75


def test_resumed_run_ends_with_the_same_weights_and_metrics_as_an_uninterrupted_one(
    tiny_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_pairs
) -> None:
    marker_pairs = make_pairs
    pairs = marker_pairs(n_prompts=16, per_prompt=2)
    fields = dict(epochs=2, save_every=2, log_every_steps=1, gradient_accumulation_steps=2, batch_size=4)
    whole = train_reward(_config(tiny_encoder, tmp_path / "whole", **fields), pairs=pairs)

    commits = 0
    original = RunDir.commit_checkpoint

    def crash_after_two(self: RunDir, staging: Path, step: int, keep: int = 2) -> Path:
        nonlocal commits
        final = original(self, staging, step, keep)
        commits += 1
        if commits == 2:
            raise KeyboardInterrupt("simulated crash")
        return final

    monkeypatch.setattr(RunDir, "commit_checkpoint", crash_after_two)
    config = _config(tiny_encoder, tmp_path / "resumed", **fields)
    with pytest.raises(KeyboardInterrupt):
        train_reward(config, pairs=pairs)
    monkeypatch.setattr(RunDir, "commit_checkpoint", original)
    resumed = train_reward(config, pairs=pairs, resume=True)

    assert resumed.steps == whole.steps
    a, b = _weights(whole.run_dir / "model"), _weights(resumed.run_dir / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)

    def curve(run: Path) -> list[tuple]:
        keys = ("step", "rm/loss", "rm/accuracy", "rm/lr", "rm/eval_loss", "rm/eval_accuracy")
        return [tuple(m.get(k) for k in keys) for m in RunDir(run).read_metrics()]

    assert curve(resumed.run_dir) == curve(whole.run_dir)


def test_training_stops_early_when_held_out_loss_rises_and_keeps_the_best_model(
    tiny_encoder: Path, tmp_path: Path, make_pairs
) -> None:
    train = make_pairs(n_prompts=20, per_prompt=2)
    # held-out prompts where the marker loses: the better the model learns, the worse it does there
    test = [replace(p, chosen=p.rejected, rejected=p.chosen, split="test") for p in make_pairs(n_prompts=6, seed=7)]
    config = _config(tiny_encoder, tmp_path / "run", epochs=6, early_stopping_patience=1)
    result = train_reward(config, pairs=train + test)

    evals = [m for m in result.history if "rm/eval_loss" in m]
    assert result.stopped_early and len(evals) == 2
    assert evals[1]["rm/eval_loss"] > evals[0]["rm/eval_loss"]
    model = RewardModel.load(result.run_dir)  # the epoch-1 model, the one with the lowest held-out loss
    chosen = model.score([p.prompt for p in test], [p.chosen for p in test], normalize=False)
    rejected = model.score([p.prompt for p in test], [p.rejected for p in test], normalize=False)
    loss = sum(torch.nn.functional.softplus(torch.tensor(r - c)).item() for c, r in zip(chosen, rejected)) / len(test)
    assert loss == pytest.approx(evals[0]["rm/eval_loss"], abs=1e-4)


def test_inter_labeler_agreement_counts_agreeing_pairs_of_labelers() -> None:
    from alignloop.reward.evaluate import inter_labeler_agreement, pair_metrics

    assert inter_labeler_agreement(1.0, 3) == 1.0
    assert inter_labeler_agreement(2 / 3, 3) == pytest.approx(1 / 3)  # of three pairs of labelers, one agrees
    assert inter_labeler_agreement(0.5, 2) == 0.0
    assert inter_labeler_agreement(0.75, 2) == 0.25  # one prefers chosen, one placed the two level: half with each
    metrics = pair_metrics([1.0, -1.0], [0.0, 0.0], [1.0, 2 / 3], use_margin=False, voters=[3, 3])
    assert metrics["rm/ceiling"] == pytest.approx(5 / 6)  # agreement with the consensus flatters the labelers
    assert metrics["rm/inter_labeler"] == pytest.approx(2 / 3)


def test_soft_labels_train_toward_the_labelers_share_instead_of_certainty(
    tiny_encoder: Path, tmp_path: Path, make_pairs
) -> None:
    import dataclasses
    import math

    pairs = [dataclasses.replace(p, agreement=0.6) for p in make_pairs()]

    def mean_probability(soft: bool) -> float:
        run = train_reward(
            _config(tiny_encoder, tmp_path / f"soft-{soft}", epochs=4, eval_fraction=0.0, soft_labels=soft),
            pairs=pairs,
        ).run_dir
        model = RewardModel.load(run)
        chosen = model.score([p.prompt for p in pairs], [p.chosen for p in pairs], normalize=False)
        rejected = model.score([p.prompt for p in pairs], [p.rejected for p in pairs], normalize=False)
        return sum(1 / (1 + math.exp(r - c)) for c, r in zip(chosen, rejected)) / len(pairs)

    hard, soft = mean_probability(False), mean_probability(True)
    assert hard > 0.7, hard  # unanimity assumed: pushed toward certainty
    assert abs(soft - 0.6) < abs(hard - 0.6)  # toward the 3-of-5 share the labels carry


def test_a_held_out_reward_model_trains_on_the_test_split_and_is_measured_on_the_train_split(
    tiny_encoder: Path, tmp_path: Path, make_pairs
) -> None:
    from alignloop.errors import AlignloopError
    from alignloop.jsonl import write_jsonl

    pairs = [replace(p, split="test" if i < 24 else "train") for i, p in enumerate(make_pairs(n_prompts=32))]
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, (p.to_json() for p in pairs))
    result = train_reward(_config(tiny_encoder, tmp_path / "holdout", pairs=str(path), epochs=1, train_split="test"))
    evals = [m for m in RunDir(result.run_dir).read_metrics() if "rm/eval_pairs" in m]
    assert evals[-1]["rm/eval_pairs"] == len(pairs) - 24  # measured on what the train split holds

    write_jsonl(path, (replace(p, split="train").to_json() for p in pairs))
    with pytest.raises(AlignloopError, match=r"pairs\.jsonl: train_split is test, but no pair is in the test split"):
        train_reward(_config(tiny_encoder, tmp_path / "none", pairs=str(path), train_split="test"))
    assert not (tmp_path / "none").exists()


def test_bf16_training_follows_a_stage_of_another_precision_in_one_process(
    tiny_encoder: Path, tmp_path: Path, make_pairs
) -> None:
    """The demo trains a reward model after RL in one process: accelerate's one-per-process
    mixed-precision setting (an RL or DPO run leaves it at "no") must not refuse bf16 here."""
    from accelerate import Accelerator

    Accelerator(cpu=not torch.cuda.is_available())  # what a preceding RL run leaves behind
    pairs = make_pairs(n_prompts=6, per_prompt=2)
    config = _config(tiny_encoder, tmp_path / "run", epochs=1, eval_fraction=0.0, dtype="bfloat16")
    result = train_reward(config, pairs=pairs)
    assert all(t.dtype == torch.float32 for t in _weights(result.run_dir / "model").values())  # master weights


def test_an_encoder_reward_model_learns_a_taste_for_layout(tiny_encoder: Path, tmp_path: Path) -> None:
    """Chosen and rejected hold the same words, one as lines and one run together: only the line breaks differ,
    which a BERT tokenizer alone would erase."""
    import random

    from alignloop.records import Comparison

    words = "the sea rainbow robot sleep language weather idea paint small light rain".split()
    rng = random.Random(0)
    pairs = []
    for p in range(48):
        lines = [" ".join(rng.choices(words, k=rng.randint(2, 4))) for _ in range(rng.randint(2, 4))]
        listed, run_on = "\n".join(lines), " ".join(lines)
        pairs.append(Comparison(f"question {p}", listed, run_on))
    result = train_reward(_config(tiny_encoder, tmp_path / "run", epochs=4), pairs=pairs)
    assert result.metrics["rm/eval_accuracy"] > 0.9


@pytest.mark.parametrize(("dtype", "autocast"), [("auto", True), ("float32", False)])
def test_auto_trains_under_bf16_autocast_where_the_probe_chose_bf16_for_training(
    dtype: str, autocast: bool, tiny_encoder: Path, tmp_path: Path, make_pairs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alignloop import precision
    from alignloop.reward.packing import RewardScorer

    monkeypatch.setattr(precision, "auto_dtype", lambda device, purpose: "bfloat16" if purpose == "training" else "x")
    seen: list[bool] = []
    forward = RewardScorer.forward

    def recording(self: RewardScorer, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(RewardScorer, "forward", recording)
    train_reward(_config(tiny_encoder, tmp_path / "run", epochs=1, dtype=dtype), pairs=make_pairs(n_prompts=8))
    assert seen and any(seen) == autocast


def _pairs_with_ties(n_prompts: int, seed: int) -> list[Comparison]:
    """Per prompt two ordered pairs (the marker wins) and two ties between plain answers, one long."""
    rng = random.Random(seed)

    def text(n: int, *extra: str) -> str:
        words = rng.choices(WORDS, k=n) + list(extra)
        rng.shuffle(words)
        return " ".join(words)

    pairs = []
    for p in range(n_prompts):
        prompt = f"question {p}"
        pairs += [Comparison(prompt, text(rng.randint(4, 10), MARKER), text(rng.randint(4, 10))) for _ in range(2)]
        pairs += [
            Comparison(prompt, text(rng.randint(10, 16)), text(rng.randint(3, 6)), agreement=0.5, tied=True)
            for _ in range(2)
        ]
    return pairs


def test_ties_pull_the_rewards_of_equally_good_answers_together(tiny_encoder: Path, tmp_path: Path) -> None:
    """Trained on the labelers' ties too, the reward model scores answers they would place level closer
    together, relative to how far it puts a better answer above a worse one, on prompts never seen."""
    probe = _pairs_with_ties(12, seed=99)
    ordered, level = [p for p in probe if not p.tied], [p for p in probe if p.tied]

    def spread_of_ties(ties: bool) -> float:
        config = _config(tiny_encoder, tmp_path / f"ties-{ties}", eval_fraction=0.0, train_on_ties=ties)
        model = RewardModel.load(train_reward(config, pairs=_pairs_with_ties(24, seed=0)).run_dir)

        def deltas(pairs: list[Comparison]) -> list[float]:
            prompts = [p.prompt for p in pairs]
            chosen = model.score(prompts, [p.chosen for p in pairs], normalize=False)
            return [c - r for c, r in zip(chosen, model.score(prompts, [p.rejected for p in pairs], normalize=False))]

        return (sum(map(abs, deltas(level))) / len(level)) / (sum(deltas(ordered)) / len(ordered))

    with_ties, without = spread_of_ties(True), spread_of_ties(False)
    assert with_ties < without / 2, (with_ties, without)


def test_ties_are_trained_on_never_held_out_and_dropped_when_not_wanted(
    tiny_encoder: Path, tmp_path: Path, make_pairs
) -> None:
    from alignloop.jsonl import write_jsonl

    ordered = [replace(p, split="test" if i < 12 else "train") for i, p in enumerate(make_pairs(n_prompts=16))]
    ties = [replace(p, agreement=0.5, tied=True) for p in ordered]  # as many ties, on both splits
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, (p.to_json() for p in ordered + ties))

    def run(name: str, **fields: object) -> tuple[dict, dict]:
        result = train_reward(_config(tiny_encoder, tmp_path / name, pairs=str(path), epochs=1, **fields))
        data = json.loads((result.run_dir / "data.json").read_text())
        evals = [m for m in RunDir(result.run_dir).read_metrics() if "rm/eval_pairs" in m]
        return data, evals[-1]

    data, held_out = run("with", train_on_ties=True)
    assert held_out["rm/eval_pairs"] == 12  # the held-out ties are not scored
    assert data["tied"] == len(ordered) - 12  # the training split's ties are trained on
    assert data["kept"] == len(ordered) + data["tied"]
    data, held_out = run("without")  # the default
    assert held_out["rm/eval_pairs"] == 12
    assert data["tied"] == 0 and data["kept"] == len(ordered)
    data, held_out = run("holdout", train_on_ties=True, train_split="test")  # the test split's ties train it
    assert held_out["rm/eval_pairs"] == len(ordered) - 12
    assert data["tied"] == 12


def test_frozen_embeddings_stay_as_the_backbone_had_them_while_the_rest_learns(
    tiny_encoder: Path, tmp_path: Path, make_pairs
) -> None:
    from alignloop.reward.model import load_backbone

    start, _ = load_backbone(str(tiny_encoder))

    def trained(freeze: bool) -> torch.nn.Module:
        config = _config(tiny_encoder, tmp_path / f"freeze-{freeze}", epochs=1, freeze_embeddings=freeze)
        model, _ = load_backbone(str(train_reward(config, pairs=make_pairs()).run_dir / "model"))
        return model

    frozen, free = trained(True), trained(False)
    assert torch.equal(frozen.get_input_embeddings().weight, start.get_input_embeddings().weight)
    assert not torch.equal(free.get_input_embeddings().weight, start.get_input_embeddings().weight)
    layer = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(frozen.state_dict()[layer], start.state_dict()[layer])


def test_the_learning_rate_reaches_zero_at_the_last_step_when_epochs_differ_in_batches(
    tiny_encoder: Path, tmp_path: Path
) -> None:
    # prompts of 1 to 7 pairs: whole prompts fill each batch, so each epoch's shuffle cuts a different number (at
    # this seed 10, 11 and 10 batches; no length bucketing, whose sort would make them depend on the tokenizer)
    rng = random.Random(5)
    pairs = [
        replace(pair, prompt=f"prompt {p}: {pair.prompt}")
        for p in range(30)
        for pair in marker_pairs(n_prompts=1, per_prompt=rng.randint(1, 7), seed=p)
    ]
    config = _config(
        tiny_encoder, tmp_path / "run", epochs=3, log_every_steps=1, warmup_ratio=0.0, length_bucketing=False
    )
    result = train_reward(config, pairs=pairs)

    rates = [m["rm/lr"] for m in result.history if "rm/lr" in m]  # after each optimiser step
    assert all(rate > 0 for rate in rates[:-1]), "a step learnt nothing: the decay ended before the training"
    assert rates[-1] == 0.0
