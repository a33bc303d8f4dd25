"""The CLI: errors are one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignloop", *args], capture_output=True, text=True, cwd=cwd)


def test_init_add_and_list_prompts_from_the_command_line(tmp_path: Path) -> None:
    assert _run("init", str(tmp_path / "p")).returncode == 0
    (tmp_path / "x.jsonl").write_text(json.dumps({"prompt": "Say hi."}) + "\n")
    added = _run("prompts", "add", str(tmp_path / "x.jsonl"), "--project", str(tmp_path / "p"))
    assert added.returncode == 0, added.stderr
    assert "added 1 prompts" in added.stderr
    listed = _run("prompts", "list", "--project", str(tmp_path / "p"))
    assert "Say hi." in listed.stdout


def test_bad_input_is_one_line_naming_file_line_and_field_with_exit_1(tmp_path: Path) -> None:
    _run("init", str(tmp_path / "p"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    result = _run("prompts", "add", str(bad), "--project", str(tmp_path / "p"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{bad}:2: prompt: is empty" in " ".join(result.stderr.split())


def test_unknown_config_key_is_refused_by_every_command(tmp_path: Path) -> None:
    _run("init", str(tmp_path / "p"))
    config = tmp_path / "p" / "alignloop.yaml"
    config.write_text(config.read_text() + "colour: blue\n")
    result = _run("prompts", "list", "--project", str(tmp_path / "p"))
    assert result.returncode == 1
    assert "colour: unknown key" in result.stderr


def test_missing_project_says_how_to_create_one(tmp_path: Path) -> None:
    result = _run("generate", "--project", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "alignloop init" in result.stderr
