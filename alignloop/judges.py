"""Built-in judges: ``(prompt, completion) -> float`` callables for simulated labelers and evaluation.

A judge is any importable callable with that signature, named ``MODULE:FUNCTION``
(``alignloop.judges:sentiment``, ``mypkg.scoring:helpfulness``). Higher is better.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from alignloop.errors import AlignloopError

Judge = Callable[[str, str], float]


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()  # loads the lexicon once (~0.1 s)


def sentiment(prompt: str, completion: str) -> float:
    """VADER compound sentiment of the completion, in [−1, 1] (1 = most positive)."""
    return float(_vader().polarity_scores(completion)["compound"])


def length(prompt: str, completion: str) -> float:
    """Length of the completion in words: the criterion of a labeler who prefers longer answers."""
    return float(len(completion.split()))


def load_judge(spec: str) -> Judge:
    """Import ``MODULE:FUNCTION`` and check it can be called as ``judge(prompt, completion)``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AlignloopError(f"judge {spec!r} is not MODULE:FUNCTION (for example alignloop.judges:sentiment)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AlignloopError(f"judge {spec!r}: cannot import module {module_name!r} ({exc})") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise AlignloopError(f"judge {spec!r}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise AlignloopError(f"judge {spec!r} is not callable")
    try:
        inspect.signature(target).bind("prompt", "completion")
    except TypeError:
        raise AlignloopError(
            f"judge {spec!r} must accept two arguments (prompt, completion) and return a float"
        ) from None
    except ValueError:
        pass  # builtins without a signature: trust them
    return target
