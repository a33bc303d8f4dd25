"""Prompts and pairs from `datasets`: local DatasetDicts with every split handled explicitly, and the
UltraFeedback-binarized, HH-RLHF and TRL conversational preference formats as published."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from alignloop import api
from alignloop.errors import InputError
from alignloop.pairs import imported_pairs
from alignloop.project import open_project
from alignloop.store import Prompt


def _stored_splits(project_dir: Path) -> dict[str, str]:
    handle = open_project(project_dir)
    with handle.store.session() as s:
        found = {p.text: p.split for p in s.scalars(select(Prompt))}
    handle.close()
    return found


def _pairs(project_dir: Path) -> list:
    handle = open_project(project_dir)
    try:
        return imported_pairs(handle)
    finally:
        handle.close()


def _save_dict(path: Path, splits: dict[str, list[dict]]) -> Path:
    from datasets import Dataset, DatasetDict

    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(str(path))
    return path


def test_train_and_test_splits_of_a_dataset_dict_keep_their_split(project_dir: Path, tmp_path: Path) -> None:
    names = [f"Question number {i}?" for i in range(12)]
    ds = _save_dict(
        tmp_path / "ds", {"train": [{"prompt": t} for t in names[:8]], "test": [{"prompt": t} for t in names[8:]]}
    )
    assert api.add_prompts(project_dir, ds).added == 12
    splits = _stored_splits(project_dir)
    assert {t: splits[t] for t in names} == {t: "train" if i < 8 else "test" for i, t in enumerate(names)}


def test_other_splits_need_split_and_the_error_lists_them(project_dir: Path, tmp_path: Path) -> None:
    ds = _save_dict(tmp_path / "ds", {"train": [{"prompt": "a?"}], "validation": [{"prompt": "b?"}, {"prompt": "c?"}]})
    with pytest.raises(InputError, match="has splits train, validation; choose one with --split"):
        api.add_prompts(project_dir, ds)
    with pytest.raises(InputError, match=r"no split 'dev' \(splits: train, validation\)"):
        api.add_prompts(project_dir, ds, split="dev")
    assert api.add_prompts(project_dir, ds, split="validation").added == 2
    assert set(_stored_splits(project_dir)) == {"b?", "c?"}


def test_split_and_subset_are_refused_for_plain_files(project_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("Hello?\n")
    with pytest.raises(InputError, match="--split"):
        api.add_prompts(project_dir, tmp_path / "p.txt", split="train")


def test_missing_hub_dataset_offline_names_it(project_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    with pytest.raises(InputError) as caught:
        api.add_prompts(project_dir, "nobody/no-such-prompts")
    assert "nobody/no-such-prompts" in str(caught.value) and "\n" not in str(caught.value)


def _uf_row(prompt: str, good: str, bad: str) -> dict:
    user = {"role": "user", "content": prompt}
    return {
        "prompt": prompt,
        "prompt_id": str(abs(hash(prompt))),
        "chosen": [user, {"role": "assistant", "content": good}],
        "rejected": [user, {"role": "assistant", "content": bad}],
        "messages": [user, {"role": "assistant", "content": good}],
        "score_chosen": 8.0,
        "score_rejected": 3.0,
    }


def test_ultrafeedback_binarized_imports_as_published(project_dir: Path, tmp_path: Path) -> None:
    ds = _save_dict(
        tmp_path / "ultrafeedback_binarized",
        {
            "train_prefs": [_uf_row("Name a fruit.", "An apple.", "No."), _uf_row("Say hi.", "Hi!", "...")],
            "test_prefs": [_uf_row("Count to two.", "One, two.", "Three.")],
            "train_sft": [_uf_row("Name a fruit.", "An apple.", "No.")],
        },
    )
    with pytest.raises(InputError, match="train_prefs, test_prefs, train_sft"):
        api.import_pairs(project_dir, ds)
    assert api.import_pairs(project_dir, ds, split="train_prefs").pairs == 2
    assert api.import_pairs(project_dir, ds, split="test_prefs").test == 1
    pairs = _pairs(project_dir)
    assert [(p.prompt, p.chosen, p.rejected, p.split) for p in pairs] == [
        ("Name a fruit.", "An apple.", "No.", "train"),
        ("Say hi.", "Hi!", "...", "train"),
        ("Count to two.", "One, two.", "Three.", "test"),
    ]
    with pytest.raises(Exception, match="already imported"):
        api.import_pairs(project_dir, ds, split="test_prefs")


def test_hh_rlhf_transcripts_import_as_published(project_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset

    before = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell a joke\n\nAssistant: "
    rows = [{"chosen": before + "A pun.", "rejected": before + "No."}]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "hh"))
    assert api.import_pairs(project_dir, tmp_path / "hh").pairs == 1
    (pair,) = _pairs(project_dir)
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Tell a joke", "A pun.", "No.")
    assert [m["role"] for m in pair.messages] == ["user", "assistant", "user"]


def test_trl_conversational_preference_imports_as_published(project_dir: Path, tmp_path: Path) -> None:
    rows = [
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What colour is the sky?"},
            ],
            "chosen": [{"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "assistant", "content": "Green."}],
        }
    ]
    ds = _save_dict(tmp_path / "trl", {"train": rows})
    assert api.import_pairs(project_dir, ds).pairs == 1
    (pair,) = _pairs(project_dir)
    assert (pair.prompt, pair.chosen, pair.rejected, pair.split) == (
        "What colour is the sky?",
        "Blue.",
        "Green.",
        "train",
    )
    assert pair.messages[0] == {"role": "system", "content": "Be brief."}


def test_a_malformed_dataset_row_is_located(project_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_list(
        [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a", "rejected": ""}]
    ).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(InputError, match=r"bad:2: rejected: is empty"):
        api.import_pairs(project_dir, tmp_path / "bad")
    assert _pairs(project_dir) == []
