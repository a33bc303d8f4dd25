"""Documentation is part of the product: every command, option and config key is documented."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

import alignloop
from alignloop.cli import app
from alignloop.config import StageConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _commands(group: Any, prefix: str = "alignloop") -> list[tuple[str, Any]]:
    """Every leaf command of the (Typer-vendored) click tree, with its full name."""
    found = []
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            found.extend(_commands(command, f"{prefix} {name}"))
    else:
        found.append((prefix, group))
    return found


def _sections(text: str) -> dict[str, str]:
    """Markdown ``## title`` → body."""
    parts = re.split(r"^## +(.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def test_every_cli_command_and_option_is_in_the_command_reference() -> None:
    sections = _sections((DOCS / "cli.md").read_text())
    missing = []
    for path, command in _commands(typer.main.get_command(app)):
        if path not in sections:
            missing.append(f"section `## {path}`")
            continue
        for param in command.params:
            if param.param_type_name == "option":
                names = [o for o in param.opts if o.startswith("--")] or param.opts
                if not any(f"`{name}`" in sections[path] for name in names):
                    missing.append(f"{path}: {names[0]}")
    assert not missing, "undocumented in docs/cli.md: " + ", ".join(missing)


def _all_config_models() -> set[type[StageConfig]]:
    for module in pkgutil.walk_packages(alignloop.__path__, "alignloop."):
        if ".migrations" in module.name or module.name.endswith("__main__"):
            continue
        importlib.import_module(module.name)
    seen: set[type[StageConfig]] = set()
    todo = list(StageConfig.__subclasses__())
    while todo:
        model = todo.pop()
        if model not in seen:
            seen.add(model)
            todo.extend(model.__subclasses__())
    return seen


def test_every_config_field_is_in_the_config_reference() -> None:
    text = (DOCS / "config.md").read_text()
    missing = []
    for model in sorted(_all_config_models(), key=lambda m: m.__name__):
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{model.__name__}.{name} has no help text")
            if not re.search(rf"`([\w.]+\.)?{re.escape(name)}`", text):
                missing.append(f"{model.__name__}.{name}")
    assert not missing, "undocumented config fields: " + ", ".join(missing)


def test_help_is_instant_because_heavy_libraries_load_lazily() -> None:
    """What makes ``--help`` instant is that it imports neither torch nor transformers; that is checked,
    not a wall-clock bound, which a loaded machine breaks."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['alignloop', '--help']\n"
        "try:\n"
        "    runpy.run_module('alignloop', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "generate" in result.stdout
    assert result.stderr.split() == ["False", "False"]


@pytest.mark.parametrize("page", ["architecture.md", "cli.md", "config.md", "benchmarks.md"])
def test_documentation_pages_exist(page: str) -> None:
    assert (DOCS / page).read_text().strip()
