"""PAR reward shaping: each reward bounded around the mean reward of the prompt's newest labelled answers."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from alignloop.rl.config import RLConfig
from alignloop.rl.rewards import load_reward, preference_as_reward, reference_rewards
from alignloop.rl.trainer import train_rl

SPACES = f"{Path(__file__).parent / 'rewards_for_tests.py'}:space_fraction"


def word_count(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    return [float(len(c.split())) for c in completions]


def test_par_is_one_half_at_the_reference_and_bounded_in_zero_one() -> None:
    shaped = preference_as_reward(word_count, {"a": 3.0, "b": 1.0})
    at, above, far, below = shaped(["a"] * 4, ["x y z", "x y z w", "w " * 8, ""])
    assert at == 0.5
    assert above == pytest.approx(1 / (1 + math.exp(-1))) and far == pytest.approx(1 / (1 + math.exp(-5)))
    assert 0.99 < far < 1.0 and 0.0 < below < 0.05  # five units above the reference: 0.993; three below: 0.047
    assert shaped(["unseen"], ["x y"]) == [0.5]  # centred on the mean of the others' references, (3 + 1) / 2


def add_answers(project_dir: Path) -> None:
    """Train prompt "sea": round 0 answered with two words each, round 1 with four; "land" only in round 0;
    a test prompt and a serving round's answer that the reference must leave out."""
    from alignloop.project import open_project
    from alignloop.store import Completion, Prompt, Round

    with open_project(project_dir) as handle, handle.store.session() as s:
        rounds = [Round(project_id=handle.project_id, index=i, kind=kind, policy="p") for i, kind in
                  enumerate(["train", "train", "serve"])]  # fmt: skip
        prompts = [Prompt(project_id=handle.project_id, text=t, text_hash=t, split=split)
                   for t, split in (("sea", "train"), ("land", "train"), ("held", "test"))]  # fmt: skip
        s.add_all(rounds + prompts)
        s.flush()
        answers = [(0, 0, "a b"), (0, 0, "c d"), (1, 0, "a b c d"), (1, 0, "a b c d e f"), (0, 1, "one"),
                   (0, 2, "x y z"), (2, 0, "served " * 30)]  # fmt: skip
        for i, (r, p, text) in enumerate(answers):
            s.add(Completion(prompt_id=prompts[p].id, round_id=rounds[r].id, sample_index=i, text=text, model="p",
                             seed=i, prompt_tokens=1, completion_tokens=1, finish_reason="stop"))  # fmt: skip


def test_the_reference_is_each_train_prompts_newest_labelling_round(project_dir: Path) -> None:
    add_answers(project_dir)
    assert reference_rewards(project_dir, word_count, batch_size=2) == {"sea": 5.0, "land": 1.0}


def test_par_needs_a_project() -> None:
    with pytest.raises(ValidationError, match="give `project`"):
        RLConfig(reward_model=SPACES, prompts="p.jsonl", reward_shaping="par")


def test_a_run_with_par_trains_on_the_bounded_reward(tiny_lm: Path, project_dir: Path) -> None:
    add_answers(project_dir)
    config = RLConfig(
        policy=str(tiny_lm), reward_model=SPACES, project=str(project_dir), reward_shaping="par",
        batch_size=2, max_new_tokens=4, max_steps=1, sample_every=1,
    )  # fmt: skip
    result = train_rl(config)
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["prompt"] for s in samples} == {"sea", "land"}
    # each logged reward is the shaped one: σ(r − r_ref) of the completion's own raw reward, with the
    # references of add_answers ("sea": 1.0, its newest answers are all spaces and letters; "land": 0.0)
    spaces = load_reward(SPACES)
    assert reference_rewards(project_dir, spaces) == {"sea": 1.0, "land": 0.0}
    for sample in samples:
        (raw,) = spaces([sample["prompt"]], [sample["completion"]])
        expected = 1 / (1 + math.exp({"sea": 1.0, "land": 0.0}[sample["prompt"]] - raw))
        assert sample["reward"] == pytest.approx(expected)
