"""The project file: typed, documented, and strict about unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignloop.config import ProjectConfig, load_config
from alignloop.errors import AlignloopError, ConfigError
from alignloop.project import init_project, open_project


def test_init_writes_every_key_with_its_default(project_dir: Path) -> None:
    config = load_config(ProjectConfig, project_dir / "alignloop.yaml")
    assert config.name == "test-project"
    assert config.labeling.overlap == 3
    assert (project_dir / "alignloop.db").exists()


def test_init_refuses_an_existing_project(project_dir: Path) -> None:
    with pytest.raises(AlignloopError, match="already exists"):
        init_project(project_dir)


def test_unknown_key_is_an_error_naming_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "alignloop.yaml"
    path.write_text("name: x\ngenerate:\n  k: 4\n  temprature: 0.7\n")
    with pytest.raises(ConfigError) as err:
        load_config(ProjectConfig, path)
    message = str(err.value)
    assert f"{path}:4" in message
    assert "generate.temprature: unknown key" in message
    assert "temperature" in message  # the known keys are listed


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "alignloop.yaml"
    path.write_text("name: x\nlabeling:\n  overlap: many\n")
    with pytest.raises(ConfigError, match=r":3: labeling.overlap: "):
        load_config(ProjectConfig, path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "alignloop.yaml"
    path.write_text("name: x\ngenerate: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(ProjectConfig, path)


def test_open_project_without_a_config_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(AlignloopError, match="alignloop init"):
        open_project(tmp_path)
