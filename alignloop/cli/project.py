"""Commands on the project and its data: ``init``, ``prompts add|list``, ``generate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alignloop.cli.base import GENERATE_FLAGS, ProjectDir, app, console
from alignloop.cli_options import config_options
from alignloop.config import AddPromptsConfig, GenerateConfig, ListPromptsConfig, PromptSelection
from alignloop.errors import AlignloopError
from alignloop.task_types import task_type_help

prompts_app = typer.Typer(help="Manage the project's prompts.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the project in.")],
    name: Annotated[str | None, typer.Option(help="Project name (default: the directory name).")] = None,
    database: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the store (default: SQLite file in the project)."),
    ] = None,
    task_type: Annotated[
        str | None, typer.Option(help=f"Labeling task (default: ranking): {task_type_help()}.")
    ] = None,
) -> None:
    """Create a project: alignloop.yaml and an empty feedback store."""
    from alignloop import api

    handle = api.init(directory, name=name, database=database, task_type=task_type)
    console.print(f"created project [bold]{handle.config.name}[/] in {directory}")


@prompts_app.command("add")
@config_options(AddPromptsConfig, "builtin", "column", "split", "subset")
def prompts_add(
    file: Annotated[
        str | None,
        typer.Argument(help="JSONL, CSV, text file, `datasets` directory or hub dataset id; omit with --builtin."),
    ] = None,
    project: ProjectDir = Path("."),
    *,
    overrides: dict[str, object],
) -> None:
    """Import prompts (de-duplicated; train/test split assigned deterministically)."""
    from alignloop import api

    if (file is None) == (not overrides.get("builtin")):
        raise AlignloopError("give a FILE or --builtin (one of them)")
    result = api.add_prompts(project, file, **overrides)
    console.print(
        f"added {result.added} prompts ({result.duplicates} duplicates skipped); "
        f"project now has {result.total} ({result.test} in the test split)"
    )


@prompts_app.command("list")
@config_options(ListPromptsConfig, *ListPromptsConfig.model_fields)
def prompts_list(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Show the project's prompts."""
    from alignloop import api

    for row in api.list_prompts(project, **overrides):
        typer.echo(f"{row['id']}\t{row['split']}\t{row['text'][:100]!r}")


@app.command()
@config_options(GenerateConfig, *GENERATE_FLAGS, flags={"model": ("--model", "-m")})
@config_options(PromptSelection, *PromptSelection.model_fields)
def generate(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Sample K completions for every prompt that has fewer than K in the current round (resumable)."""
    from alignloop import api

    result = api.generate(project, progress=True, **overrides)
    console.print(
        f"generated {result.generated} completions for {result.prompts} prompts in round {result.round_index} "
        f"({result.completions_per_s:.2f} completions/s); {result.already_done} were already there"
    )
