"""Programmatic rewards for the RL tests, loaded by path as ``tests/rl/rewards_for_tests.py:NAME``.

The tiny random LM samples almost uniformly from its 512-token vocabulary; about a third
of its tokens begin a word (a leading space). ``space_fraction`` rewards completions made of
such tokens, a signal the policy can learn quickly and that anyone can check by eye.
"""

from __future__ import annotations


def space_fraction(prompt: str, completion: str) -> float:
    """Share of the completion's characters that are spaces, times 4, capped at 1 (in [0, 1])."""
    if not completion:
        return 0.0
    return min(1.0, 4.0 * completion.count(" ") / len(completion))


def not_a_number(prompt: str, completion: str) -> float:
    return float("nan")


_calls = 0


def nan_after_eight_calls(prompt: str, completion: str) -> float:
    """A reward that breaks on its ninth call: with 4 completions per step, at step 3."""
    global _calls
    _calls += 1
    return float("nan") if _calls > 8 else space_fraction(prompt, completion)
