"""Experiment tracking through accelerate's trackers (TensorBoard, Weights & Biases, MLflow, Trackio).

``metrics.jsonl`` stays the record of every run; a tracker is a copy of the same numbers for the
dashboard a team already uses. Each training stage (reward model, RL, DPO) has a ``report_to``
setting: its trainer builds its ``Accelerator`` with ``accelerator_options(report_to)``, calls
``start`` once the run directory exists, ``log`` next to each ``run.log`` and ``finish``
when it stops. The tracker's project is ``alignloop`` and its run is named after the run directory;
TensorBoard writes its event files under ``<run>/tensorboard/alignloop/``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from alignloop.errors import AlignloopError

ReportTo = Literal["none", "tensorboard", "wandb", "mlflow", "trackio"]
PROJECT = "alignloop"
REPORT_TO_HELP = (
    "Experiment tracker of the metrics (besides metrics.jsonl): none, tensorboard, wandb, mlflow or trackio."
)


def accelerator_options(report_to: str) -> dict[str, Any]:
    """``Accelerator(**…)`` keywords for ``report_to``. The tracker's package must be installed: accelerate
    would otherwise leave the tracker out without a word. The logging directory given here is a
    placeholder that ``start`` replaces with the run directory, which is decided later."""
    if report_to == "none":
        return {}
    if importlib.util.find_spec(report_to) is None:
        raise AlignloopError(f"report_to {report_to} needs the {report_to} package: pip install {report_to}")
    return {"log_with": report_to, "project_dir": "."}


def start(accelerator: Any, report_to: str, run_dir: Path, config: Any) -> None:
    """Start the tracker of ``report_to`` for the run in ``run_dir``, with ``config`` (a pydantic model)
    as its hyperparameters. Call it on every process (accelerate starts trackers on the main one)."""
    if report_to == "none":
        return
    accelerator.project_configuration.logging_dir = str(Path(run_dir) / "tensorboard")
    name = Path(run_dir).name
    init_kwargs = {
        "wandb": {"name": name, "dir": str(run_dir)},
        "mlflow": {"run_name": name},
        "trackio": {"name": name},
    }
    accelerator.init_trackers(PROJECT, config=hyperparameters(config.model_dump()), init_kwargs=init_kwargs)


def log(accelerator: Any, record: dict[str, Any], step: int) -> None:
    """The numbers of one ``metrics.jsonl`` record, at ``step`` (a no-op without a tracker)."""
    if accelerator.trackers:
        scalars = {key: value for key, value in record.items() if key != "step" and _is_number(value)}
        accelerator.log(scalars, step=step)


def hyperparameters(values: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A config as flat ``section.key`` scalars: TensorBoard's hparams take no lists, dicts or None."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(hyperparameters(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            flat[prefix + key] = value
        else:
            flat[prefix + key] = str(value)
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def finish(accelerator: Any) -> None:
    """Flush and close the run's trackers. Not ``accelerator.end_training()``: that also destroys the
    process group, and a distributed run still synchronises its processes after training."""
    for tracker in accelerator.trackers:
        tracker.finish()
