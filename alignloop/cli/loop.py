"""Commands of the loop as a whole: ``demo``, ``round next|list``, ``evaluate``, ``curve``, ``eval-human``,
``report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from alignloop.cli.base import ProjectDir, app, console
from alignloop.cli_options import config_options
from alignloop.config import GenerateConfig, NextRoundConfig
from alignloop.errors import AlignloopError, InputError
from alignloop.eval_config import EvaluateConfig
from alignloop.eval_human import EvalHumanConfig
from alignloop.overoptimisation import CurveConfig

round_app = typer.Typer(help="The project's rounds of the loop.", no_args_is_help=True)
app.add_typer(round_app, name="round")


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Directory of the demo project.")] = Path("demo"),
    quick: Annotated[bool, typer.Option(help="A smaller run that finishes within 5 minutes on a laptop CPU.")] = False,
    tiny: Annotated[bool, typer.Option(help="Random 2-layer models instead of the defaults (a smoke test).")] = False,
    human: Annotated[
        bool, typer.Option(help="Wait for people to label in the browser instead of simulated labelers.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Start again when the directory already holds a project.")] = False,
    port: Annotated[int, typer.Option(help="Port of the labeling app (0: a free one).")] = 0,
    judge: Annotated[
        str,
        typer.Option(help="The simulated labelers' taste and the evaluation's gold standard, as MODULE:FUNCTION."),
    ] = "alignloop.judges:sentiment",
    seed: Annotated[int, typer.Option(help="Seed of sampling, the labelers' noise and training.")] = 0,
    rounds: Annotated[
        int, typer.Option(min=1, help="Rounds of the loop; each later one samples fresh prompts from the last policy.")
    ] = 1,
    personal: Annotated[
        bool,
        typer.Option(
            help="Two groups of simulated people, by --judge and --second-judge: a pooled round, then a policy "
            "per group from their feedback on the served model."
        ),
    ] = False,
    second_judge: Annotated[
        str, typer.Option(help="With --personal: the second group's taste, as MODULE:FUNCTION.")
    ] = "alignloop.judges:concise",
) -> None:
    """Run the whole loop on the embedded defaults: generate, label, consensus, reward model, GRPO, evaluate, report."""
    size = "tiny" if tiny else "quick" if quick else "full"
    if personal:
        from alignloop.demo_personal import personal_lines, run_personal_demo

        if human or rounds > 1:
            raise InputError("--personal simulates its people and runs its own two rounds", field="--personal")
        result = run_personal_demo(
            directory, size=size, judge=judge, second_judge=second_judge, overwrite=overwrite, port=port, seed=seed
        )
        lines = personal_lines(result)
    else:
        from alignloop.demo import run_demo, summary_lines

        result = run_demo(
            directory, size=size, human=human, overwrite=overwrite, port=port, judge=judge, seed=seed, rounds=rounds
        )
        lines = summary_lines(result)
    for line in lines:
        console.print(line, highlight=False)


@round_app.command("next")
@config_options(GenerateConfig, "k")
@config_options(NextRoundConfig, *NextRoundConfig.model_fields)
def round_next(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Open the next round from the latest policy and sample completions for fresh prompts."""
    from alignloop import api

    info, result = api.next_round(project, progress=True, **overrides)
    console.print(
        f"round {info.index} samples from {info.policy}: "
        f"{result.generated} completions for {result.prompts} fresh prompts"
    )


@round_app.command("list")
def round_list(project: ProjectDir = Path(".")) -> None:
    """Show every round: what it sampled from, what it produced."""
    from alignloop import api

    for r in api.list_rounds(project):
        trained = r.metrics.get("trained_policy", "-")
        typer.echo(
            f"{r.index}\t{r.kind}\t{r.completions} completions\tfrom {r.policy}\t"
            f"reward model {r.reward_model or '-'}\ttrained {trained}"
        )


@app.command()
@config_options(EvaluateConfig, *EvaluateConfig.model_fields)
def evaluate(*, overrides: dict[str, object]) -> None:
    """Compare models on held-out prompts: paired differences and win rates, KL, length, samples."""
    from rich.table import Table

    from alignloop import api

    report = api.evaluate(progress=True, **overrides)

    def diff(mean: float | None, ci: tuple[float, float] | None) -> str:
        return "-" if mean is None or ci is None else f"{mean:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]"

    judged = f", rewards as labeler group {report.group} judges" if report.group is not None else ""
    table = Table(title=f"{report.prompts} held-out prompts × {report.samples_per_prompt} samples{judged}")
    columns = ("model", "reward", "Δ reward [95% CI]", "win rate (RM)", "judge", "Δ judge [95% CI]", "KL", "tokens")
    for column in columns:
        table.add_column(column)
    for m in report.models:
        table.add_row(
            m.model,
            f"{m.reward_mean:+.3f}",
            diff(m.reward_diff, m.reward_diff_ci),
            "-" if m.win_rate is None else f"{m.win_rate:.2f} [{m.win_ci[0]:.2f}, {m.win_ci[1]:.2f}]",
            "-" if m.judge_mean is None else f"{m.judge_mean:+.3f}",
            diff(m.judge_diff, m.judge_diff_ci),
            f"{m.kl:.3f}" + (" (analytic)" if m.best_of else ""),
            f"{m.length:.1f}",
        )
    Console().print(table)
    for sample in report.samples[:3]:
        Console().print(f"[bold]{sample['prompt']}[/]")
        for name in (m.model for m in report.models if m.best_of is None):
            Console().print(f"  [cyan]{name}[/]: {sample[name]}", highlight=False)


@app.command()
@config_options(CurveConfig, *CurveConfig.model_fields)
def curve(
    run_dir: Annotated[Path, typer.Argument(help="RL run directory (its checkpoints/step-*/ are evaluated).")],
    *,
    overrides: dict[str, object],
) -> None:
    """Over-optimisation curve: reward-model and judge score of every checkpoint against √KL, and a pick."""
    from rich.table import Table

    from alignloop import api

    result = api.curve(run_dir, progress=True, **overrides)  # type: ignore[arg-type]
    table = Table(title=f"{result.run}: {result.prompts} held-out prompts × {result.samples_per_prompt} samples")
    for column in ("step", "KL", "√KL", "reward", "held-out RM", "judge"):
        table.add_column(column)
    for p in result.points:
        table.add_row(
            str(p.step),
            f"{p.kl:.3f}",
            f"{p.sqrt_kl:.3f}",
            f"{p.reward_mean:+.3f}",
            "-" if p.holdout_reward_mean is None else f"{p.holdout_reward_mean:+.3f}",
            "-" if p.judge_mean is None else f"{p.judge_mean:+.3f}",
        )
    Console().print(table)
    for criterion, step in result.picks.items():
        Console().print(
            f"pick by {criterion.replace('_', ' ')}: " + ("none within it" if step is None else f"step {step}")
        )
    if result.judge_peak is not None:
        Console().print(f"the judge peaked at step {result.judge_peak}")


@app.command("eval-human")
@config_options(EvalHumanConfig, *EvalHumanConfig.model_fields)
def eval_human(
    project: ProjectDir = Path("."),
    results: Annotated[
        bool, typer.Option("--results", help="Report the human win rate of the newest evaluation.")
    ] = False,
    round_index: Annotated[
        int | None, typer.Option("--round", help="Evaluation round to report (default: newest).")
    ] = None,
    *,
    overrides: dict[str, object],
) -> None:
    """Create a blind pairwise human evaluation in the labeling app, or report its result."""
    from alignloop import api

    if results:
        r = api.eval_human_result(project, round_index=round_index)
        console.print(
            f"round {r.round_index}: {r.model_b} preferred over {r.model_a} in {r.win_rate_b:.1%} of {r.judgements} "
            f"judgements on {r.prompts} prompts (95% CI {r.ci[0]:.1%}–{r.ci[1]:.1%})"
        )
        return
    if "models" not in overrides:
        raise AlignloopError("give --models A --models B to create an evaluation, or --results to read one")
    index, n = api.eval_human(project, **overrides)  # type: ignore[arg-type]
    console.print(f"blind evaluation round {index}: {n} prompts ready in the labeling app (`alignloop serve`)")


@app.command()
def report(
    project: ProjectDir = Path("."),
    out: Annotated[Path | None, typer.Option(help="Where to write the HTML (default: <project>/report.html).")] = None,
) -> None:
    """Rebuild the project's self-contained HTML report."""
    from alignloop import api

    console.print(f"report: {api.report(project, out=out)}")
