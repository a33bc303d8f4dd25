"""The Python API: one function per CLI command, same names and arguments.

    from alignloop import api
    api.init("myproj")
    api.add_prompts("myproj", builtin=True)
    api.generate("myproj", k=4)

Each function imports its stage lazily, so ``import alignloop.api`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alignloop.project import ProjectHandle, init_project

if TYPE_CHECKING:
    from alignloop.generate import GenerateResult
    from alignloop.prompts import AddResult


def init(directory: str | Path, *, name: str | None = None, database: str | None = None) -> ProjectHandle:
    """Create a project directory with ``alignloop.yaml`` and a migrated store."""
    return init_project(directory, name=name, database=database)


def add_prompts(
    project: str | Path,
    file: str | Path | None = None,
    *,
    builtin: bool = False,
    column: str | None = None,
) -> AddResult:
    """Import prompts from a file (or the built-in set) into the project; all or nothing."""
    from alignloop.project import open_project
    from alignloop.prompts import add_prompts as store_prompts
    from alignloop.prompts import builtin_prompts_path, read_prompt_file

    source = builtin_prompts_path() if builtin else Path(file)  # type: ignore[arg-type]
    rows = read_prompt_file(source, column)
    handle = open_project(project)
    try:
        return store_prompts(handle, rows, "builtin" if builtin else str(source))
    finally:
        handle.close()


def list_prompts(project: str | Path, *, split: str | None = None, limit: int = 20) -> list[dict]:
    """The project's prompts (id, split, text), oldest first."""
    from sqlalchemy import select

    from alignloop.project import open_project
    from alignloop.store import Prompt

    handle = open_project(project)
    try:
        with handle.store.session() as s:
            query = select(Prompt).where(Prompt.project_id == handle.project_id).order_by(Prompt.id).limit(limit)
            if split:
                query = query.where(Prompt.split == split)
            return [{"id": p.id, "split": p.split, "text": p.text} for p in s.scalars(query)]
    finally:
        handle.close()


def generate(
    project: str | Path,
    *,
    split: str | None = None,
    limit: int | None = None,
    progress: bool = False,
    **overrides: object,
) -> GenerateResult:
    """Sample completions for the current round; ``overrides`` replace ``generate:`` keys of alignloop.yaml."""
    from alignloop.config import GenerateConfig, validate_config
    from alignloop.generate import generate_completions
    from alignloop.project import open_project

    handle = open_project(project)
    try:
        config = validate_config(GenerateConfig, {**handle.config.generate.model_dump(), **overrides})
        return generate_completions(handle, config, split=split, limit=limit, progress=progress)
    finally:
        handle.close()


def train_dpo(
    pairs: str | Path | None = None,
    *,
    project: str | Path | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **overrides: object,
):  # -> alignloop.rl.dpo.DPORunResult
    """DPO on a pairs file or a project's pairs. ``config`` is a YAML file of ``DPOConfig`` keys;
    ``overrides`` (e.g. ``policy=``, ``beta=``) replace its values. ``resume`` continues the run
    in ``output`` from its latest checkpoint, with the config saved there unless another is given."""
    from alignloop.config import load_config, validate_config
    from alignloop.rl.dpo import train_dpo as run_dpo
    from alignloop.rl.dpo_config import DPOConfig

    fields = {key: value for key, value in overrides.items() if value is not None}
    if pairs is not None:
        fields["pairs"] = str(pairs)
    if project is not None:
        fields["project"] = str(project)
    if config is None and resume:
        output = fields.get("output") or Path(str(fields.get("project") or ".")) / "runs" / "dpo"
        saved = Path(str(output)) / "config.yaml"
        config = saved if saved.exists() else None
    if config is not None:
        resolved = load_config(DPOConfig, config, fields)
    else:
        resolved = validate_config(DPOConfig, fields)
    return run_dpo(resolved, resume=resume, overwrite=overwrite, progress=progress)


def train_reward(
    pairs: str | Path | None = None,
    *,
    project: str | Path | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **overrides: object,
):  # -> alignloop.reward.RewardRunResult
    """Train a reward model on a pairs file or a project's consensus pairs. ``config`` is a YAML
    file of ``RewardConfig`` keys; ``overrides`` (e.g. ``backbone=``, ``epochs=``) replace its values.
    ``resume`` continues the run in ``output`` from its latest checkpoint, with the config saved
    there unless another is given."""
    from alignloop.config import load_config, validate_config
    from alignloop.reward import RewardConfig
    from alignloop.reward import train_reward as run_reward

    fields = {key: value for key, value in overrides.items() if value is not None}
    if pairs is not None:
        fields["pairs"] = str(pairs)
    if project is not None:
        fields["project"] = str(project)
    if config is None and resume and fields.get("output"):
        saved = Path(str(fields["output"])) / "config.yaml"
        config = saved if saved.exists() else None
    if config is not None:
        resolved = load_config(RewardConfig, config, fields)
    else:
        resolved = validate_config(RewardConfig, fields)
    return run_reward(resolved, progress=progress, resume=resume, overwrite=overwrite)


def score(
    reward_model: str | Path, input: str | Path, output: str | Path | None = None, *, batch_size: int = 32
) -> list[dict]:
    """Score a JSONL file with a trained reward model: ``reward`` per prompt/completion row;
    ``reward_chosen``, ``reward_rejected`` and ``p_chosen`` per chosen/rejected row. Writes
    ``output`` (atomically) when given; returns the scored rows."""
    from alignloop.jsonl import write_jsonl
    from alignloop.reward.model import score_file

    rows = score_file(reward_model, input, batch_size=batch_size)
    if output is not None:
        write_jsonl(output, rows)
    return rows


def serve(project: str | Path = ".", *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the labeling web app for ``project`` until interrupted (blocks)."""
    from alignloop.labeling.server import serve as run_server

    run_server(project, host=host, port=port, workers=workers)


def add_labeler(project: str | Path, name: str, *, admin: bool = False, url: str = "http://127.0.0.1:8000") -> str:
    """Create a labeling account; returns its one-time invite link (on the app at ``url``)."""
    from alignloop.labeling.accounts import add_labeler as create
    from alignloop.labeling.accounts import invite_url
    from alignloop.project import open_project

    handle = open_project(project)
    try:
        return invite_url(url, create(handle.store, name, admin=admin))
    finally:
        handle.close()


def list_labelers(project: str | Path = ".") -> list:
    """Every labeling account (``LabelerInfo``: name, role, active, invited, read_guidelines_version)."""
    from alignloop.labeling.accounts import list_labelers as listing
    from alignloop.project import open_project

    handle = open_project(project)
    try:
        return listing(handle.store)
    finally:
        handle.close()


def deactivate_labeler(project: str | Path, name: str) -> None:
    """Lock a labeling account out; its judgements are kept."""
    from alignloop.labeling.accounts import deactivate_labeler as deactivate
    from alignloop.project import open_project

    handle = open_project(project)
    try:
        deactivate(handle.store, name)
    finally:
        handle.close()
