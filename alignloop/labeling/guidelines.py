"""Versioned labeling guidelines: task and criterion, instructions, edge cases, unusable answers.

Editing never changes a version: it adds the next one. A project without any
version gets a default version 1 written for its ``labeling.criterion``. Labelers
acknowledge a version before their first task (and again after each edit); every
judgement records the version its labeler had acknowledged.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime

import markdown as md
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alignloop.errors import InputError
from alignloop.store import GuidelineVersion, Labeler
from alignloop.task_types import TASK_TYPES

SECTIONS = ("task", "instructions", "edge_cases", "unusable")
SECTION_TITLES = {
    "task": "The task and the criterion",
    "instructions": "Instructions",
    "edge_cases": "Edge cases",
    "unusable": "Unusable answers",
}

_CRITERIA = {
    "helpfulness": (
        "how well each answer helps the person who wrote the prompt: it does what was asked, "
        "is correct, complete where it matters, and clear"
    ),
    "harmlessness": (
        "how safe each answer is: it avoids harmful, dangerous, deceptive or hateful content, "
        "and declines clearly harmful requests politely while still helping with what is safe"
    ),
    "honesty": (
        "how truthful each answer is: correct facts, no invented details, and uncertainty "
        "admitted where the answer is not known"
    ),
}


@dataclass
class Guidelines:
    """One version of a project's guidelines (Markdown sections)."""

    id: int
    version: int
    task: str
    instructions: str
    edge_cases: str
    unusable: str
    author: str | None
    created_at: datetime

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "version": self.version,
            **{name: getattr(self, name) for name in SECTIONS},
            "author": self.author,
            "created_at": self.created_at.isoformat(),
        }

    def rendered(self) -> dict[str, str]:
        """Each section as HTML. Raw HTML in the Markdown is escaped, so guidelines cannot inject scripts."""
        return {name: render_markdown(getattr(self, name)) for name in SECTIONS}


_LINK = re.compile(r'\b(href|src)="([^"]*)"')
_SAFE_URL = re.compile(r"(https?://|mailto:|/|#|\.{0,2}/|[^:/?#]*($|[/?#]))", re.IGNORECASE)


def _safe_link(match: re.Match[str]) -> str:
    url = html.unescape(match.group(2)).strip()
    return match.group(0) if _SAFE_URL.match(url) else f'{match.group(1)}="#"'


def render_markdown(text: str) -> str:
    """Markdown → HTML with raw HTML escaped and links limited to http(s), mailto and relative URLs
    (``javascript:`` and ``data:`` links are rendered pointing nowhere)."""
    return _LINK.sub(_safe_link, md.markdown(html.escape(text, quote=False), extensions=["sane_lists"]))


def default_sections(criterion: str, task_type: str = "ranking") -> dict[str, str]:
    """Version 1 for a project judged on ``criterion`` with ``task_type`` tasks: a complete, usable start
    (the steps that depend on the task type are its ``guidelines`` wording)."""
    wording = TASK_TYPES[task_type].guidelines
    meaning = _CRITERIA.get(criterion.lower(), f"how good each answer is with respect to **{criterion}**")
    return {
        "task": (
            f"You will see a prompt and several answers written by an AI model. Judge **{criterion}**: "
            f"{meaning}.\n\nYour judgements teach the model what a better answer looks like, so judge the "
            "answers themselves, not how long they are or where they appear on the page."
        ),
        "instructions": wording["instructions"],
        "edge_cases": (
            "- **The prompt is unclear**: judge how sensibly each answer interprets it; an answer that "
            "asks a useful clarifying question can be the best one.\n"
            + wording["all_bad"]
            + "- **Answers are cut off**: judge what is there; an answer that stops mid-sentence is worse "
            "than an equally good complete one.\n"
            "- **You lack the knowledge to judge**: skip the task and say why."
        ),
        "unusable": (
            "Flag an answer as unusable when it is **harmful** (dangerous, hateful, or harassing), "
            "**nonsense** (not language, or unrelated to the prompt), or contains **PII** (real personal "
            "data such as addresses or phone numbers). " + wording["unusable_place"]
        ),
    }


def _to_guidelines(row: GuidelineVersion, author: str | None) -> Guidelines:
    return Guidelines(
        id=row.id,
        version=row.version,
        task=row.task,
        instructions=row.instructions,
        edge_cases=row.edge_cases,
        unusable=row.unusable,
        author=author,
        created_at=row.created_at,
    )


def _author_name(session: Session, author_id: int | None) -> str | None:
    author = session.get(Labeler, author_id) if author_id else None
    return author.name if author else None


def current_guidelines(session: Session, project_id: int, criterion: str, task_type: str = "ranking") -> Guidelines:
    """The newest version, creating the default version 1 when the project has none."""
    row = session.scalars(
        select(GuidelineVersion)
        .where(GuidelineVersion.project_id == project_id)
        .order_by(GuidelineVersion.version.desc())
        .limit(1)
    ).first()
    if row is None:
        row = GuidelineVersion(project_id=project_id, version=1, **default_sections(criterion, task_type))
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another worker created version 1 at the same moment
            return current_guidelines(session, project_id, criterion, task_type)
    return _to_guidelines(row, _author_name(session, row.author_id))


def guideline_history(session: Session, project_id: int) -> list[Guidelines]:
    """Every version, newest first."""
    rows = session.execute(
        select(GuidelineVersion, Labeler.name)
        .outerjoin(Labeler, Labeler.id == GuidelineVersion.author_id)
        .where(GuidelineVersion.project_id == project_id)
        .order_by(GuidelineVersion.version.desc())
    ).all()
    return [_to_guidelines(row, author) for row, author in rows]


def add_guideline_version(
    session: Session, project_id: int, sections: dict[str, str], author_id: int | None
) -> Guidelines:
    """Store the next version. Every section must be present and non-empty."""
    missing = [name for name in SECTIONS if not (sections.get(name) or "").strip()]
    if missing:
        raise InputError(f"every guideline section needs text; empty: {', '.join(missing)}", field=missing[0])
    newest = session.scalar(select(func.max(GuidelineVersion.version)).where(GuidelineVersion.project_id == project_id))
    row = GuidelineVersion(
        project_id=project_id,
        version=(newest or 0) + 1,
        author_id=author_id,
        **{name: sections[name].strip() for name in SECTIONS},
    )
    session.add(row)
    session.flush()
    return _to_guidelines(row, _author_name(session, author_id))
