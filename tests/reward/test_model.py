"""Scoring with a trained reward model: batch-independent scores, the score command, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignloop.cli import app
from alignloop.errors import InputError
from alignloop.reward import RewardModel

TEXTS = [
    ("Write a short poem about the sea.", "The sea is wonderful"),
    ("Write a short poem about the sea.", "Waves"),
    ("Give me three tips for sleeping better.", "Sleep early, keep the room dark, and avoid late coffee " * 3),
    ("Explain how a rainbow forms.", "Light bends in rain drops and splits into colours."),
]


@pytest.mark.parametrize("run", ["encoder_run", "decoder_run", "mean_pooled_run"])
def test_a_texts_score_does_not_depend_on_what_else_is_in_the_batch(run: str, request: pytest.FixtureRequest) -> None:
    model = RewardModel.load(request.getfixturevalue(run))
    prompts, completions = [t[0] for t in TEXTS], [t[1] for t in TEXTS]
    together = model.score(prompts, completions, batch_size=4)
    alone = [model.score([p], [c], batch_size=1)[0] for p, c in TEXTS]
    reversed_ = model.score(prompts[::-1], completions[::-1], batch_size=3)[::-1]
    assert together == pytest.approx(alone, abs=1e-5)
    assert together == pytest.approx(reversed_, abs=1e-5)
    chat = model.score([[{"role": "user", "content": p}] for p in prompts], completions)
    assert chat == pytest.approx(together, abs=1e-5)  # a one-turn chat and its text are the same prompt


def test_a_prompt_too_long_for_the_reward_model_is_refused_with_its_row(encoder_run: Path) -> None:
    model = RewardModel.load(encoder_run)
    with pytest.raises(InputError, match="context") as err:
        model.score(["short", "the sea " * 200], ["a", "b"])
    assert err.value.line == 2


def test_score_command_adds_rewards_and_p_chosen(encoder_run: Path, tmp_path: Path) -> None:
    rows = [
        {"prompt": "the sea", "completion": "a wonderful poem", "id": 1},
        {"prompt": "the sea", "chosen": "a wonderful poem", "rejected": "a poem"},
        {"messages": [{"role": "user", "content": "the sea"}], "completion": "a poem"},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["score", "--reward-model", str(encoder_run), "--input", str(source), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert scored[0]["id"] == 1 and isinstance(scored[0]["reward"], float)
    assert scored[1]["reward_chosen"] == pytest.approx(scored[0]["reward"], abs=1e-6)
    assert scored[1]["p_chosen"] > 0.5 and scored[1]["reward_chosen"] > scored[1]["reward_rejected"]
    assert "_raw_reward" not in scored[2] and isinstance(scored[2]["reward"], float)


def test_score_command_names_the_line_of_a_bad_row(encoder_run: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    result = CliRunner().invoke(app, ["score", "--reward-model", str(encoder_run), "--input", str(source)])
    assert result.exit_code != 0
    assert f"{source}:2" in str(result.exception)


def test_train_reward_command_trains_from_a_pairs_file(tiny_encoder: Path, pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train-reward", "--pairs", str(pairs_file), "--backbone", str(tiny_encoder), "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--batch-size", "8", "--learning-rate", "1e-3"])
    assert result.exit_code == 0, result.output
    assert (out / "model" / "config.json").exists() and (out / "normalization.json").exists()
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "not empty" in str(again.exception)


def test_mean_pooling_reads_only_the_answer_and_packed_rows_score_like_padded_ones(mean_pooled_run: Path) -> None:
    from alignloop.reward.packing import RewardScorer, make_batch

    model = RewardModel.load(mean_pooled_run)
    scorer = model.members[0].scorer
    assert scorer.pooling == "mean"
    encoded = model.encoder.encode([t[0] for t in TEXTS], [t[1] for t in TEXTS], truncate=True)
    ids = list(range(len(encoded)))
    pad_id = model.tokenizer.pad_token_id
    device = next(model.members[0].model.parameters()).device
    packed = scorer(**{k: v.to(device) for k, v in make_batch(encoded, ids, pad_id, scorer.mode).items()})
    padded = RewardScorer(model.members[0].model, packing=False, pooling="mean")(
        **{k: v.to(device) for k, v in make_batch(encoded, ids, pad_id, None).items()}
    )
    assert packed.tolist() == pytest.approx(padded.tolist(), abs=1e-5)
    same_answer = model.score(["Explain how a rainbow forms.", "Why is the sky blue?"], ["Light bends."] * 2)
    assert same_answer[0] != same_answer[1]  # the prompt still reaches the answer's tokens through attention


def test_mean_pooling_needs_an_encoder(decoder_run: Path) -> None:
    from alignloop.errors import AlignloopError
    from alignloop.reward.packing import RewardScorer

    with pytest.raises(AlignloopError, match="encoder"):
        RewardScorer(RewardModel.load(decoder_run).members[0].model, pooling="mean")


@pytest.mark.parametrize("run", ["encoder_run", "mean_pooled_run"])
def test_held_out_pairs_are_scored_as_their_texts_are_alone(run: str, request: pytest.FixtureRequest) -> None:
    """Evaluation scores each distinct text once for all the pairs it is in (a prompt's C(K,2) pairs share
    its K answers); each pair's difference is still that of its two texts scored alone, and scoring after
    an evaluation is as before it (no dropout left on)."""
    from itertools import combinations

    from alignloop.records import Comparison
    from alignloop.reward.data import encode_pairs
    from alignloop.reward.evaluate import pair_deltas

    model = RewardModel.load(request.getfixturevalue(run))
    prompt, answers = TEXTS[0][0], [TEXTS[0][1], TEXTS[1][1], TEXTS[3][1], "Blue, deep and cold."]
    pairs = [Comparison(prompt, a, b, split="test") for a, b in combinations(answers, 2)]
    _, test_set, _ = encode_pairs(pairs, model.encoder, too_long="skip")
    assert len(test_set.sequences) == len(answers) and len(test_set) == 6
    order = [5, 0, 3, 1, 4, 2]
    deltas = pair_deltas(
        model.members[0].scorer, test_set, order, pad_id=model.tokenizer.pad_token_id, sequences_per_batch=3
    )
    raw = {a: model.score([prompt], [a], normalize=False, batch_size=1)[0] for a in answers}
    assert deltas == pytest.approx([raw[pairs[i].chosen] - raw[pairs[i].rejected] for i in order], abs=1e-5)


def test_a_saved_model_scores_line_breaks_as_it_was_trained_to(encoder_run: Path, tmp_path: Path) -> None:
    meta = json.loads((encoder_run / "model" / "alignloop_reward.json").read_text())
    assert meta["newline"] == "¶"
    model = RewardModel.load(encoder_run)
    listed, run_on = model.score(["q", "q"], ["1. sleep\n2. rain", "1. sleep 2. rain"])
    assert listed != pytest.approx(run_on, abs=1e-4)

    # a model saved before line breaks were marked keeps reading them as it did (as spaces)
    old = tmp_path / "old"
    shutil.copytree(encoder_run, old)
    del meta["newline"]
    (old / "model" / "alignloop_reward.json").write_text(json.dumps(meta))
    listed, run_on = RewardModel.load(old).score(["q", "q"], ["1. sleep\n2. rain", "1. sleep 2. rain"])
    assert listed == pytest.approx(run_on, abs=1e-5)
