"""Importing prompts: every format, de-duplication, deterministic splits, all-or-nothing on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alignloop import api
from alignloop.errors import InputError
from alignloop.project import open_project
from alignloop.store import Prompt


def _count(project_dir: Path) -> int:
    handle = open_project(project_dir)
    with handle.store.session() as s:
        n = s.scalar(select(func.count()).select_from(Prompt))
    handle.close()
    return n


def test_jsonl_with_text_and_chat_prompts(project_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    path.write_text(json.dumps({"prompt": "Say hi."}) + "\n\n" + json.dumps({"messages": chat}) + "\n")
    result = api.add_prompts(project_dir, path)
    assert (result.added, result.duplicates, result.total) == (2, 0, 2)
    handle = open_project(project_dir)
    with handle.store.session() as s:
        stored = {p.text: p.messages for p in s.scalars(select(Prompt))}
    handle.close()
    assert stored == {"Say hi.": None, "Name a colour.": chat}


def test_csv_text_and_datasets_directory(project_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset

    (tmp_path / "p.csv").write_text('prompt,topic\n"Why is the sky blue?",science\nPlan a picnic.,everyday\n')
    (tmp_path / "p.txt").write_text("One per line.\n\nAnother one.\n")
    Dataset.from_dict({"prompt": ["From datasets.", "Why is the sky blue?"]}).save_to_disk(str(tmp_path / "ds"))
    assert api.add_prompts(project_dir, tmp_path / "p.csv").added == 2
    assert api.add_prompts(project_dir, tmp_path / "p.txt").added == 2
    result = api.add_prompts(project_dir, tmp_path / "ds")
    assert (result.added, result.duplicates, result.total) == (1, 1, 5)


def test_duplicates_differing_in_case_and_spaces_are_stored_once(project_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("Hello there\nhello   THERE\nSomething else\n")
    result = api.add_prompts(project_dir, tmp_path / "p.txt")
    assert (result.added, result.duplicates) == (2, 1)
    assert api.add_prompts(project_dir, tmp_path / "p.txt").added == 0


def test_split_is_deterministic_and_near_the_configured_fraction(tmp_path: Path) -> None:
    splits = []
    for name in ("a", "b"):
        api.init(tmp_path / name).close()
        api.add_prompts(tmp_path / name, builtin=True)
        handle = open_project(tmp_path / name)
        with handle.store.session() as s:
            splits.append({p.text: p.split for p in s.scalars(select(Prompt))})
        handle.close()
    assert splits[0] == splits[1]
    test_share = sum(v == "test" for v in splits[0].values()) / len(splits[0])
    assert 0.04 < test_share < 0.18


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ('{"prompt": "fine"}\n{"prompt": 3}\n', ":2: prompt: expected a string"),
        ('{"prompt": "fine"}\n{"text": "x"}\n', ":2: prompt: missing field"),
        ('{"prompt": "fine"}\n{not json\n', ":2: not valid JSON"),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}\n',
            ":1: messages[1].role",
        ),
        ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n', ":1: messages:"),
        ('{"prompt": "   "}\n', ":1: prompt: is empty"),
    ],
)
def test_malformed_line_names_file_line_and_field_and_stores_nothing(
    project_dir: Path, tmp_path: Path, content: str, where: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        api.add_prompts(project_dir, path)
    assert str(err.value).startswith(str(path))
    assert where in str(err.value)
    assert _count(project_dir) == 0


def test_csv_without_the_prompt_column_is_refused(project_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("question\nWhy?\n")
    with pytest.raises(InputError, match="no `prompt` column"):
        api.add_prompts(project_dir, tmp_path / "p.csv")
    assert api.add_prompts(project_dir, tmp_path / "p.csv", column="question").added == 1


def test_builtin_prompt_set_imports(project_dir: Path) -> None:
    result = api.add_prompts(project_dir, builtin=True)
    assert result.added >= 200
