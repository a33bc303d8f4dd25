"""Flags derived from the stage configs: one declaration is the flag, the API keyword and the help."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from alignloop import api
from alignloop.bridges.config import ToolFileConfig
from alignloop.cli import app
from alignloop.config import DatasetSource, GenerateConfig, NextRoundConfig, flag_name
from alignloop.errors import AlignloopError, InputError
from alignloop.overoptimisation import CurveConfig

runner = CliRunner()


def _options(command: str) -> dict[str, typer.core.TyperOption]:
    """The options of ``alignloop COMMAND`` (``"round next"`` for a subcommand) by their first spelling."""
    click_command = typer.main.get_command(app)
    for name in command.split():
        click_command = click_command.commands[name]  # type: ignore[attr-defined]
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
        (lambda p: api.next_round(p, prompts=0), "--prompts"),
        (lambda p: api.next_round(p, test_prompts=-1), "--test-prompts"),
        (lambda p: api.generate(p, split="dev"), "--split"),
        (lambda p: api.generate(p, limit=0), "--limit"),
        (lambda p: api.list_prompts(p, limit=0), "--limit"),
        (lambda p: api.add_prompts(p, builtin="maybe"), "--builtin"),
        (lambda p: api.import_pairs(p, p / "pairs.jsonl", subset=1), "--subset"),
        (lambda p: api.import_judgements(p, p / "x.json", fmt="argilla", answers_key="answer"), "--answers-key"),
        (lambda p: api.export_tasks(p, p / "t.json", fmt="argilla", prompt_key=None), "--prompt-key"),
        (lambda p: api.export_judgements(p, p / "j.jsonl", round_index="last"), "--round"),
        (lambda p: api.add_labeler(p, "ada", admin="maybe"), "--admin"),
    ],
)
def test_a_bad_api_keyword_is_refused_naming_the_flag_it_is_on_the_command_line(
    call: object, flag: str, project_dir: Path
) -> None:
    with pytest.raises(InputError) as refused:
        call(project_dir)  # type: ignore[operator]
    assert refused.value.field == flag


def test_stacked_models_give_one_command_the_flags_of_both_in_one_overrides(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _options("round next")
    assert options["-k"].help == GenerateConfig.model_fields["k"].description
    assert options["--test-prompts"].help == NextRoundConfig.model_fields["test_prompts"].description
    assert (options["--prompts"].min, options["--test-prompts"].min) == (1, 0)
    given: dict[str, object] = {}

    def next_round(project: Path, *, progress: bool, **settings: object) -> None:
        given.update(settings)
        raise AlignloopError("stopped before sampling")

    monkeypatch.setattr(api, "next_round", next_round)
    result = runner.invoke(app, ["round", "next", "-p", str(project_dir), "-k", "3", "--test-prompts", "2"])
    assert isinstance(result.exception, AlignloopError)
    assert given == {"k": 3, "test_prompts": 2}


@pytest.mark.parametrize(
    ("commands", "model"),
    [
        (("prompts add", "import-pairs"), DatasetSource),
        (("import-judgements", "export-tasks"), ToolFileConfig),
    ],
)
def test_keys_two_commands_share_are_declared_once_and_read_the_same_in_both(
    commands: tuple[str, str], model: type[BaseModel]
) -> None:
    for command in commands:
        options = _options(command)
        for key, field in model.model_fields.items():
            assert options[flag_name(key, model)].help == field.description


def test_a_switch_declared_without_its_negative_stays_a_lone_flag() -> None:
    admin = _options("labelers add")["--admin"]
    assert admin.is_flag and admin.secondary_opts == []


def test_an_old_spelling_still_works_with_a_warning_on_the_command_line_and_in_the_api() -> None:
    hidden = _options("curve")["--samples-per-prompt"]
    assert hidden.hidden
    with pytest.warns(FutureWarning, match="samples_per_prompt is now called k"):
        config = CurveConfig(reward_model=Path("runs/rm"), samples_per_prompt=3)  # type: ignore[call-arg]
    assert config.k == 3
