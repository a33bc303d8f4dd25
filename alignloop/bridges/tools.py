"""The labeling tools alignloop exchanges tasks with: each one ``LabelingTool`` in ``TOOLS``.

Import-light (the tools' readers and writers need only the standard library), so the CLI's
``--format`` help reads the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alignloop.bridges import argilla, label_studio
from alignloop.bridges.tasks import ExternalTask, TaskKeys
from alignloop.registry import Registry


@dataclass(frozen=True)
class LabelingTool:
    """One labeling tool: its annotated export read as tasks, and open tasks written in its import format."""

    name: str  # the `--format` value, and the policy of the rounds its files become (`imported:NAME`)
    read_tasks: Callable[[Path, TaskKeys], list[ExternalTask]]
    write_tasks: Callable[[list[ExternalTask], Path, TaskKeys], None]


TOOLS: Registry[LabelingTool] = Registry("format")
TOOLS.register(LabelingTool(label_studio.NAME, label_studio.read_tasks, label_studio.write_tasks))
TOOLS.register(LabelingTool(argilla.NAME, argilla.read_tasks, argilla.write_tasks))
