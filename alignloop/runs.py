"""Run directories: ``runs/<name>/`` with the resolved config, metrics, checkpoints, plots and the final model.

Every training or evaluation stage writes the same layout, so the report and the
next stage find things in the same place::

    runs/<name>/config.yaml      the full resolved config
    runs/<name>/metrics.jsonl    one JSON object per step (keys namespaced: rm/accuracy, ppo/kl)
    runs/<name>/checkpoints/     step-<n>/ folders, newest last; ``latest`` names the newest complete one
    runs/<name>/model/           the final model (save_pretrained) and tokenizer
    runs/<name>/plots/*.png      curves
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from alignloop.config import dump_config, load_config, nest_dotted, validate_config
from alignloop.errors import AlignloopError, InputError

M = TypeVar("M", bound=BaseModel)


class RunDir:
    """A run directory. Creating one for a fresh run refuses an existing non-empty directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunDir:
        run = cls(path)
        if run.path.exists() and any(run.path.iterdir()) and not resume:
            if not overwrite:
                raise AlignloopError(
                    f"run directory {run.path} is not empty; pass --resume to continue it or --overwrite to replace it"
                )
            shutil.rmtree(run.path)
        for sub in ("checkpoints", "plots"):
            (run.path / sub).mkdir(parents=True, exist_ok=True)
        return run

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def save_config(self, config: BaseModel) -> None:
        dump_config(config, self.config_file)

    def log(self, metrics: dict[str, Any]) -> None:
        """Append one metrics record (flushed, so a crash keeps everything logged so far)."""
        with self.metrics_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(metrics, default=_jsonable) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_metrics(self, keep_while: str, upto: int) -> None:
        """On resume, drop metrics logged after the checkpoint (``record[keep_while] > upto``)."""
        truncate_jsonl(self.metrics_file, keep_while, upto)

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}"

    def commit_checkpoint(self, staging: Path, step: int, keep: int = 2) -> Path:
        """Atomically publish a fully written checkpoint folder and prune old ones."""
        final = self.checkpoint_dir(step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        (self.checkpoints / "latest").write_text(final.name, encoding="utf-8")
        done = sorted(p for p in self.checkpoints.glob("step-*") if p.is_dir())
        for old in done[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def staging_dir(self) -> Path:
        staging = self.checkpoints / ".staging"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return staging

    def latest_checkpoint(self) -> Path | None:
        marker = self.checkpoints / "latest"
        if not marker.exists():
            return None
        path = self.checkpoints / marker.read_text(encoding="utf-8").strip()
        return path if path.exists() else None

    def plot(
        self,
        name: str,
        series: dict[str, Sequence[tuple[float, float]]],
        *,
        xlabel: str,
        ylabel: str,
    ) -> Path:
        """Save a line plot of one or more (x, y) series as ``plots/<name>.png``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        for label, points in series.items():
            pts = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=label, marker="o" if len(pts) < 30 else None, markersize=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend()
        fig.tight_layout()
        out = self.plots / f"{name}.png"
        fig.savefig(out)
        plt.close(fig)
        return out


def require_reward_run(run_dir: str | Path, flag: str) -> None:
    """Refuse a reward-model run directory that holds no trained model (before any sampling)."""
    if not (Path(run_dir) / "model" / "config.json").exists():
        what = (
            "no such directory" if not Path(run_dir).exists() else "holds no trained reward model (model/config.json)"
        )
        raise InputError(f"{run_dir}: {what}; train one with `alignloop train-reward`", field=flag)


def stage_run_dir(output: str | Path | None, project: str | Path | None, stage: str, *, resume: bool = False) -> Path:
    """Where a run of ``stage`` (``reward``, ``dpo``, ``ppo``, ``eval``, ...) writes: the one rule of every stage.

    ``output`` when given (a relative path is relative to the working directory, like any path
    on a command line); else ``<project>/runs/<stage>-<n>`` (``runs/<stage>-<n>`` without a
    project) with ``n`` one more than the newest such run, or the newest itself when resuming.
    """
    if output:
        return Path(output)
    base = Path(project) / "runs" if project else Path("runs")
    taken = [int(p.name.rpartition("-")[2]) for p in base.glob(f"{stage}-*") if p.name.rpartition("-")[2].isdigit()]
    newest = max(taken, default=0)
    if resume and not newest:
        raise AlignloopError(f"no {stage} run to resume in {base}; give its directory with --output")
    return base / f"{stage}-{newest if resume else newest + 1}"


def resolve_run_config(
    model: type[M], config_file: str | Path | None, overrides: dict[str, Any], *, stage: str, resume: bool = False
) -> M:
    """A run's config: the YAML ``config_file`` with ``overrides`` (dotted keys such as ``ppo.clip``
    reach into sections) applied over it. Resuming without a file reads the config saved in the run
    directory, so a resumed run keeps its settings while overrides (a larger ``max_steps``) still apply.

    ``None`` means "not given" (a flag left out), except for a dotted key, which may set a field to null.
    """
    fields = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in overrides.items()
        if value is not None or "." in key
    }
    if config_file is None and resume:
        saved = stage_run_dir(fields.get("output"), fields.get("project"), stage, resume=True) / "config.yaml"
        config_file = saved if saved.exists() else None
    if config_file is not None:
        return load_config(model, config_file, fields)
    return validate_config(model, nest_dotted(fields))


def truncate_jsonl(path: Path, keep_while: str, upto: int) -> None:
    """Drop the records of a JSONL log with ``record[keep_while] > upto``, atomically; no file, nothing to do."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get(keep_while, 0) <= upto]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def series(metrics: Iterable[dict[str, Any]], x: str, y: str) -> list[tuple[float, float]]:
    """(x, y) points of the records that have both keys."""
    return [(m[x], m[y]) for m in metrics if x in m and y in m]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to metrics")
