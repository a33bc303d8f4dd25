"""The built-in prompt set ships inside the package and is usable as-is for a first round."""

import json
from collections import Counter
from importlib.resources import files

EXPECTED_CATEGORIES = {"advice", "explanation", "creative", "everyday", "feedback", "rewriting"}


def _load_rows() -> list[dict[str, str]]:
    resource = files("alignloop") / "data" / "prompts.jsonl"
    text = resource.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _normalise(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def test_builtin_prompts_ship_with_at_least_200_entries() -> None:
    assert len(_load_rows()) >= 200


def test_every_builtin_prompt_has_text_and_category() -> None:
    for row in _load_rows():
        assert isinstance(row.get("prompt"), str) and row["prompt"].strip(), row
        assert isinstance(row.get("category"), str) and row["category"].strip(), row


def test_builtin_prompts_are_unique_ignoring_case_and_whitespace() -> None:
    counts = Counter(_normalise(row["prompt"]) for row in _load_rows())
    duplicates = [prompt for prompt, count in counts.items() if count > 1]
    assert duplicates == []


def test_every_builtin_category_has_at_least_20_prompts() -> None:
    counts = Counter(row["category"] for row in _load_rows())
    assert set(counts) == EXPECTED_CATEGORIES
    assert min(counts.values()) >= 20, counts


def test_builtin_prompts_are_short_enough_for_a_small_model() -> None:
    lengths = [len(row["prompt"].split()) for row in _load_rows()]
    assert min(lengths) >= 8 and max(lengths) <= 40
