"""The feedback store on SQLite and PostgreSQL: migrations, round trips, append-only judgements."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError

from alignloop.errors import AlignloopError
from alignloop.store import (
    Assignment,
    Completion,
    GuidelineVersion,
    Judgement,
    Labeler,
    Project,
    Prompt,
    Round,
    open_store,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("fresh_postgres_url")


def _fill(store) -> int:
    """One row in every table; returns the judgement id."""
    with store.session() as s:
        project = Project(name="p", settings={"overlap": 3})
        s.add(project)
        s.flush()
        rnd = Round(project_id=project.id, index=0, policy="default", metrics={})
        prompt = Prompt(project_id=project.id, text="Hi?", messages=None, text_hash="h", split="train")
        s.add_all([rnd, prompt])
        # A Core insert names only these columns, so _fill also works on older schemas (the migration tests).
        labeler_id = s.execute(insert(Labeler).values(name="ann", role="labeler").returning(Labeler.id)).scalar_one()
        s.flush()
        guide = GuidelineVersion(
            project_id=project.id, version=1, task="t", instructions="i", edge_cases="e", unusable="u"
        )
        completions = [
            Completion(
                prompt_id=prompt.id,
                round_id=rnd.id,
                sample_index=i,
                text=f"answer {i}",
                model="default",
                seed=i,
                params={"temperature": 0.9},
                prompt_tokens=5,
                completion_tokens=3,
                finish_reason="stop",
            )
            for i in range(2)
        ]
        s.add(guide)
        s.add_all(completions)
        s.flush()
        assignment = Assignment(
            prompt_id=prompt.id,
            round_id=rnd.id,
            labeler_id=labeler_id,
            task_type="ranking",
            display_order=[c.id for c in reversed(completions)],
            lease_expires_at=datetime.now(timezone.utc) + timedelta(minutes=30),
        )
        s.add(assignment)
        s.flush()
        judgement = Judgement(
            assignment_id=assignment.id,
            labeler_id=labeler_id,
            prompt_id=prompt.id,
            round_id=rnd.id,
            kind="ranking",
            ranking=[[completions[1].id], [completions[0].id]],
            unusable={},
            guideline_version_id=guide.id,
            seconds_spent=12.5,
            idempotency_key="k1",
        )
        s.add(judgement)
        s.flush()
        return judgement.id


def test_every_table_round_trips(store_url: str) -> None:
    store = open_store(store_url, create=True)
    judgement_id = _fill(store)
    with store.session() as s:
        judgement = s.get(Judgement, judgement_id)
        assert judgement.ranking == [[2], [1]]
        assert judgement.seconds_spent == 12.5
        assert s.scalars(select(Assignment)).one().display_order == [2, 1]
        assert s.scalars(select(Completion).order_by(Completion.id)).first().params == {"temperature": 0.9}
        assert s.scalars(select(Project)).one().settings == {"overlap": 3}
    store.close()


def test_judgements_refuse_update_and_delete(store_url: str) -> None:
    store = open_store(store_url, create=True)
    judgement_id = _fill(store)
    for statement in (
        f"UPDATE judgements SET comment = 'changed' WHERE id = {judgement_id}",
        f"DELETE FROM judgements WHERE id = {judgement_id}",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(text(statement))
    with store.session() as s:
        assert s.get(Judgement, judgement_id).comment is None
    store.close()


def test_a_correction_is_a_new_judgement_that_names_the_old_one(store_url: str) -> None:
    store = open_store(store_url, create=True)
    first = _fill(store)
    with store.session() as s:
        old = s.get(Judgement, first)
        s.add(
            Judgement(
                assignment_id=old.assignment_id,
                labeler_id=old.labeler_id,
                prompt_id=old.prompt_id,
                round_id=old.round_id,
                kind="ranking",
                ranking=list(reversed(old.ranking)),
                unusable={},
                idempotency_key="k2",
                supersedes_id=old.id,
            )
        )
    with store.session() as s:
        rows = s.scalars(select(Judgement).order_by(Judgement.id)).all()
        assert [r.supersedes_id for r in rows] == [None, first]
    store.close()


def test_duplicate_idempotency_key_is_refused_by_the_database(store_url: str) -> None:
    from sqlalchemy.exc import IntegrityError

    store = open_store(store_url, create=True)
    first = _fill(store)
    with pytest.raises(IntegrityError):
        with store.session() as s:
            old = s.get(Judgement, first)
            s.add(
                Judgement(
                    assignment_id=old.assignment_id,
                    labeler_id=old.labeler_id,
                    prompt_id=old.prompt_id,
                    round_id=old.round_id,
                    kind="skip",
                    unusable={},
                    idempotency_key="k1",
                )
            )
    store.close()


def test_sqlite_store_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}", create=True)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    store.close()


def test_opening_a_missing_sqlite_file_is_refused_not_created(tmp_path: Path) -> None:
    with pytest.raises(AlignloopError, match="alignloop init"):
        open_store(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()


def test_migrations_reach_head_and_reopening_is_idempotent(tmp_path: Path) -> None:
    from alignloop.store.db import schema_is_current

    url = f"sqlite:///{tmp_path / 'm.db'}"
    store = open_store(url, create=True)
    assert schema_is_current(store.engine)
    store.close()
    again = open_store(url)
    assert schema_is_current(again.engine)
    again.close()


def test_migration_0003_keeps_judgements_corrections_and_the_append_only_rule(store_url: str) -> None:
    from alembic import command

    from alignloop.store.db import _alembic_config, migrate

    store = open_store(store_url, create=True)  # the newest schema; then back to 0002 (tests the downgrade too)
    cfg = _alembic_config(store_url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    first = _fill(store)
    with store.session() as s:
        old = s.get(Judgement, first)
        s.add(
            Judgement(
                assignment_id=old.assignment_id,
                labeler_id=old.labeler_id,
                prompt_id=old.prompt_id,
                round_id=old.round_id,
                kind="skip",
                unusable={},
                idempotency_key="k2",
                supersedes_id=old.id,
            )
        )
    migrate(store.engine)
    with store.engine.begin() as conn:
        rows = conn.execute(text("SELECT idempotency_key, supersedes_id FROM judgements ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("k1", None), ("k2", first)]
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM judgements"))
    store.close()


def test_prompt_priorities_round_trip_and_migration_0005_downgrades(store_url: str) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from alignloop.store import PromptPriority
    from alignloop.store.db import _alembic_config, migrate

    store = open_store(store_url, create=True)
    _fill(store)
    with store.session() as s:
        rnd, prompt = s.scalars(select(Round)).one(), s.scalars(select(Prompt)).one()
        s.add(PromptPriority(round_id=rnd.id, prompt_id=prompt.id, priority=0.93, reward_model="runs/reward-1"))
    with store.session() as s:
        row = s.scalars(select(PromptPriority)).one()
        assert (row.priority, row.reward_model) == (0.93, "runs/reward-1")
    cfg = _alembic_config(store_url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    assert not inspect(store.engine).has_table("prompt_priorities")
    migrate(store.engine)
    assert inspect(store.engine).has_table("prompt_priorities")
    store.close()
