"""A project: a directory holding ``alignloop.yaml``, its feedback store and its runs."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlalchemy import select
from sqlalchemy.orm import Session

from alignloop.config import PROJECT_FILE, ProjectConfig, dump_config, load_config, validate_config
from alignloop.errors import AlignloopError
from alignloop.store import Project, Round, Store, open_store


@dataclass
class ProjectHandle:
    """An opened project. ``project_id`` is the row of this project in the store.

    A context manager: ``with open_project(path) as handle:`` closes the store on the way out.
    """

    dir: Path
    config: ProjectConfig
    store: Store
    project_id: int

    @property
    def runs_dir(self) -> Path:
        return self.dir / "runs"

    def current_round(self, session: Session) -> Round:
        """The newest training round, created (index 0, the configured policy) if there is none."""
        found = Round.newest(session, self.project_id, "train")
        if found is not None:
            return found
        return Round.append(session, self.project_id, "train", self.config.generate.model)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ProjectHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _sync_project_row(store: Store, config: ProjectConfig) -> int:
    with store.session() as s:
        row = s.scalars(select(Project).where(Project.name == config.name)).first()
        settings = config.labeling.model_dump()
        if row is None:
            row = Project(name=config.name, settings=settings)
            s.add(row)
        else:
            row.settings = settings
        s.flush()
        return row.id


def init_project(
    directory: str | Path, name: str | None = None, database: str | None = None, task_type: str | None = None
) -> ProjectHandle:
    """Create ``directory`` with ``alignloop.yaml`` and an empty, migrated store; ``task_type`` sets
    ``labeling.task_type`` (one of ``alignloop.task_types.TASK_TYPES`` offered for training)."""
    directory = Path(directory)
    config_path = directory / PROJECT_FILE
    if config_path.exists():
        raise AlignloopError(f"{config_path} already exists; open the project instead of initialising it again")
    fields: dict = {"name": name or directory.resolve().name}
    if database:
        fields["database"] = database
    if task_type:
        fields["labeling"] = {"task_type": task_type}
    config = validate_config(ProjectConfig, fields)
    before = set(directory.iterdir()) if directory.is_dir() else None
    topmost_new = directory  # the outermost directory this call creates, removed again on failure
    while not topmost_new.parent.exists():
        topmost_new = topmost_new.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        store = open_store(config.database, directory, create=True)
        try:
            dump_config(config, config_path)
            # What a project keeps beside its config that must not be shared: the store, the secret, model copies.
            (directory / ".gitignore").write_text(
                "*.db\n*.db-*\n*.writer-lock\n.labeling-secret\n.tiny/\n", encoding="utf-8"
            )
            return ProjectHandle(directory, config, store, _sync_project_row(store, config))
        except BaseException:
            store.close()
            raise
    except BaseException:  # a failed init leaves the directory as it found it
        if before is None:
            shutil.rmtree(topmost_new, ignore_errors=True)
        else:
            for path in set(directory.iterdir()) - before:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def open_project(directory: str | Path = ".") -> ProjectHandle:
    """Open an existing project, validating its config and migrating its store."""
    directory = Path(directory)
    config_path = directory / PROJECT_FILE
    if not config_path.exists():
        raise AlignloopError(f"no {PROJECT_FILE} in {directory}; create a project with `alignloop init {directory}`")
    config = load_config(ProjectConfig, config_path)
    store = open_store(config.database, directory)
    return ProjectHandle(directory, config, store, _sync_project_row(store, config))
