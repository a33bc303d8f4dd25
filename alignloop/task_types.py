"""Labeling task types: what a labeler is asked to do with a prompt's K completions.

Each task type is one ``TaskType`` in ``TASK_TYPES`` and carries everything the loop needs
to know about it, so that adding one is one class here plus its page fragment:

- its answer: the key of the submit body and of the submit URL (``answer_field``, the
  labeling API has one ``POST /api/tasks/{id}/{answer_field}`` per field), its schema, how it
  is checked (``check``) and the judgement column that stores it (``column``);
- its page: the heading, the fragment of the task page that asks for the answer
  (``template``, in ``labeling/templates/tasks/``: macros ``hint``, ``controls`` and
  ``actions``) and the wording of the default guidelines (``guidelines``);
- its pairs rule: how a stored judgement enters the consensus (``tiers``) and, for a type
  whose pairs follow the majority vote instead of the consensus ranking, the per-completion
  votes (``votes``);
- its simulated labeler (``simulate``).

``labeling.task_type`` in alignloop.yaml, ``alignloop init --task-type``, the admin page
and the API schema read the names from here. ``pairwise`` is the blind two-answer task of
evaluation rounds; it is not offered for training rounds (``for_training``).

The module is shared by the labeling, consensus, pairs and simulation stages and stays
light: numpy is imported by the simulated labelers only when they run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import StrictInt

from alignloop.errors import TaskRefused
from alignloop.registry import Registry

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class LabelerPolicy:
    """How a simulated labeler answers: its Plackett–Luce temperature (``noise``), its own random stream,
    whether it misreads (ranks by the opposite of the scores) and whether the project lets it place
    answers level (``allow_ties``)."""

    noise: float
    rng: np.random.Generator
    misreader: bool = False
    allow_ties: bool = False


class TaskType:
    """Base of the task types; the attributes and methods are documented in the module docstring."""

    name: str  # stored as assignments.task_type and judgements.kind
    title: str  # the task page's heading
    description: str  # one line: config help, CLI help, admin page
    answer_field: str  # key of the submit body, last segment of the submit URL
    answer_help: str  # the answer's description in the API schema
    column: str  # judgement column the checked answer is stored in
    template: str  # the task page fragment, under labeling/templates/
    interaction: Literal["order", "choice"]  # task.js: order the cards, or choose a value per card
    for_training: bool = True  # offered as `labeling.task_type`; False: evaluation rounds only
    min_completions: int = 2  # a round's K must be at least this
    position_bias: bool = False  # the first card shown is recorded, to measure position bias
    guidelines: dict[str, str]  # `instructions`, `all_bad` (edge case), `unusable_place` of the defaults

    def answer_schema(self) -> Any:
        """The answer's type in the API schema (a pydantic annotation)."""
        raise NotImplementedError

    def check(self, answer: Any, ids: list[int], allow_ties: bool) -> Any:
        """The answer as stored in ``column``; ``TaskRefused(422, ...)`` saying what is wrong otherwise."""
        raise NotImplementedError

    def tiers(self, stored: Any, ids: list[int]) -> list[list[int]]:
        """A stored answer as tiers of completion ids, best first: how it enters the consensus."""
        raise NotImplementedError

    def votes(self, stored: Any) -> dict[int, int] | None:
        """+1/−1 per completion when this type's pairs follow the majority vote; None: the consensus ranking."""
        return None

    def simulate(self, scores: Sequence[float], ids: list[int], labeler: LabelerPolicy) -> Any:
        """A simulated labeler's answer (as sent to the API) for completions ``ids`` with judge ``scores``."""
        raise NotImplementedError


TASK_TYPES: Registry[TaskType] = Registry("task type")


def training_task_types() -> list[str]:
    """The names a project may choose as ``labeling.task_type``."""
    return [t.name for t in TASK_TYPES.entries() if t.for_training]


def task_type_help() -> str:
    """The training task types with what each asks, as a help text reads them."""
    return TASK_TYPES.choices([f"{name} ({TASK_TYPES[name].description})" for name in training_task_types()])


def completion_key(key: Any, ids: list[int], what: str) -> int:
    """``key`` (a JSON object key or an int) as one of the task's completion ids."""
    try:
        cid = int(key)
    except (TypeError, ValueError):
        raise TaskRefused(422, f"{what}: {key!r} is not a completion id") from None
    if cid not in ids:
        raise TaskRefused(422, f"{what}: completion {cid} is not part of this task {sorted(ids)}")
    return cid


# ------------------------------------------------------------------------------------------ simulated labelers


def _noisy_utility(
    scores: np.ndarray, noise: float, rng: np.random.Generator, misreader: bool = False, allow_ties: bool = False
) -> np.ndarray:
    """A simulated labeler's utilities (N, K) for score rows (N, K): sorting them samples its ranking.

    Each item's utility is its score over the temperature ``noise``; sorting ``score + noise·Gumbel``
    (the Gumbel-max trick) samples exactly the Plackett–Luce distribution. A misreader ranks by the
    opposite of the scores. Where ``allow_ties``, items with equal scores, which the labeler's taste
    cannot tell apart, share their first item's noise draw, so they stay level and move as one (the
    guidelines' "truly equally good"). The draws are the same either way, so a labeler who meets no
    equal scores answers alike with ties allowed or not.
    """
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    utility = -scores if misreader else scores
    if noise <= 0:
        return utility
    draws = noise * rng.gumbel(size=scores.shape)
    if allow_ties:
        first_level = (scores[..., :, None] == scores[..., None, :]).argmax(axis=-1)  # first item level with each
        draws = np.take_along_axis(draws, first_level, axis=-1)
    return utility + draws


def simulated_ranks(
    scores: np.ndarray, noise: float, rng: np.random.Generator, misreader: bool = False, allow_ties: bool = False
) -> np.ndarray:
    """Plackett–Luce mid-ranks (N, K), 1 = best, of score rows (N, K) (see ``_noisy_utility``); without
    ``allow_ties`` equal utilities are ordered by position, the first item first."""
    import numpy as np

    utility = _noisy_utility(scores, noise, rng, misreader, allow_ties)
    above = (utility[..., None, :] > utility[..., :, None]).sum(axis=-1)  # [..., i]: items j better than i
    level = utility[..., None, :] == utility[..., :, None]  # [..., i, j]: j level with i
    if allow_ties:
        return 1.0 + above + (level.sum(axis=-1) - 1) / 2
    earlier = np.tri(utility.shape[-1], k=-1, dtype=bool)  # [i, j]: j comes before i
    return 1.0 + above + (level & earlier).sum(axis=-1)


def simulated_orders(scores: np.ndarray, noise: float, rng: np.random.Generator, misreader: bool = False) -> np.ndarray:
    """Strict Plackett–Luce rankings (N, K), item indices best→worst, of score rows (N, K) (see ``_noisy_utility``)."""
    import numpy as np

    return np.argsort(-_noisy_utility(scores, noise, rng, misreader), axis=-1, kind="stable")


def simulated_ranking(
    scores: Sequence[float], noise: float, rng: np.random.Generator, misreader: bool = False
) -> list[int]:
    """One strict Plackett–Luce ranking of ``scores`` (K,): item indices best→worst."""
    import numpy as np

    return [int(i) for i in simulated_orders(np.asarray(scores)[None, :], noise, rng, misreader)[0]]


def simulated_tiers(
    scores: Sequence[float], noise: float, rng: np.random.Generator, misreader: bool = False, allow_ties: bool = False
) -> list[list[int]]:
    """One Plackett–Luce ranking of ``scores`` (K,) as tiers of item indices, best first; equal scores
    share a tier where ``allow_ties`` (see ``simulated_ranks``)."""
    import numpy as np

    ranks = simulated_ranks(np.asarray(scores)[None, :], noise, rng, misreader, allow_ties)[0]
    return [[int(i) for i in np.flatnonzero(ranks == rank)] for rank in np.unique(ranks)]


def simulated_thumbs(
    scores: Sequence[float], noise: float, rng: np.random.Generator, misreader: bool = False
) -> list[int]:
    """Thumbs (+1/−1) per item: up when the score beats the task's mean, after logistic noise."""
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    s = -s if misreader else s
    centred = s - s.mean()
    if noise > 0:
        centred = centred + noise * rng.logistic(size=s.shape)
    return [1 if v > 0 else -1 for v in centred]


# ------------------------------------------------------------------------------------------ the task types


class Ranking(TaskType):
    name = "ranking"
    title = "Rank the answers, best first"
    description = "rank the K completions best to worst"
    answer_field = "ranking"
    answer_help = "Tiers of completion ids, best first: [[12], [10], [13]]."
    column = "ranking"
    template = "tasks/ranking.html"
    interaction = "order"
    position_bias = True
    guidelines = {
        "instructions": (
            "1. Read the prompt first and decide what a good answer would do.\n"
            "2. Read every answer completely before you rank.\n"
            "3. Put the best answer first and the worst last: tap (or click) the answers in that order, "
            "or press each answer's number on the keyboard, or drag the cards; ▲ ▼ move an answer. "
            "Then submit.\n"
            "4. Prefer a short correct answer to a long answer with a mistake.\n"
            "5. If two answers are truly equally good, and ties are enabled for this project, place them "
            "level; otherwise pick the one you would rather receive.\n"
            "6. Use the comment box for anything a reviewer should know about your decision."
        ),
        "all_bad": "- **All answers are bad**: still rank them; the least bad goes first.\n",
        "unusable_place": (
            "Still place it in the ranking: flagged answers are ranked below all others and never used as "
            "an example of a good answer."
        ),
    }

    def answer_schema(self) -> Any:
        return list[list[StrictInt]]

    def check(self, answer: Any, ids: list[int], allow_ties: bool) -> list[list[int]]:
        if not isinstance(answer, list) or not answer:
            raise TaskRefused(422, "ranking must be a non-empty list of tiers, best first, e.g. [[12], [10], [13]]")
        tiers: list[list[int]] = []
        for position, tier in enumerate(answer):
            if (
                not isinstance(tier, list)
                or not tier
                or not all(isinstance(c, int) and not isinstance(c, bool) for c in tier)
            ):
                raise TaskRefused(422, f"ranking tier {position} must be a non-empty list of completion ids")
            if len(tier) > 1 and not allow_ties:
                raise TaskRefused(
                    422, f"ranking tier {position} places {tier} level, but this project does not allow ties"
                )
            tiers.append(list(tier))
        flat = [c for tier in tiers for c in tier]
        expected = set(ids)
        duplicates = sorted(c for c, n in Counter(flat).items() if n > 1)
        if duplicates:
            raise TaskRefused(422, f"ranking places completion(s) {duplicates} more than once")
        unknown = sorted(set(flat) - expected)
        if unknown:
            raise TaskRefused(
                422, f"ranking names completion(s) {unknown} that are not part of this task {sorted(expected)}"
            )
        missing = sorted(expected - set(flat))
        if missing:
            raise TaskRefused(422, f"ranking leaves out completion(s) {missing}; rank all of {sorted(expected)}")
        return tiers

    def tiers(self, stored: Any, ids: list[int]) -> list[list[int]]:
        return [[int(c) for c in tier] for tier in (stored or [])]

    def simulate(self, scores: Sequence[float], ids: list[int], labeler: LabelerPolicy) -> list[list[int]]:
        tiers = simulated_tiers(scores, labeler.noise, labeler.rng, labeler.misreader, labeler.allow_ties)
        return [[ids[k] for k in tier] for tier in tiers]


class Pairwise(Ranking):
    """The blind two-answer task of evaluation rounds, answered as a ranking of two."""

    name = "pairwise"
    title = "Which answer is better?"
    description = "the better of two answers (blind evaluation rounds)"
    for_training = False
    position_bias = False


class Thumbs(TaskType):
    name = "thumbs"
    title = "Thumbs up or down for each answer"
    description = "thumbs up or down for each completion"
    answer_field = "thumbs"
    answer_help = "Completion id → 1 (up) or -1 (down), for every completion."
    column = "thumbs"
    template = "tasks/thumbs.html"
    interaction = "choice"
    min_completions = 1  # each answer is judged on its own
    guidelines = {
        "instructions": (
            "1. Read the prompt first and decide what a good answer would do.\n"
            "2. Read every answer completely before you judge.\n"
            "3. Give each answer a thumbs up if you would be glad to receive it as it is, and a thumbs down "
            "otherwise. Use the buttons, or press the answer's number and then `u` or `d`; press Enter to submit.\n"
            "4. Judge each answer on its own: several answers, or none, may deserve a thumbs up.\n"
            "5. Prefer a short correct answer to a long answer with a mistake.\n"
            "6. Use the comment box for anything a reviewer should know about your decision."
        ),
        "all_bad": "- **All answers are bad**: give them all a thumbs down.\n",
        "unusable_place": (
            "Still give it a thumb (down): flagged answers are never used as an example of a good answer."
        ),
    }

    def answer_schema(self) -> Any:
        return dict[int, Literal[1, -1]]

    def check(self, answer: Any, ids: list[int], allow_ties: bool) -> dict[str, int]:
        if not isinstance(answer, dict) or not answer:
            raise TaskRefused(422, "thumbs must map every completion id to 1 (up) or -1 (down)")
        checked: dict[str, int] = {}
        for key, value in answer.items():
            cid = completion_key(key, ids, "thumbs")
            if value not in (1, -1) or isinstance(value, bool):
                raise TaskRefused(422, f"thumbs for completion {cid} must be 1 (up) or -1 (down), not {value!r}")
            checked[str(cid)] = int(value)
        missing = sorted(set(ids) - {int(k) for k in checked})
        if missing:
            raise TaskRefused(422, f"thumbs leave out completion(s) {missing}; give one for each of {sorted(ids)}")
        return checked

    def votes(self, stored: Any) -> dict[int, int]:
        return {int(c): int(v) for c, v in (stored or {}).items()}

    def tiers(self, stored: Any, ids: list[int]) -> list[list[int]]:
        """Every thumbs-up above every thumbs-down."""
        votes = self.votes(stored)
        tiers = [[c for c in ids if votes.get(c, 0) > 0], [c for c in ids if votes.get(c, 0) <= 0]]
        return [t for t in tiers if t]

    def simulate(self, scores: Sequence[float], ids: list[int], labeler: LabelerPolicy) -> dict[int, int]:
        return dict(zip(ids, simulated_thumbs(scores, labeler.noise, labeler.rng, misreader=labeler.misreader)))


TASK_TYPES.register(Ranking())
TASK_TYPES.register(Thumbs())
TASK_TYPES.register(Pairwise())
