"""Built-in judges and loading a judge by name."""

from __future__ import annotations

import pytest

from alignloop.errors import AlignloopError
from alignloop.judges import length, load_judge, sentiment


def test_sentiment_scores_positive_text_above_negative_text():
    good = sentiment("How was it?", "It was wonderful, I loved every minute!")
    bad = sentiment("How was it?", "It was awful and I hated it.")
    assert -1.0 <= bad < 0 < good <= 1.0


def test_length_counts_words():
    assert length("q", "one two  three") == 3.0


def test_load_judge_returns_the_named_callable():
    assert load_judge("alignloop.judges:sentiment") is sentiment


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
