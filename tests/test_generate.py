"""The generate stage: K distinct completions per prompt, deterministic, resumable, batch-independent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from alignloop import api
from alignloop.backends import HFBackend, SamplingParams, encode_prompts
from alignloop.config import GenerateConfig
from alignloop.errors import InputError
from alignloop.generate import generate_completions
from alignloop.models import load_policy
from alignloop.project import open_project
from alignloop.store import Completion

PROMPTS = ["Write a short poem about the sea.", "Give me three tips for sleeping better.", "What is a rainbow?"]


@pytest.fixture
def prompt_project(project_dir: Path, tmp_path: Path) -> Path:
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS))
    api.add_prompts(project_dir, tmp_path / "prompts.txt")
    return project_dir


def _completions(project_dir: Path) -> dict[tuple[int, int], Completion]:
    handle = open_project(project_dir)
    with handle.store.session() as s:
        rows = {(c.prompt_id, c.sample_index): c for c in s.scalars(select(Completion))}
    handle.close()
    return rows


def test_k_completions_per_prompt_with_their_provenance(prompt_project: Path, tiny_lm: Path) -> None:
    result = api.generate(prompt_project, model=str(tiny_lm), k=3, max_new_tokens=6, seed=7)
    assert (result.generated, result.prompts, result.round_index) == (9, 3, 0)
    rows = _completions(prompt_project)
    assert sorted(i for _, i in rows) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    first = next(iter(rows.values()))
    assert first.model == str(tiny_lm)
    assert first.params == {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 6}
    assert 1 <= first.completion_tokens <= 6 and first.prompt_tokens > 0
    assert first.finish_reason in ("stop", "length")
    for prompt_id in {p for p, _ in rows}:
        texts = [rows[(prompt_id, i)].text for i in range(3)]
        assert len(set(texts)) == 3, "the K completions of a prompt are distinct"


def test_same_seed_gives_the_same_completions(tmp_path: Path, tiny_lm: Path) -> None:
    texts = []
    for name in ("a", "b"):
        api.init(tmp_path / name).close()
        (tmp_path / "p.txt").write_text("\n".join(PROMPTS))
        api.add_prompts(tmp_path / name, tmp_path / "p.txt")
        api.generate(
            tmp_path / name, model=str(tiny_lm), k=2, max_new_tokens=6, seed=3, batch_size=2 if name == "a" else 5
        )
        texts.append({k: c.text for k, c in _completions(tmp_path / name).items()})
    assert texts[0] == texts[1]


def test_interrupted_generate_resumes_without_duplicates_or_loss(
    prompt_project: Path, tiny_lm: Path, tmp_path: Path
) -> None:
    model, tokenizer = load_policy(str(tiny_lm))
    config = GenerateConfig(model=str(tiny_lm), k=4, max_new_tokens=5, batch_size=2, seed=1)

    class Interrupting(HFBackend):
        calls = 0

        def generate_ids(self, *args, **kwargs):
            Interrupting.calls += 1
            if Interrupting.calls == 2:
                raise KeyboardInterrupt
            return super().generate_ids(*args, **kwargs)

    handle = open_project(prompt_project)
    with pytest.raises(KeyboardInterrupt):
        generate_completions(handle, config, backend=Interrupting(model, tokenizer, batch_size=2))
    partial = _completions(prompt_project)
    assert 0 < len(partial) < 12
    result = generate_completions(handle, config, backend=HFBackend(model, tokenizer, batch_size=2))
    handle.close()
    assert result.generated == 12 - len(partial) and result.already_done == len(partial)
    resumed = _completions(prompt_project)
    assert len(resumed) == 12
    assert all(resumed[k].text == partial[k].text for k in partial)

    # The resumed set equals what one uninterrupted run produces.
    api.init(tmp_path / "fresh").close()
    (tmp_path / "p.txt").write_text("\n".join(PROMPTS))
    api.add_prompts(tmp_path / "fresh", tmp_path / "p.txt")
    api.generate(tmp_path / "fresh", **config.model_dump())
    fresh = _completions(tmp_path / "fresh")
    assert {k: c.text for k, c in fresh.items()} == {k: c.text for k, c in resumed.items()}


def test_second_run_only_fills_missing_slots(prompt_project: Path, tiny_lm: Path) -> None:
    api.generate(prompt_project, model=str(tiny_lm), k=2, max_new_tokens=4)
    again = api.generate(prompt_project, model=str(tiny_lm), k=3, max_new_tokens=4)
    assert (again.generated, again.already_done) == (3, 6)
    assert api.generate(prompt_project, model=str(tiny_lm), k=3, max_new_tokens=4).generated == 0


def test_a_row_sample_does_not_depend_on_its_batch(tiny_lm: Path) -> None:
    model, tokenizer = load_policy(str(tiny_lm))
    ids = encode_prompts(tokenizer, [[{"role": "user", "content": p}] for p in PROMPTS])
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=8)
    together = HFBackend(model, tokenizer, batch_size=3).generate_ids(ids, params, [11, 12, 13])
    alone = [
        HFBackend(model, tokenizer, batch_size=1).generate_ids([i], params, [s])[0] for i, s in zip(ids, [11, 12, 13])
    ]
    assert together == alone


def test_greedy_sampling_matches_transformers_generate(tiny_lm: Path) -> None:
    model, tokenizer = load_policy(str(tiny_lm))
    ids = encode_prompts(tokenizer, [[{"role": "user", "content": p}] for p in PROMPTS])
    ours = HFBackend(model, tokenizer, batch_size=3).generate_ids(
        ids, SamplingParams(temperature=0, max_new_tokens=6), [0] * 3
    )
    for prompt, sample in zip(ids, ours):
        reference = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=6,
            do_sample=False,
        )[0, len(prompt) :].tolist()
        assert sample == reference[: len(sample)]


def test_generation_leaves_a_training_model_in_training_mode(tiny_lm: Path) -> None:
    model, tokenizer = load_policy(str(tiny_lm))
    model.train()
    HFBackend(model, tokenizer).generate_ids([[1, 2, 3]], SamplingParams(max_new_tokens=2), [0])
    assert model.training


def test_prompt_longer_than_the_context_is_refused(prompt_project: Path, tiny_lm: Path) -> None:
    with pytest.raises(InputError, match="exceeds the model's context of 512"):
        api.generate(prompt_project, model=str(tiny_lm), k=2, max_new_tokens=600)
    assert _completions(prompt_project) == {}


@pytest.mark.slow
def test_default_model_generates_a_sensible_completion(project_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("Name one colour of the rainbow.\n")
    api.add_prompts(project_dir, tmp_path / "p.txt")
    result = api.generate(project_dir, model="default", k=2, max_new_tokens=24, temperature=0.0001)
    assert result.generated == 2
    assert all(len(c.text.split()) >= 2 for c in _completions(project_dir).values())
