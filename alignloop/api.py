"""The Python API: one function per CLI command, same names and arguments.

    from alignloop import api
    api.init("myproj")
    api.add_prompts("myproj", builtin=True)
    api.generate("myproj", k=4)

Each function imports its stage lazily, so ``import alignloop.api`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from alignloop.project import ProjectHandle, init_project


def init(directory: str | Path, *, name: str | None = None, database: str | None = None) -> ProjectHandle:
    """Create a project directory with ``alignloop.yaml`` and a migrated store."""
    return init_project(directory, name=name, database=database)
