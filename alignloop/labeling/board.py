"""An in-process index of open slots, so claiming a task does not scan the whole project.

Finding "the least-judged open prompt" exactly in SQL aggregates every completion
and assignment of the project: about 5 ms per claim at a thousand prompts, which
caps a server at a few hundred claims per second on its own. ``SlotBoard`` keeps,
per server process, each slot's live count in buckets (count 0, 1, ... overlap-1),
refreshed from the database every ``refresh_s`` seconds (less often on big
projects, so that refreshing takes at most 5% of the time) and updated by this
process's own claims and skips in between.

The board only *proposes* candidates. The claim itself still runs in the write
transaction and re-checks the candidate against the database (its live count is
below the overlap, the labeler never had it), so the overlap holds exactly even
when several workers each have a slightly stale board; staleness can only make the
order of tasks "least-judged within a few seconds". When the board has nothing for
a labeler, the caller falls back to the exact SQL query before saying the queue is empty.

With ``by_priority`` (``labeling.assignment: uncertainty``) the board also loads the
``prompt_priorities`` that ``alignloop prioritize`` stored, at each refresh, and proposes
scored open slots first, highest priority first (equal priorities least-judged first);
unscored slots follow in the usual order.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Select, and_, func, or_, select

from alignloop.store import LABELING_ROUND_KINDS, Assignment, Completion, PromptPriority, Round

Slot = tuple[int, int]  # (round_id, prompt_id)


def task_slots(project_id: int) -> Select[tuple[int, int]]:
    """The project's slots: (round_id, prompt_id) of each prompt of its labeling rounds that has at least
    two completions (a single completion has nothing to compare)."""
    return (
        select(Completion.round_id, Completion.prompt_id)
        .join(Round, Round.id == Completion.round_id)
        .where(Round.project_id == project_id, Round.kind.in_(LABELING_ROUND_KINDS))
        .group_by(Completion.round_id, Completion.prompt_id)
        .having(func.count() >= 2)
    )


def holds_slot(now: datetime) -> ColumnElement[bool]:
    """An assignment that counts toward its slot's overlap: submitted, or leased and the lease live at ``now``."""
    return or_(Assignment.status == "submitted", and_(Assignment.status == "leased", Assignment.lease_expires_at > now))


class SlotBoard:
    """Live counts of open slots, bucketed by count, plus the slots each labeler has taken."""

    def __init__(self, project_id: int, overlap: int, refresh_s: float = 2.0, *, by_priority: bool = False) -> None:
        self.project_id = project_id
        self.overlap = overlap
        self.by_priority = by_priority
        # Scored slots in groups of equal priority, highest group first (empty unless by_priority).
        self._ranked: list[list[Slot]] = []
        self._scored: frozenset[Slot] = frozenset()
        self.refresh_s = refresh_s
        self._lock = threading.RLock()
        self._loaded_at = float("-inf")
        self._interval = refresh_s
        self._count: dict[Slot, int] = {}
        # One sorted list per count level: (round, prompt) order, the exact query's, so the order of candidates
        # does not depend on when the board last reloaded and a seeded run repeats.
        self._buckets: list[list[Slot]] = [[] for _ in range(overlap)]
        self._taken: dict[int, set[Slot]] = {}

    def invalidate(self) -> None:
        """Reload on the next claim (after this process learned the board is wrong)."""
        self._loaded_at = float("-inf")

    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at > self._interval

    def refresh(self, conn: Connection, now: datetime) -> None:
        """Reload every slot's live count from the database (two aggregate queries)."""
        started = time.monotonic()
        slots = conn.execute(task_slots(self.project_id).order_by(Completion.round_id, Completion.prompt_id)).all()
        counts = dict(
            ((r, p), n)
            for r, p, n in conn.execute(
                select(Assignment.round_id, Assignment.prompt_id, func.count())
                .where(holds_slot(now))
                .group_by(Assignment.round_id, Assignment.prompt_id)
            )
        )
        ranked: list[list[Slot]] = []
        if self.by_priority:
            known = set(slots)
            last = None
            for round_id, prompt_id, priority in conn.execute(
                select(PromptPriority.round_id, PromptPriority.prompt_id, PromptPriority.priority)
                .join(Round, Round.id == PromptPriority.round_id)
                .where(Round.project_id == self.project_id)
                .order_by(PromptPriority.priority.desc(), PromptPriority.round_id, PromptPriority.prompt_id)
            ):
                if (round_id, prompt_id) not in known:
                    continue
                if priority != last:
                    ranked.append([])
                    last = priority
                ranked[-1].append((round_id, prompt_id))
        with self._lock:
            self._count = {}
            self._buckets = [[] for _ in range(self.overlap)]
            self._ranked = ranked
            self._scored = frozenset(slot for group in ranked for slot in group)
            for round_id, prompt_id in slots:
                self._set((round_id, prompt_id), counts.get((round_id, prompt_id), 0))
            self._taken = {}
            self._loaded_at = time.monotonic()
            self._interval = max(self.refresh_s, 20 * (self._loaded_at - started))

    def _set(self, slot: Slot, count: int) -> None:
        old = self._count.get(slot)
        if old is not None and old < self.overlap:
            level = self._buckets[old]
            at = bisect.bisect_left(level, slot)
            if at < len(level) and level[at] == slot:
                del level[at]
        self._count[slot] = count
        if count < self.overlap:
            bisect.insort(self._buckets[count], slot)

    def set_count(self, slot: Slot, count: int) -> None:
        """Record a slot's true live count (after the database disagreed with the board)."""
        with self._lock:
            self._set(slot, count)

    def add(self, slot: Slot, delta: int) -> None:
        """A claim (+1) or a skip (-1) made by this process."""
        with self._lock:
            if slot in self._count:
                self._set(slot, max(0, self._count[slot] + delta))

    def taken_by(self, labeler_id: int) -> set[Slot] | None:
        """Slots this labeler has held or judged (None until loaded for this board generation)."""
        return self._taken.get(labeler_id)

    def set_taken(self, labeler_id: int, slots: set[Slot]) -> None:
        with self._lock:
            self._taken[labeler_id] = slots

    def mark_taken(self, labeler_id: int, slot: Slot) -> None:
        with self._lock:
            if labeler_id in self._taken:
                self._taken[labeler_id].add(slot)

    def candidates(self, labeler_id: int) -> Iterator[Slot]:
        """Open slots the labeler has not taken, least live count first, then in (round, prompt) order (a snapshot;
        safe to mutate while iterating).

        With ``by_priority``, the scored slots come first, highest priority first, then the rest.
        """
        taken = self._taken.get(labeler_id, set())
        with self._lock:
            levels = [list(bucket) for bucket in self._buckets]
            ranked, scored, counts = self._ranked, self._scored, self._count
        for group in ranked:
            live = sorted((counts[slot], i) for i, slot in enumerate(group) if slot not in taken)
            for count, i in live:
                if count < self.overlap:
                    yield group[i]
        for level in levels:
            for slot in level:
                if slot not in taken and slot not in scored:
                    yield slot
