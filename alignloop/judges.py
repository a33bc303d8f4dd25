"""Built-in judges: ``(prompt, completion) -> float`` callables for simulated labelers and evaluation.

Three tastes of different kinds, so a result shown on one is not an accident of it:
``sentiment`` (lexical: VADER's warmth), ``concise`` (structural: finished sentences, few
words) and ``follows_format`` (conditional on the prompt: the list, count or brevity it asks
for). ``length`` is the criterion of a misreading labeler.

A judge is any importable callable with that signature, named ``MODULE:FUNCTION``
(``alignloop.judges:sentiment``, ``mypkg.scoring:helpfulness``, or ``myjudge:score`` for a ``myjudge.py`` in the
working directory) or ``FILE.py:FUNCTION``. Higher is better.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from alignloop.errors import AlignloopError, InputError

Judge = Callable[[str, str], float]


@functools.lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()  # loads the lexicon once (~0.1 s)


def sentiment(prompt: str, completion: str) -> float:
    """VADER compound sentiment of the completion, in [−1, 1] (1 = most positive)."""
    return float(_vader().polarity_scores(completion)["compound"])


def length(prompt: str, completion: str) -> float:
    """Length of the completion in words: the criterion of a labeler who prefers longer answers."""
    return float(len(completion.split()))


_SENTENCE_END = re.compile(r"""[.!?]["')\]]*(?=\s|$)""")


def concise(prompt: str, completion: str) -> float:
    """Concise and complete, in [−1, 1]: the share of the answer that lies in finished sentences,
    minus a cost of 0.5 per 60 words; an answer under three words scores −1.

    The taste of a reader who wants the point, whole, and then silence: an answer cut off
    mid-sentence loses what trails after its last full stop, a long one pays for its length.
    """
    text = completion.strip()
    words = len(text.split())
    if words < 3:
        return -1.0
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    finished = ends[-1] / len(text) if ends else 0.0
    return max(-1.0, finished - 0.5 * words / 60)


_NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_COUNTED = re.compile(
    r"\b(\d+|two|three|four|five|six|seven|eight|nine|ten)\s+(?:\w+\s+){0,2}?"
    r"(tips|ways|steps|ideas|changes|things|reasons|examples|questions|habits|rules|items|points|words|sentences)\b",
    re.IGNORECASE,
)
_LIST_REQUEST = re.compile(r"\b(tips|ways|steps|ideas|list|suggest\w*|routine|plan|options|habits)\b", re.IGNORECASE)
_SHORT_REQUEST = re.compile(
    r"\b(short|brief|briefly|tiny|one sentence|one line|haiku|postcard|slogan|title|caption)\b", re.IGNORECASE
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)]|step\s*#?\d+)", re.IGNORECASE | re.MULTILINE)


def follows_format(prompt: str, completion: str) -> float:
    """How well the answer takes the form the prompt asks for, in [−1, 1].

    * a counted request ("three small changes", "5 tips"): items (list lines) close to the count;
    * a list request (tips, ways, steps, a routine, suggestions): two or more list items;
    * a brevity request (short, briefly, a haiku, a postcard): at most 40 words, fewer is better;
    * otherwise, plain prose: no list, and ending on a finished sentence.
    """
    text = completion.strip()
    words = len(text.split())
    if words < 3:
        return -1.0
    items = len(_LIST_ITEM.findall(text))
    finished = 1.0 if _SENTENCE_END.search(text[-3:] + " ") else 0.0
    counted = _COUNTED.search(prompt)
    if counted and counted.group(2).lower() not in ("words", "sentences"):
        wanted = int(counted.group(1)) if counted.group(1).isdigit() else _NUMBERS[counted.group(1).lower()]
        return 1.0 - min(2.0, abs(items - wanted) / max(wanted, 1))
    if _SHORT_REQUEST.search(prompt):
        return 1.0 - min(2.0, max(0, words - 15) / 25)
    if _LIST_REQUEST.search(prompt):
        return min(1.0, items / 3) * 1.5 - 0.5
    return 0.5 * finished + 0.5 * (1.0 if items == 0 else -1.0)


def load_judge(spec: str, *, what: str = "judge", finite: bool = True) -> Judge:
    """Import ``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION``, check it can be called as
    ``f(prompt, completion)``, and return it wrapped by ``checked``.

    The one loader of user functions: judges here, programmatic rewards in ``alignloop.rl.rewards``
    (``finite=False``: there a NaN is the trainer's sign of divergence). ``what`` names the function's role
    in error messages. The last ``:`` splits the spec, so a Windows path with a drive letter works;
    ``FUNCTION`` may be dotted (``scorers.Helpful.score``).
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise AlignloopError(f"{what} {spec!r} is not MODULE:FUNCTION (for example alignloop.judges:sentiment)")
    target: Any = _import_module(module_name, what)
    for part in attr.split("."):
        if not hasattr(target, part):
            raise AlignloopError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise AlignloopError(f"{what} {spec!r} is not callable")
    try:
        inspect.signature(target).bind("prompt", "completion")
    except TypeError:
        raise AlignloopError(
            f"{what} {spec!r} must accept two arguments (prompt, completion) and return a float"
        ) from None
    except ValueError:
        pass  # builtins without a signature: trust them
    return checked(target, f"{what} {spec}", finite=finite)


def checked(fn: Callable[[str, str], object], name: str, *, finite: bool = True) -> Judge:
    """``fn`` returning a float, or raising an error that names ``name`` and the answer it was scoring.

    A user's judge meets answers its author did not picture (empty, cut off mid-word); a ``ZeroDivisionError``
    deep in a simulated labeler would not say which function failed on what. A score that is not a number, or
    (with ``finite``) is NaN or infinite, is refused the same way: labels and evaluations cannot use it.
    """

    @functools.wraps(fn)
    def score(prompt: str, completion: str) -> float:
        try:
            raw = fn(prompt, completion)
        except Exception as exc:
            raise AlignloopError(
                f"{name} failed on the answer {completion[:80]!r} to {prompt[:60]!r}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            value = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = None
        if value is None or (finite and not math.isfinite(value)):
            answer = f"the answer {completion[:80]!r} to {prompt[:60]!r}"
            raise InputError(f"{name} scored {answer} as {raw!r}, not a number")
        return value

    return score


def _import_module(name: str, what: str) -> ModuleType:
    """A module by import name, or executed from a ``.py`` file (afresh on every call)."""
    if not name.endswith(".py"):
        try:
            return _import_from_here(name)
        except ImportError as exc:
            raise AlignloopError(f"cannot import {what} module {name!r}: {exc}") from None
    file = Path(name).expanduser()
    if not file.exists():
        raise AlignloopError(f"{what} file {file} does not exist")
    spec = importlib.util.spec_from_file_location(f"alignloop_{what}_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise AlignloopError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import_from_here(name: str) -> ModuleType:
    """``import name``, also finding it in the working directory, as ``python -m`` and uvicorn's ``app:app`` do.

    An installed console script does not put the working directory on ``sys.path``, so ``alignloop demo --judge
    myjudge:score`` next to ``myjudge.py`` would fail. The directory is appended, not prepended, and only after the
    plain import missed that very module, so a local file never shadows an installed package.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        here = str(Path.cwd())
        missing_top = exc.name is not None and name.split(".")[0] == exc.name.split(".")[0]
        if not missing_top or here in sys.path or "" in sys.path:
            raise
    sys.path.append(here)
    return importlib.import_module(name)
