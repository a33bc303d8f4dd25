"""Bad input to reward training: a located error or a counted, reported skip — never a silent cut."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignloop.errors import AlignloopError, InputError
from alignloop.records import Comparison
from alignloop.reward import RewardConfig, train_reward
from alignloop.reward.data import (
    SequenceEncoder,
    assign_test_split,
    encode_pairs,
    epoch_batches,
    input_format,
)


def _encoder(path: Path, max_length: int = 64) -> SequenceEncoder:
    from alignloop.models import load_tokenizer

    return SequenceEncoder(load_tokenizer(str(path), padding_side="right"), max_length)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("bad_row", "field"),
    [({"prompt": "a", "chosen": "b"}, "rejected"), ({"prompt": "a", "chosen": "", "rejected": "c"}, "chosen")],
)
def test_a_bad_row_in_the_pairs_file_is_refused_with_file_line_and_field(
    bad_row: dict, field: str, tiny_encoder: Path, tmp_path: Path
) -> None:
    path = _write(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}, bad_row])
    config = RewardConfig(backbone=str(tiny_encoder), pairs=str(path), output=str(tmp_path / "run"))
    with pytest.raises(InputError) as err:
        train_reward(config)
    assert err.value.line == 2 and err.value.field == field and str(path) in str(err.value)
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_empty_and_identical_completions_are_skipped_and_counted(tiny_encoder: Path) -> None:
    pairs = [
        Comparison("q1", "good answer", "bad answer"),
        Comparison("q2", "", "bad answer"),
        Comparison("q3", "same words", "same words"),
        Comparison("q4", "same words ", " same words"),
    ]
    train, test, report = encode_pairs(pairs, _encoder(tiny_encoder), too_long="skip")
    assert len(train) == 1 and len(test) == 0
    assert report.skipped == {"empty_completion": 1, "identical": 2}
    assert report.first_skipped == {"empty_completion": 1, "identical": 2}
    assert "1 skipped because a completion is empty" in report.summary()


def test_prompt_longer_than_the_context_is_skipped_counted_or_refused(tiny_encoder: Path) -> None:
    long_prompt = "the sea " * 60
    pairs = [Comparison("short question", "yes please", "no thanks"), Comparison(long_prompt, "yes", "no")]
    train, _, report = encode_pairs(pairs, _encoder(tiny_encoder, 32), too_long="skip")
    assert len(train) == 1 and report.skipped == {"prompt_too_long": 1}
    _, _, report = encode_pairs(pairs, _encoder(tiny_encoder, 32), too_long="truncate")
    assert report.skipped == {"prompt_too_long": 1}  # nothing to cut: the prompt alone does not fit
    with pytest.raises(InputError, match="pair 1.*prompt alone fills the context"):
        encode_pairs(pairs, _encoder(tiny_encoder, 32), too_long="error")


def test_completion_too_long_is_cut_only_when_asked_and_then_counted(tiny_encoder: Path) -> None:
    pairs = [Comparison("question", "light " * 40, "rain " * 3)]
    encoder = _encoder(tiny_encoder, 24)
    train, _, report = encode_pairs(pairs, encoder, too_long="skip")
    assert len(train) == 0 and report.skipped == {"too_long": 1}
    train, _, report = encode_pairs(pairs, encoder, too_long="truncate")
    assert len(train) == 1 and report.truncated == 1
    chosen = train.sequences[train.chosen[0]]
    assert len(chosen.input_ids) == 24 and chosen.input_ids[-1] == encoder.tokenizer.sep_token_id


def test_training_refuses_when_no_pair_is_usable(tiny_encoder: Path, tmp_path: Path) -> None:
    pairs = [Comparison("q", "same", "same"), Comparison("r", "", "x")]
    config = RewardConfig(backbone=str(tiny_encoder), output=str(tmp_path / "run"))
    with pytest.raises(AlignloopError, match="no usable training pairs.*2 skipped|no usable training pairs"):
        train_reward(config, pairs=pairs)


def test_encoder_reads_a_text_pair_and_decoder_reads_the_chat(tiny_encoder: Path, tiny_lm: Path) -> None:
    enc = _encoder(tiny_encoder)
    assert input_format(enc.tokenizer) == "pair"
    [row] = enc.encode(["the sea"], ["a poem"], truncate=False)
    assert row.token_type_ids is not None and set(row.token_type_ids) == {0, 1}
    dec = _encoder(tiny_lm)
    assert dec.format == "chat"
    [row] = dec.encode([[{"role": "user", "content": "the sea"}]], ["a poem"], truncate=False)
    text = dec.tokenizer.decode(row.input_ids)
    assert text.startswith("<|im_start|>user\nthe sea<|im_end|>") and "<|im_start|>assistant\na poem" in text


def test_split_by_prompt_hash_keeps_a_prompts_pairs_together() -> None:
    pairs = [Comparison(f"prompt {i % 30}", f"a{i}", f"b{i}") for i in range(300)]
    pairs = assign_test_split(pairs, 0.2, seed=0)
    by_prompt: dict[str, set[str]] = {}
    for p in pairs:
        by_prompt.setdefault(p.prompt, set()).add(p.split)
    assert all(len(s) == 1 for s in by_prompt.values())
    assert 0 < sum(s == {"test"} for s in by_prompt.values()) < 15
    given = [Comparison("x", "a", "b", split="test"), Comparison("y", "a", "b")]
    assert [p.split for p in assign_test_split(given, 0.5, seed=0)] == ["test", "train"]  # a given split is kept


def test_length_bucketed_batches_cover_every_pair_once_and_pad_little() -> None:
    lengths = [((i * 37) % 100) + 1 for i in range(400)]
    batches = epoch_batches(lengths, 16, seed=0, epoch=0, bucketing=True)
    assert sorted(i for b in batches for i in b) == list(range(400))
    assert batches == epoch_batches(lengths, 16, seed=0, epoch=0, bucketing=True)
    assert batches != epoch_batches(lengths, 16, seed=0, epoch=1, bucketing=True)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random_order = epoch_batches(lengths, 16, seed=0, epoch=0, bucketing=False)
    padded_random = sum(len(b) * max(lengths[i] for i in b) for b in random_order)
    assert padded < 0.7 * padded_random


def test_a_prompts_pairs_share_one_batch_when_grouped() -> None:
    groups = [i // 6 for i in range(60)]  # ten prompts of K = 4: six pairs each
    lengths = [10 + (i * 7) % 30 for i in range(60)]
    batches = epoch_batches(lengths, 16, seed=0, epoch=0, bucketing=True, groups=groups)
    assert sorted(i for b in batches for i in b) == list(range(60))
    for batch in batches:
        prompts = {groups[i] for i in batch}
        assert sum(groups[i] in prompts for i in range(60)) == len(batch)  # whole prompts only
        assert len(batch) < 16 + 6  # filled with whole prompts up to the batch size
    assert epoch_batches(lengths, 16, seed=0, epoch=0, bucketing=False) == epoch_batches(
        lengths, 16, seed=0, epoch=0, bucketing=False, groups=list(range(60))
    )  # one pair per group is plain pair batching


def test_an_encoder_that_erases_line_breaks_reads_them_as_a_symbol(tiny_encoder: Path, tiny_lm: Path) -> None:
    from alignloop.models import load_tokenizer
    from alignloop.reward.data import newline_marker

    bert = load_tokenizer(str(tiny_encoder), padding_side="right")
    assert newline_marker(bert) == "¶"  # BERT's normaliser turns line breaks into spaces
    assert newline_marker(load_tokenizer(str(tiny_lm))) is None  # a byte-level BPE keeps them

    listed, run_on = "two tips:\n1. sleep\n2. rain", "two tips: 1. sleep 2. rain"
    blind = SequenceEncoder(bert, 64)
    assert _ids(blind, listed) == _ids(blind, run_on)
    marked = SequenceEncoder(bert, 64, newline="¶")
    assert _ids(marked, listed) != _ids(marked, run_on)
    assert _ids(marked, listed) == _ids(marked, "two tips:\r\n1. sleep\r\n2. rain")
    assert bert.convert_ids_to_tokens(_ids(marked, listed)).count("¶") == 2
    # the prompt's line breaks too, whether it is a text or a conversation
    as_text = marked.encode(["a\nb"], ["c"], truncate=False)[0].input_ids
    as_chat = marked.encode([[{"role": "user", "content": "a\nb"}]], ["c"], truncate=False)[0].input_ids
    assert as_text == as_chat and bert.convert_ids_to_tokens(as_text).count("¶") == 1


def _ids(encoder: SequenceEncoder, completion: str) -> list[int]:
    return encoder.encode(["q"], [completion], truncate=False)[0].input_ids
