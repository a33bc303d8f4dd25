"""Engines, sessions and migrations for the feedback store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from alignloop.errors import AlignloopError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS = Path(__file__).parent / "migrations"


def resolve_url(url: str, base_dir: str | Path | None = None) -> str:
    """Make a relative SQLite path relative to ``base_dir`` (the project directory)."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return str(parsed.set(database=str(path.resolve())))
    return url


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at every commit in WAL mode except on power loss
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine with the settings the store relies on (WAL and foreign keys for SQLite)."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername in ("postgresql", "postgres"):
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _alembic_config(url: str) -> Config:  # alembic is imported lazily
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates it on an empty database)."""
    from alembic import command

    cfg = _alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_is_current(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(_alembic_config(str(engine.url))).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads


@contextmanager
def commit_or_rollback(transaction: Session | Connection) -> Iterator[None]:
    """Commit ``transaction`` when the block ends normally; on any exception, Ctrl-C included, roll it back
    (a half-done write is never committed) and re-raise."""
    try:
        yield
        transaction.commit()
    except BaseException:
        transaction.rollback()
        raise


class Store:
    """A handle on one database: ``with store.session() as s: ...`` commits on success."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, commit_or_rollback(session):
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str, base_dir: str | Path | None = None, *, create: bool = False) -> Store:
    """Open the store at ``url``, migrating it to the current schema.

    ``create=False`` refuses a SQLite file that does not exist yet, so a mistyped
    path is an error instead of a new empty database.
    """
    try:
        url = resolve_url(url, base_dir)
        parsed = make_url(url)
    except ArgumentError:
        raise AlignloopError(
            f"{url!r} is not a database URL (expected sqlite:///FILE or postgresql://USER@HOST/DB)"
        ) from None
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not create and not path.exists():
            raise AlignloopError(f"no database at {path}; run `alignloop init` first")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = make_engine(url)
    except (ImportError, NoSuchModuleError) as exc:  # a dialect or driver that is not installed
        raise AlignloopError(
            f"cannot open the feedback store at {parsed.render_as_string()}: unsupported database "
            f"({exc}); use SQLite or PostgreSQL"
        ) from None
    try:
        if not inspect(engine).has_table("alembic_version") or not schema_is_current(engine):
            migrate(engine)
    except Exception as exc:
        if isinstance(exc, AlignloopError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AlignloopError(f"cannot open the feedback store at {parsed.render_as_string()}: {first}") from exc
    return Store(engine)
