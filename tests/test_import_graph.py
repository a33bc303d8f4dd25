"""The allowed import graph: the contracts in pyproject.toml's ``[tool.importlinter]``.

No import cycles; the labeling web layer never reaches torch; the CLI, demo and API sit on
top; stages share code only through the shared modules or the imports declared there. A
broken contract prints the offending chain of imports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold() -> None:
    """``lint-imports`` on this checkout (run from its root, so the graph is of this ``alignloop``)."""
    check = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_web_layer_loads_without_torch() -> None:
    """At run time too: importing every labeling module (and the packages above them) loads no torch."""
    probe = (
        "import pkgutil, importlib, sys, alignloop.labeling as web\n"
        "for m in pkgutil.iter_modules(web.__path__): importlib.import_module(f'alignloop.labeling.{m.name}')\n"
        "print(sorted(n for n in ('torch', 'transformers', 'peft', 'accelerate') if n in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
