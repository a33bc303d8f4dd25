"""Built-in judges and loading a judge by name."""

from __future__ import annotations

import math
import sys
import uuid

import pytest

from alignloop.errors import AlignloopError, InputError
from alignloop.judges import checked, concise, follows_format, length, load_judge, sentiment


def test_sentiment_scores_positive_text_above_negative_text():
    good = sentiment("How was it?", "It was wonderful, I loved every minute!")
    bad = sentiment("How was it?", "It was awful and I hated it.")
    assert -1.0 <= bad < 0 < good <= 1.0


def test_length_counts_words():
    assert length("q", "one two  three") == 3.0


def test_load_judge_returns_the_named_callable():
    judge = load_judge("alignloop.judges:sentiment")
    assert judge.__wrapped__ is sentiment
    assert judge("q", "What a lovely day!") == sentiment("q", "What a lovely day!")


def test_a_judge_that_fails_on_an_answer_says_which_judge_and_which_answer(tmp_path):
    file = tmp_path / "ratio.py"
    file.write_text(
        "def distinct(prompt, completion):\n    words = completion.split()\n    return len(set(words)) / len(words)\n"
    )
    judge = load_judge(f"{file}:distinct")
    assert judge("q", "a a b b") == 0.5
    with pytest.raises(AlignloopError, match=r"ratio.py:distinct failed on the answer '' to 'q': ZeroDivisionError"):
        judge("q", "")


@pytest.mark.parametrize("bad", [None, "good", float("nan"), float("inf")])
def test_a_judge_score_that_is_not_a_number_is_refused_and_a_reward_may_be_nan(bad):
    with pytest.raises(InputError, match="not a number"):
        checked(lambda prompt, completion: bad, "judge j")("q", "a")
    if isinstance(bad, float):  # the RL trainer stops on a NaN reward and keeps its last good checkpoint
        assert math.isnan(bad) == math.isnan(checked(lambda prompt, completion: bad, "r", finite=False)("q", "a"))
    else:
        with pytest.raises(InputError, match="not a number"):
            checked(lambda prompt, completion: bad, "r", finite=False)("q", "a")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("alignloop.judges", "MODULE:FUNCTION"),
        ("no_such_module_xyz:f", "cannot import"),
        ("alignloop.judges:nope", "no attribute"),
        ("alignloop.judges:load_judge", "two arguments"),
        ("math:pi", "not callable"),
    ],
)
def test_load_judge_explains_what_is_wrong(spec, message):
    with pytest.raises(AlignloopError, match=message):
        load_judge(spec)


def test_a_judge_may_be_a_function_in_a_python_file(tmp_path):
    file = tmp_path / "my_judges.py"
    file.write_text("def shouting(prompt, completion):\n    return float(completion.isupper())\n")
    judge = load_judge(f"{file}:shouting")
    assert judge("q", "YES") == 1.0 and judge("q", "no") == 0.0
    with pytest.raises(AlignloopError, match="does not exist"):
        load_judge(f"{tmp_path / 'missing.py'}:shouting")


def test_a_judge_module_in_the_working_directory_is_found_as_a_console_script_runs(tmp_path, monkeypatch):
    # An installed `alignloop` script has neither '' nor the working directory on sys.path.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    name = f"my_taste_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("def polite(prompt, completion):\n    return float('please' in completion)\n")
    try:
        judge = load_judge(f"{name}:polite")
        assert judge("q", "please sit") == 1.0
        assert sys.path[-1] == str(tmp_path)
        with pytest.raises(AlignloopError, match="cannot import"):
            load_judge(f"{name}_missing:polite")
    finally:
        sys.modules.pop(name, None)


def test_a_module_missing_inside_the_judge_is_reported_not_looked_for_here(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    name = f"needs_more_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "import no_such_dependency_xyz\n\ndef f(prompt, completion):\n    return 0.0\n"
    )
    with pytest.raises(AlignloopError, match="no_such_dependency_xyz"):
        load_judge(f"{name}:f")


def test_concise_prefers_a_finished_short_answer_to_one_cut_off_or_rambling():
    finished = concise("q", "Drink water before bed. Keep the alarm across the room.")
    cut_off = concise("q", "Drink water before bed. Keep the alarm across the room and then you will")
    rambling = concise("q", " ".join(["Sleep is good."] * 30))
    assert finished > cut_off
    assert finished > rambling
    assert concise("q", "Yes.") == -1.0  # under three words


def test_follows_format_rewards_the_count_list_or_brevity_the_prompt_asks_for():
    three = "What are three small changes that could help me?"
    assert follows_format(three, "1. Sleep early.\n2. Move the alarm.\n3. Open the curtains.") == 1.0
    assert follows_format(three, "1. Sleep early.\n2. Move the alarm.") < 1.0
    assert follows_format(three, "You could sleep earlier and move the alarm.") == 0.0  # no items: three short
    tips = "Give me a few tips for remembering names."
    assert follows_format(tips, "- Repeat it.\n- Write it down.\n- Link it to a face.") > follows_format(
        tips, "Repeat the name back when you hear it."
    )
    short = "Write a short postcard message from the mountains."
    assert follows_format(short, "Greetings from the peaks! The air is clear and cold.") > follows_format(
        short, " ".join(["The mountains are tall and the lakes are blue."] * 8)
    )
    plain = "Why is the sky blue?"
    assert follows_format(plain, "Sunlight scatters off air molecules, blue light most.") > follows_format(
        plain, "- Sunlight\n- scattering"
    )
