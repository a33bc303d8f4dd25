"""The feedback store: SQLite by default (WAL), PostgreSQL by URL; schema via Alembic migrations."""

from alignloop.store.db import Store, open_store
from alignloop.store.models import (
    LABELING_ROUND_KINDS,
    TRAINING_ROUND_KINDS,
    Assignment,
    Base,
    Completion,
    GuidelineVersion,
    Judgement,
    Labeler,
    LabelerSession,
    Project,
    Prompt,
    PromptPriority,
    Round,
)

__all__ = [
    "LABELING_ROUND_KINDS",
    "TRAINING_ROUND_KINDS",
    "Assignment",
    "Base",
    "Completion",
    "GuidelineVersion",
    "Judgement",
    "Labeler",
    "LabelerSession",
    "Project",
    "Prompt",
    "PromptPriority",
    "Round",
    "Store",
    "open_store",
]
