"""Labeling and serving commands: ``serve``, ``serve-model``, ``labelers …``, ``consensus``, the pairs,
judgements and tasks exports and imports, ``simulate-labelers``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from alignloop.bridges.config import ExportTasksConfig, ImportJudgementsConfig
from alignloop.cli.base import ProjectDir, app, console
from alignloop.cli_options import config_options
from alignloop.consensus.config import ConsensusConfig
from alignloop.labeling.config import AddLabelerConfig, ExportJudgementsConfig
from alignloop.labeling.server import ServeConfig, http_url
from alignloop.pairs.config import ExportPairsConfig, ImportPairsConfig
from alignloop.serving.config import ServeModelConfig
from alignloop.simulate import SimulateConfig

labelers_app = typer.Typer(help="Manage labeler accounts of the labeling app.", no_args_is_help=True)
app.add_typer(labelers_app, name="labelers")


@app.command()
@config_options(ServeConfig, *ServeConfig.model_fields)
def serve(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Run the labeling web app for the project (until Ctrl-C)."""
    from alignloop import api

    def announce(config: ServeConfig) -> None:  # once the project and the port are known to be good
        if not any(row.role == "admin" and row.active for row in api.list_labelers(project)):
            console.print("no admin account yet: create one with `alignloop labelers add NAME --admin`")
        prefix = config.root_path
        where = http_url(config.host, config.port) + (f", served as {prefix}/ behind your proxy" if prefix else "")
        console.print(f"labeling app for {project} on {where} (admin pages at {prefix}/admin); Ctrl-C stops it")

    api.serve(project, on_ready=announce, **overrides)


@app.command("serve-model")
@config_options(ServeModelConfig, *ServeModelConfig.model_fields)
def serve_model(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Serve the current policy behind an OpenAI-compatible API; users' feedback becomes judgements (until Ctrl-C)."""
    from alignloop import api

    def announce(config: ServeModelConfig, name: str, version: str, group_models: list[str]) -> None:
        also = f"; per labeler group: {', '.join(group_models)}" if group_models else ""
        console.print(
            f"serving [bold]{name}[/] ({version}) for {project} on {http_url(config.host, config.port)}/v1{also} — "
            "sign in with POST /api/login for an API key; Ctrl-C stops it"
        )

    api.serve_model(project, on_ready=announce, **overrides)


@labelers_app.command("add")
@config_options(AddLabelerConfig, *AddLabelerConfig.model_fields)
def labelers_add(
    name: Annotated[str, typer.Argument(help="Account name (no spaces).")],
    project: ProjectDir = Path("."),
    *,
    overrides: dict[str, object],
) -> None:
    """Create an account and print its one-time invite link."""
    from alignloop import api

    link = api.add_labeler(project, name, **overrides)
    role = "admin" if overrides.get("admin") else "labeler"
    console.print(f"created {role} [bold]{name}[/]; send them this one-time invite link:")
    typer.echo(link)


@labelers_app.command("list")
def labelers_list(project: ProjectDir = Path(".")) -> None:
    """Show every account: name, role, status, guideline version read."""
    from alignloop import api

    for row in api.list_labelers(project):
        typer.echo(f"{row.name}\t{row.role}\t{row.status}\tguidelines read: {row.read_guidelines_version or '-'}")


@labelers_app.command("deactivate")
def labelers_deactivate(
    name: Annotated[str, typer.Argument(help="Account to lock out (its judgements are kept).")],
    project: ProjectDir = Path("."),
) -> None:
    """Lock an account out of the labeling app at once; its judgements stay."""
    from alignloop import api

    api.deactivate_labeler(project, name)
    console.print(f"deactivated {name}")


@app.command("consensus")
@config_options(ConsensusConfig, *ConsensusConfig.model_fields)
def consensus_cmd(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Aggregate the judgements: consensus per prompt, agreement, labeler quality (table + PNG + JSON)."""
    from rich.table import Table

    from alignloop import api

    report = api.consensus(project, **overrides)
    table = Table(title="Labeler quality")
    for column in ("labeler", "judgements", "tau", "tau (shrunk)", "first-shown first", "flag"):
        table.add_column(column, justify="left" if column in ("labeler", "flag") else "right")
    for q in report.labelers:
        table.add_row(
            q.name,
            str(q.n_judgements),
            "-" if q.tau != q.tau else f"{q.tau:+.3f}",
            "-" if q.tau_shrunk != q.tau_shrunk else f"{q.tau_shrunk:+.3f}",
            "-" if q.position_bias != q.position_bias else f"{q.position_bias:.0%}",
            "[red]flagged[/]" if q.flagged else "",
        )
    Console().print(table)
    if len(report.labeler_groups) >= 2:
        names = {q.labeler_id: q.name for q in report.labelers}
        console.print(f"the labelers form {len(report.labeler_groups)} groups with different tastes:", highlight=False)
        for g in report.labeler_groups:
            members = ", ".join(names[lid] for lid in g.labeler_ids)
            console.print(f"  group {g.index} (agree tau {g.agreement:+.2f}): {members}", highlight=False)
    for q in report.labelers:
        if q.flagged:
            console.print(f"[red]{q.name}[/] is flagged: {q.reason}", highlight=False)
    folder = overrides.get("out") or project / "consensus"
    console.print(
        f"{len(report.prompts)} prompts; Krippendorff's alpha {report.krippendorff_alpha:.3f}, "
        f"pairwise agreement {report.pairwise_agreement:.3f}, mean Kendall's W {report.kendall_w_mean:.3f}; "
        f"wrote {folder}/summary.json, prompts.jsonl, labelers.png"
    )


@app.command("export-pairs")
@config_options(ExportPairsConfig, *ExportPairsConfig.model_fields)
def export_pairs_cmd(
    out: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    project: ProjectDir = Path("."),
    *,
    overrides: dict[str, object],
) -> None:
    """Write chosen/rejected pairs (plus imported pairs) as JSONL for reward-model or DPO training."""
    from alignloop import api

    counts = api.export_pairs(project, out, **overrides)
    unpaired = overrides.get("unpaired")
    console.print(
        f"wrote {counts['pairs']} pairs from {counts['prompts']} prompts to {out} "
        f"({counts['train']} train, {counts['test']} test)"
        + (f"; {counts['unpaired']} unpaired examples to {unpaired}" if unpaired else "")
    )


@app.command("import-pairs")
@config_options(ImportPairsConfig, "fmt", "split", "subset")
def import_pairs_cmd(
    file: Annotated[str, typer.Argument(help="JSONL pairs file, `datasets` directory or hub dataset id.")],
    project: ProjectDir = Path("."),
    *,
    overrides: dict[str, object],
) -> None:
    """Add existing comparisons to the project; export-pairs and reward training then include them."""
    from alignloop import api

    result = api.import_pairs(project, file, **overrides)
    console.print(
        f"imported {result.pairs} pairs over {result.prompts} prompts ({result.test} in the test split) "
        f"as {result.stored_as}"
    )


@app.command("export-judgements")
@config_options(ExportJudgementsConfig, *ExportJudgementsConfig.model_fields)
def export_judgements_cmd(
    out: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    project: ProjectDir = Path("."),
    *,
    overrides: dict[str, object],
) -> None:
    """Write every raw judgement (corrections, skips, flags, comments, timings) as JSONL."""
    from alignloop import api

    n = api.export_judgements(project, out, **overrides)
    console.print(f"wrote {n} judgements to {out}")


@app.command("import-judgements")
@config_options(ImportJudgementsConfig, "fmt", "prompt_key", "answers_key", "question")
def import_judgements_cmd(
    file: Annotated[
        Path, typer.Argument(help="Label Studio JSON export, or Argilla records (JSON, JSONL, to_disk dir).")
    ],
    project: ProjectDir = Path("."),
    *,
    overrides: dict[str, object],
) -> None:
    """Import rankings made in Label Studio or Argilla; consensus and pairs then include them."""
    from alignloop import api

    result = api.import_judgements(project, file, **overrides)
    where = f" into round {result.round_index}" if result.round_index is not None else ""
    console.print(
        f"imported {result.judgements} judgements on {result.tasks} tasks{where} "
        f"({result.already_imported} already imported, {result.labelers_created} new labelers, "
        f"{result.prompts_added} new prompts)"
    )


@app.command("export-tasks")
@config_options(ExportTasksConfig, "fmt", "out", "prompt_key", "answers_key")
def export_tasks_cmd(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Write the current round's open prompts and completions as Label Studio tasks or Argilla records."""
    from alignloop import api

    n = api.export_tasks(project, **overrides)  # type: ignore[arg-type]
    console.print(f"wrote {n} tasks to {overrides['out']}")


@app.command("simulate-labelers")
@config_options(SimulateConfig, *SimulateConfig.model_fields)
def simulate_labelers_cmd(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Label the project with simulated labelers: real accounts submitting through the HTTP API."""
    import os

    from alignloop import api

    password = os.environ.get("ALIGNLOOP_ADMIN_PASSWORD")
    result = api.simulate_labelers(project, admin_password=password, **overrides)
    readers = [lab.name for lab in result.labelers if lab.misreader]
    console.print(
        f"{len(result.labelers)} simulated labelers submitted {result.judgements} judgements to {result.url} "
        f"in {result.seconds:.1f} s" + (f"; misreaders: {', '.join(readers)}" if readers else "")
    )
