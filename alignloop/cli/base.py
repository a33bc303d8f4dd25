"""What every command module shares: the ``alignloop`` Typer app, the console, the option types and
which config keys each command offers as flags."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="alignloop",
    help="Align a language model with human preferences, end to end.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console(stderr=True)

ProjectDir = Annotated[Path, typer.Option("--project", "-p", help="Project directory (holds alignloop.yaml).")]
Resume = Annotated[bool, typer.Option(help="Continue the run in --output from its latest checkpoint.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing run directory.")]
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
