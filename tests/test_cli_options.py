"""Flags derived from the stage configs: one declaration is the flag, the API keyword and the help."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alignloop import api
from alignloop.cli import app
from alignloop.errors import InputError
from alignloop.overoptimisation import CurveConfig

runner = CliRunner()


def _options(command: str) -> dict[str, typer.core.TyperOption]:
    """The options of ``alignloop COMMAND`` by their first spelling."""
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {param.opts[0]: param for param in click_command.params if param.param_type_name == "option"}


def test_a_field_without_a_default_is_a_required_option() -> None:
    result = runner.invoke(app, ["score", "--reward-model", "runs/rm"])
    assert result.exit_code == 2
    assert "Missing option '--input'" in result.output


def test_a_field_bound_is_the_flag_range_and_out_of_range_is_a_usage_error(project_dir: Path) -> None:
    assert _options("serve")["--port"].max == 65535
    result = runner.invoke(app, ["serve", "-p", str(project_dir), "--workers", "0"])
    assert result.exit_code == 2
    assert "--workers" in result.output


def test_the_help_of_a_flag_is_its_config_field_description() -> None:
    for name, field in CurveConfig.model_fields.items():
        flag = "-k" if name == "k" else "--" + name.replace("_", "-")
        assert _options("curve")[flag].help == field.description


@pytest.mark.parametrize(
    ("call", "flag"),
    [
        (lambda p: api.export_pairs(p, p / "out.jsonl", fmt="csv"), "--format"),
        (lambda p: api.export_pairs(p, p / "out.jsonl", rounds=["first"]), "--round"),
        (lambda p: api.consensus(p, weighting="loudest"), "--weighting"),
        (lambda p: api.prioritize(p, []), "--reward-model"),
        (lambda p: api.eval_human(p, ["only-one"]), "--models"),
        (lambda p: api.serve(p, root_path="labels/"), "--root-path"),
    ],
)
def test_a_bad_api_keyword_is_refused_naming_the_flag_it_is_on_the_command_line(
    call: object, flag: str, project_dir: Path
) -> None:
    with pytest.raises(InputError) as refused:
        call(project_dir)  # type: ignore[operator]
    assert refused.value.field == flag


def test_an_old_spelling_still_works_with_a_warning_on_the_command_line_and_in_the_api() -> None:
    hidden = _options("curve")["--samples-per-prompt"]
    assert hidden.hidden
    with pytest.warns(FutureWarning, match="samples_per_prompt is now called k"):
        config = CurveConfig(reward_model=Path("runs/rm"), samples_per_prompt=3)  # type: ignore[call-arg]
    assert config.k == 3
