"""The ``alignloop`` command line: one command per stage, thin (parse, call the API, print).

Errors the user can act on (``AlignloopError``) are printed as one line on stderr with
a non-zero exit status, without a traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from alignloop.cli_options import config_options
from alignloop.config import GenerateConfig
from alignloop.consensus.config import ConsensusConfig
from alignloop.errors import AlignloopError, InputError
from alignloop.eval_config import EvaluateConfig
from alignloop.eval_human import EvalHumanConfig
from alignloop.labeling.server import ServeConfig
from alignloop.overoptimisation import CurveConfig
from alignloop.pairs.config import ExportPairsConfig
from alignloop.pairs.formats import FORMATS
from alignloop.reward.config import PrioritizeConfig, RewardConfig, ScoreConfig
from alignloop.rl.config import RLConfig
from alignloop.rl.dpo_config import DPOConfig
from alignloop.simulate import SimulateConfig
from alignloop.task_types import task_type_help

app = typer.Typer(
    name="alignloop",
    help="Align a language model with human preferences, end to end.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
prompts_app = typer.Typer(help="Manage the project's prompts.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")

console = Console(stderr=True)

ProjectDir = Annotated[Path, typer.Option("--project", "-p", help="Project directory (holds alignloop.yaml).")]
Resume = Annotated[bool, typer.Option(help="Continue the run in --output from its latest checkpoint.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing run directory.")]
Split = Literal["train", "test"]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file of the stage's settings (see docs/config.md).")
]

# Which config keys each command offers as flags; every other key is set with --config or --set.
RUN_FLAGS = {"project": ("--project", "-p"), "output": ("--output", "-o")}
GENERATE_FLAGS = ("model", "k", "temperature", "top_p", "max_new_tokens", "batch_size", "seed", "backend")
TRAINING_FLAGS = ("project", "output", "learning_rate", "batch_size", "max_length", "seed", "report_to")
DPO_FLAGS = (
    *TRAINING_FLAGS, "pairs", "policy", "beta", "gradient_accumulation_steps", "epochs", "max_steps", "max_time",
    "lora_r", "merge_lora",
)  # fmt: skip
REWARD_FLAGS = (
    *TRAINING_FLAGS, "pairs", "backbone", "epochs", "gradient_accumulation_steps", "too_long", "use_margin", "lora_r",
    "eval_fraction", "train_split", "early_stopping_patience", "dtype", "ensemble", "per_group",
)  # fmt: skip
RL_FLAGS = (
    "policy", "reward_model", "group", "prompts", "project", "output", "max_steps", "max_time", "target_reward",
    "window", "batch_size", "k", "max_new_tokens", "learning_rate", "lora_r", "merge_lora", "seed", "report_to",
)  # fmt: skip


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log diagnostics to stderr.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # peft calls a property transformers deprecated; nothing the user can act on
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


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
def prompts_add(
    file: Annotated[
        str | None,
        typer.Argument(help="JSONL, CSV, text file, `datasets` directory or hub dataset id; omit with --builtin."),
    ] = None,
    project: ProjectDir = Path("."),
    builtin: Annotated[bool, typer.Option(help="Add the built-in prompt set shipped with alignloop.")] = False,
    column: Annotated[
        str | None,
        typer.Option(help="Column holding the prompt in CSV or datasets input (default: prompt)."),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split of a datasets directory or hub id to read.")] = None,
    subset: Annotated[str | None, typer.Option(help="Subset (configuration) of a hub dataset.")] = None,
) -> None:
    """Import prompts (de-duplicated; train/test split assigned deterministically)."""
    from alignloop import api

    if (file is None) == (not builtin):
        raise AlignloopError("give a FILE or --builtin (one of them)")
    result = api.add_prompts(project, file, builtin=builtin, column=column, split=split, subset=subset)
    console.print(
        f"added {result.added} prompts ({result.duplicates} duplicates skipped); "
        f"project now has {result.total} ({result.test} in the test split)"
    )


@prompts_app.command("list")
def prompts_list(
    project: ProjectDir = Path("."),
    split: Annotated[Split | None, typer.Option(help="Only this split: train or test.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
) -> None:
    """Show the project's prompts."""
    from alignloop import api

    for row in api.list_prompts(project, split=split, limit=limit):
        typer.echo(f"{row['id']}\t{row['split']}\t{row['text'][:100]!r}")


@app.command()
@config_options(GenerateConfig, *GENERATE_FLAGS, flags={"model": ("--model", "-m")})
def generate(
    project: ProjectDir = Path("."),
    split: Annotated[Split | None, typer.Option(help="Only prompts of this split (train or test).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N prompts (by id).")] = None,
    *,
    overrides: dict[str, object],
) -> None:
    """Sample K completions for every prompt that has fewer than K in the current round (resumable)."""
    from alignloop import api

    result = api.generate(project, split=split, limit=limit, progress=True, **overrides)
    console.print(
        f"generated {result.generated} completions for {result.prompts} prompts in round {result.round_index} "
        f"({result.completions_per_s:.2f} completions/s); {result.already_done} were already there"
    )


@app.command("train-dpo")
@config_options(DPOConfig, *DPO_FLAGS, flags=RUN_FLAGS, set_option=True)
def train_dpo(
    config: ConfigFile = None, resume: Resume = False, overwrite: Overwrite = False, *, overrides: dict[str, object]
) -> None:
    """Fine-tune the policy with DPO directly on chosen/rejected pairs."""
    from alignloop import api

    result = api.train_dpo(config=config, resume=resume, overwrite=overwrite, progress=True, **overrides)
    held_out = result.eval_metrics
    summary = (
        f"; held-out accuracy {held_out['eval/accuracy']:.3f}, margin {held_out['eval/margin']:.3f}" if held_out else ""
    )
    console.print(f"DPO stopped ({result.stop_reason}) after {result.steps} steps in {result.run_dir}{summary}")


@app.command("train-reward")
@config_options(
    RewardConfig, *REWARD_FLAGS, flags={**RUN_FLAGS, "use_margin": ("--use-margin/--no-margin",)}, set_option=True
)
def train_reward(
    config: ConfigFile = None, resume: Resume = False, overwrite: Overwrite = False, *, overrides: dict[str, object]
) -> None:
    """Train a reward model on chosen/rejected pairs (pairwise Bradley-Terry loss)."""
    from alignloop import api

    result = api.train_reward(config=config, resume=resume, overwrite=overwrite, progress=True, **overrides)
    if not result.main_process:
        return
    m = result.metrics
    console.print(f"data: {result.data.summary()}", highlight=False)
    held_out = ""
    if "rm/eval_accuracy" in m:
        held_out = (
            f"; held-out accuracy {m['rm/eval_accuracy']:.3f}, loss {m['rm/eval_loss']:.4f}, ECE {m['rm/ece']:.3f}"
        )
        if result.member_accuracy:
            members = ", ".join(f"{a:.3f}" for a in result.member_accuracy)
            held_out += f" (ensemble of {len(result.member_accuracy)}; members alone {members})"
        if "rm/inter_labeler" in m:
            held_out += f" (labelers agree with each other {m['rm/inter_labeler']:.3f})"
    stop = " (stopped early)" if result.stopped_early else ""
    where = f" on {result.processes} processes" if result.processes > 1 else ""
    console.print(
        f"reward model trained{stop}{where}: {result.steps} steps at {result.pairs_per_s:.1f} pairs/s{held_out}; "
        f"saved in {result.run_dir}",
        highlight=False,
    )
    for group in sorted(key.rsplit("/", 1)[1] for key in m if key.startswith("rm/eval_accuracy/")):
        agree = m.get(f"rm/inter_labeler/{group}")
        console.print(
            f"group {group}: held-out accuracy {m[f'rm/eval_accuracy/{group}']:.3f}"
            + (f" (its labelers agree with each other {agree:.3f})" if agree is not None else ""),
            highlight=False,
        )


@app.command()
@config_options(ScoreConfig, "reward_model", "input", "output", "batch_size")
def score(*, overrides: dict[str, object]) -> None:
    """Add `reward` (and for pairs `reward_chosen`, `reward_rejected`, `p_chosen`) to each JSONL row."""
    import json

    from alignloop import api

    rows = api.score(**overrides)  # type: ignore[arg-type]
    if "output" not in overrides:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
    else:
        console.print(f"scored {len(rows)} rows into {overrides['output']}")


@app.command()
@config_options(PrioritizeConfig, "reward_model", "round_index", "top", "batch_size")
def prioritize(project: ProjectDir = Path("."), *, overrides: dict[str, object]) -> None:
    """Active labeling: rank the prompts still needing labels by the reward model's uncertainty."""
    from alignloop import api

    result = api.prioritize(project, **overrides)  # type: ignore[arg-type]
    console.print(f"round {result.round_index}: {result.scored} prompts still needing labels were scored")
    for item in result.top:
        text = " ".join(item.text.split())
        typer.echo(f"{item.priority:.3f}\tprompt {item.prompt_id}\t{text[:70] + '...' if len(text) > 70 else text}")
    if result.scored and result.assignment != "uncertainty":
        console.print(
            f"labeling.assignment is {result.assignment!r}: the labeling app offers these first only with "
            "`assignment: uncertainty` (then restart `alignloop serve`)"
        )


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
        where = f"http://{config.host}:{config.port}" + (f", served as {prefix}/ behind your proxy" if prefix else "")
        console.print(f"labeling app for {project} on {where} (admin pages at {prefix}/admin); Ctrl-C stops it")

    api.serve(project, on_ready=announce, **overrides)


@app.command("serve-model")
def serve_model(
    project: ProjectDir = Path("."),
    model: Annotated[
        str | None,
        typer.Option(help="Model to serve: a path, run directory or hub id (default: the project's current policy)."),
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help="The name clients pass as `model` (default: the model reference).")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="Sampler: auto (vLLM when installed, else the built-in one), hf or vllm.")
    ] = "auto",
    dtype: Annotated[str, typer.Option(help="Weights dtype: auto, float32, bfloat16 or float16.")] = "auto",
    device: Annotated[
        str | None, typer.Option(help="Device for the built-in sampler (default: cuda when present).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")] = 8001,
) -> None:
    """Serve the current policy behind an OpenAI-compatible API; users' feedback becomes judgements (until Ctrl-C)."""
    from alignloop import api

    def announce(name: str, version: str) -> None:
        console.print(
            f"serving [bold]{name}[/] ({version}) for {project} on http://{host}:{port}/v1 — "
            "sign in with POST /api/login for an API key; Ctrl-C stops it"
        )

    api.serve_model(
        project,
        model=model,
        served_model_name=served_model_name,
        backend=backend,
        dtype=dtype,
        device=device,
        host=host,
        port=port,
        on_ready=announce,
    )


@labelers_app.command("add")
def labelers_add(
    name: Annotated[str, typer.Argument(help="Account name (no spaces).")],
    project: ProjectDir = Path("."),
    admin: Annotated[
        bool, typer.Option("--admin", help="Make the account an admin (dashboard, guidelines, exports).")
    ] = False,
    url: Annotated[
        str, typer.Option(help="Address labelers reach the app at, used in the invite link.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """Create an account and print its one-time invite link."""
    from alignloop import api

    link = api.add_labeler(project, name, admin=admin, url=url)
    console.print(f"created {'admin' if admin else 'labeler'} [bold]{name}[/]; send them this one-time invite link:")
    typer.echo(link)


@labelers_app.command("list")
def labelers_list(project: ProjectDir = Path(".")) -> None:
    """Show every account: name, role, status, guideline version read."""
    from alignloop import api

    for row in api.list_labelers(project):
        status = (
            "deactivated"
            if not row.active
            else (("invite expired" if row.invite_expired else "invited") if row.invited else "active")
        )
        typer.echo(f"{row.name}\t{row.role}\t{status}\tguidelines read: {row.read_guidelines_version or '-'}")


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
def import_pairs_cmd(
    file: Annotated[str, typer.Argument(help="JSONL pairs file, `datasets` directory or hub dataset id.")],
    project: ProjectDir = Path("."),
    fmt: Annotated[str | None, typer.Option("--format", "-f", help=f"{FORMATS.choices()} (default: detected).")] = None,
    split: Annotated[str | None, typer.Option(help="Split of a datasets directory or hub id to read.")] = None,
    subset: Annotated[str | None, typer.Option(help="Subset (configuration) of a hub dataset.")] = None,
) -> None:
    """Add existing comparisons to the project; export-pairs and reward training then include them."""
    from alignloop import api

    result = api.import_pairs(project, file, fmt=fmt, split=split, subset=subset)
    console.print(
        f"imported {result.pairs} pairs over {result.prompts} prompts ({result.test} in the test split) "
        f"as {result.stored_as}"
    )


@app.command("export-judgements")
def export_judgements_cmd(
    out: Annotated[Path, typer.Argument(help="JSONL file to write.")],
    project: ProjectDir = Path("."),
    round_index: Annotated[int | None, typer.Option("--round", help="Only this round (default: all).")] = None,
    texts: Annotated[bool, typer.Option(help="Include the prompt and completion texts.")] = True,
) -> None:
    """Write every raw judgement (corrections, skips, flags, comments, timings) as JSONL."""
    from alignloop import api

    n = api.export_judgements(project, out, round_index=round_index, texts=texts)
    console.print(f"wrote {n} judgements to {out}")


ToolFormat = Annotated[str, typer.Option("--format", "-f", help="label-studio or argilla.")]
PromptKey = Annotated[str, typer.Option(help="Key of the task data (Argilla: field) holding the prompt.")]
AnswersKey = Annotated[
    list[str] | None,
    typer.Option(help="Key holding the list of answers, or repeat it: one key per answer (see docs/cli.md)."),
]


@app.command("import-judgements")
def import_judgements_cmd(
    file: Annotated[
        Path, typer.Argument(help="Label Studio JSON export, or Argilla records (JSON, JSONL, to_disk dir).")
    ],
    fmt: ToolFormat,
    project: ProjectDir = Path("."),
    prompt_key: PromptKey = "prompt",
    answers_key: AnswersKey = None,
    question: Annotated[
        str | None, typer.Option(help="Argilla: the RankingQuestion to read when records have several.")
    ] = None,
) -> None:
    """Import rankings made in Label Studio or Argilla; consensus and pairs then include them."""
    from alignloop import api

    result = api.import_judgements(
        project, file, fmt=fmt, prompt_key=prompt_key, answers_key=answers_key, question=question
    )
    where = f" into round {result.round_index}" if result.round_index is not None else ""
    console.print(
        f"imported {result.judgements} judgements on {result.tasks} tasks{where} "
        f"({result.already_imported} already imported, {result.labelers_created} new labelers, "
        f"{result.prompts_added} new prompts)"
    )


@app.command("export-tasks")
def export_tasks_cmd(
    fmt: ToolFormat,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (Argilla: .jsonl for JSONL).")],
    project: ProjectDir = Path("."),
    prompt_key: PromptKey = "prompt",
    answers_key: AnswersKey = None,
) -> None:
    """Write the current round's open prompts and completions as Label Studio tasks or Argilla records."""
    from alignloop import api

    n = api.export_tasks(project, out, fmt=fmt, prompt_key=prompt_key, answers_key=answers_key)
    console.print(f"wrote {n} tasks to {out}")


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
    """Run the whole loop on the embedded defaults: generate, label, consensus, reward model, PPO, evaluate, report."""
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
def round_next(
    project: ProjectDir = Path("."),
    policy: Annotated[
        str | None, typer.Option(help="Policy to sample from (default: the newest trained policy).")
    ] = None,
    prompts: Annotated[int | None, typer.Option(min=1, help="Sample at most this many fresh train prompts.")] = None,
    *,
    overrides: dict[str, object],
) -> None:
    """Open the next round from the latest policy and sample completions for fresh prompts."""
    from alignloop import api

    info, result = api.next_round(project, policy=policy, prompts=prompts, progress=True, **overrides)
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


KlCoef = Annotated[
    float | None,
    typer.Option(help="β of the algorithm's KL term: sets <algo>.kl_coef (its meaning per algorithm: docs/config.md)."),
]


def _train_rl(
    config: ConfigFile = None,
    kl_coef: KlCoef = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    *,
    overrides: dict[str, object],
) -> None:
    from alignloop import api

    algo = str(overrides.pop("algo", "ppo"))
    if kl_coef is not None:  # the chosen algorithm's β (docs/config.md: what it weighs in each)
        overrides[f"{algo}.kl_coef"] = kl_coef
    result = api.train_rl(algo, config=config, resume=resume, overwrite=overwrite, progress=True, **overrides)
    reward = result.final_metrics.get(f"{algo}/reward_mean")
    tail = f"; last reward {reward:+.3f}" if reward is not None else ""
    console.print(
        f"{algo} stopped ({result.stop_reason}) after {result.steps} steps{tail}; policy saved in {result.model_dir}"
    )


# One command body, two commands: train-ppo is train-rl without --algo.
app.command(
    "train-rl", help="Fine-tune a policy with RL (PPO, GRPO or RLOO) against a reward model or a Python reward."
)(config_options(RLConfig, "algo", *RL_FLAGS, flags=RUN_FLAGS, set_option=True)(_train_rl))
app.command("train-ppo", help="Fine-tune a policy with PPO against a reward model (train-rl --algo ppo).")(
    config_options(RLConfig, *RL_FLAGS, flags=RUN_FLAGS, set_option=True)(_train_rl)
)


def main() -> None:
    """Entry point: every error is one line on stderr, without a traceback.

    ``AlignloopError`` (bad input, missing files, unreachable services) exits 1; a usage error
    (unknown option, a value of the wrong type or out of range) names the flag and exits 2.
    """
    from rich.markup import escape

    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # Typer's (vendored click's) ClickException and its usage errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `alignloop prompts` alone: its help
            typer.echo(ctx.get_help(), err=True)
            sys.exit(2)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        console.print(f"[red]error:[/] {escape(message)}{escape(hint)}", soft_wrap=True, highlight=False)
        sys.exit(getattr(exc, "exit_code", 2))
    except AlignloopError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted; work committed so far is kept (re-run to resume)")
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)
