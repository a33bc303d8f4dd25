"""Simulated labelers: real accounts that rank completions by a judge's score plus noise.

The ranking policy is Plackett–Luce sampling with temperature ``noise``: each completion's
utility is its judge score divided by the temperature, and a ranking is drawn by the
Gumbel-max trick (sort ``score + noise·Gumbel``), which samples exactly the
Plackett–Luce distribution. ``noise = 0`` ranks by the score. A *misreader* ranks by the
opposite of the criterion (or by another criterion the caller passes, such as length).

The pure policy (``simulated_ranking``, ``simulated_orders``, ``simulated_thumbs``) is
separate from the HTTP driver (``simulate_labelers``) so recovery tests run without a server.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def simulated_orders(scores: np.ndarray, noise: float, rng: np.random.Generator, misreader: bool = False) -> np.ndarray:
    """Plackett–Luce rankings (N, K) of item indices best→worst for score rows (N, K)."""
    scores = np.asarray(scores, dtype=np.float64)
    utility = -scores if misreader else scores
    if noise > 0:
        utility = utility + noise * rng.gumbel(size=utility.shape)
    return np.argsort(-utility, axis=-1, kind="stable")


def simulated_ranking(
    scores: Sequence[float], noise: float, rng: np.random.Generator, misreader: bool = False
) -> list[int]:
    """One Plackett–Luce ranking of ``scores`` (K,): item indices best→worst."""
    return [int(i) for i in simulated_orders(np.asarray(scores)[None, :], noise, rng, misreader)[0]]


def simulated_thumbs(
    scores: Sequence[float], noise: float, rng: np.random.Generator, misreader: bool = False
) -> list[int]:
    """Thumbs (+1/−1) per item: up when the score beats the task's mean, after logistic noise."""
    s = np.asarray(scores, dtype=np.float64)
    s = -s if misreader else s
    centred = s - s.mean()
    if noise > 0:
        centred = centred + noise * rng.logistic(size=s.shape)
    return [1 if v > 0 else -1 for v in centred]
