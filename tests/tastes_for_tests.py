"""Two unrelated tastes the tiny random LM's answers vary in, loaded by path as ``tests/tastes_for_tests.py:NAME``
(its answers carry no sentiment, so the built-in judges would see ties). Scaled so that answers differ by
several times the simulated labelers' noise, as real tastes tell answers apart."""

from __future__ import annotations


def spaces(prompt: str, completion: str) -> float:
    """Ten times the share of the completion's characters that are spaces."""
    return 10 * completion.count(" ") / len(completion) if completion else 0.0


def vowels(prompt: str, completion: str) -> float:
    """Ten times the share of the completion's letters that are vowels."""
    letters = [c for c in completion.lower() if c.isalpha()]
    return 10 * sum(c in "aeiou" for c in letters) / len(letters) if letters else 0.0
