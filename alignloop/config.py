"""Typed configuration: the project file ``alignloop.yaml`` and the loader every stage uses.

Each stage owns its config model (``GenerateConfig`` here, with what the prompt and sampling commands
choose per run: ``AddPromptsConfig``, ``PromptSelection``, ``NextRoundConfig``, ``ListPromptsConfig``;
``RewardConfig`` in ``alignloop.reward``; ``PPOConfig`` in ``alignloop.rl``). All are pydantic models that
forbid unknown keys and document every field; ``load_config`` reads one from YAML and
turns a validation failure into an ``ConfigError`` naming the file, line and key.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from alignloop.errors import ConfigError, InputError
from alignloop.task_types import TASK_TYPES, task_type_help, training_task_types

PROJECT_FILE = "alignloop.yaml"


class StageConfig(BaseModel):
    """Base for every config: unknown keys are errors, assignments are validated.

    Old spellings of a stage's keys are declared on its model: ``renamed_keys`` maps a key that
    only changed its name to the new one (still accepted, with a ``FutureWarning``), and
    ``retired_keys`` maps a key whose meaning changed to what to write instead (refused).
    ``flags`` gives a key its command-line spellings where they are not derived from its name
    (``round_index`` → ``--round``, ``project`` → ``--project``/``-p``); the first one names the key in errors.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    renamed_keys: ClassVar[dict[str, str]] = {}
    retired_keys: ClassVar[dict[str, str]] = {}
    flags: ClassVar[dict[str, tuple[str, ...]]] = {}

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not (cls.renamed_keys or cls.retired_keys):
            return data
        for old in data.keys() & cls.retired_keys.keys():
            raise PydanticCustomError("retired_key", "{key}: {hint}", {"key": old, "hint": cls.retired_keys[old]})
        data = dict(data)
        for old in data.keys() & cls.renamed_keys.keys():
            new = cls.renamed_keys[old]
            if new in data:
                raise PydanticCustomError(
                    "renamed_key", "give {new} only ({old} is its old name)", {"new": new, "old": old}
                )
            warnings.warn(f"{old} is now called {new}; the old name will stop working", FutureWarning, stacklevel=2)
            data[new] = data.pop(old)
        return data


# A policy's `merge_lora` (RL and DPO; a reward model is always saved merged): one help text, a default per stage.
MERGE_LORA_HELP = "Merge the LoRA adapter into the weights of the saved final model/ (loadable as a plain policy)."


class LoraSettings(BaseModel):
    """The LoRA settings of every stage that trains weights, declared once.

    ``lora_r`` is the one switch (0 = no LoRA, fine-tune every weight) and rank. Its default is 16
    (a policy: RL and DPO); the reward model sets 0. ``lora_targets`` left unset means the stage's
    own choice: a policy's attention projections ``q_proj`` and ``v_proj``, every linear layer of
    a reward model's backbone.
    """

    lora_r: int = Field(
        16,
        ge=0,
        description=(
            "LoRA rank; 0 fine-tunes every weight (the reference is the adapter disabled, or a frozen copy "
            "without LoRA)."
        ),
    )
    lora_alpha: float = Field(32.0, gt=0, description="LoRA scaling numerator (the update is scaled by alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_targets: list[str] | None = Field(
        None,
        description=(
            "Module names that get LoRA adapters (the last part of the name), or `[all-linear]` for every linear "
            "layer but the output head; unset: a policy's `q_proj` and `v_proj`, every linear layer of a reward "
            "model's backbone."
        ),
    )


# Rows sampled together by the generate stage, `evaluate` and the over-optimisation curve. On a CPU a decode step
# costs less per row in a larger batch: on the 2-core AVX-512 BF16 EPYC, 32 prompts × 8 samples of 48 tokens ran at
# 10.2–10.8 completions/s at 128 rows against 7.9–8.9 at 64 in bf16 (6.8–6.9 against 6.4–6.5 in float32), and no
# faster at 256 (benchmarks.md, "Sampling 128 rows at a time").
SAMPLING_ROWS = 128


class GenerateConfig(StageConfig):
    """Sampling K completions per prompt."""

    model: str = Field("default", description="Policy to sample from: `default`, a local path or a hub id.")
    k: int = Field(4, ge=1, le=64, description="Completions per prompt in a round.")
    temperature: float = Field(0.9, gt=0, description="Sampling temperature.")
    top_p: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Nucleus sampling: keep the smallest token set with this probability mass.",
    )
    max_new_tokens: int = Field(96, ge=1, description="Longest completion, in tokens.")
    batch_size: int = Field(
        SAMPLING_ROWS,
        ge=1,
        description="Sequences sampled together (prompts x samples); larger batches amortise each decode step.",
    )
    seed: int = Field(
        0,
        description="Base seed; each completion's seed is derived from it, the prompt and the sample index.",
    )
    backend: Literal["hf", "vllm"] = Field(
        "hf", description="Generation backend: `hf` (transformers generate) or `vllm` (GPU)."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description=(
            "Weights dtype while sampling: `auto` is bfloat16 on a GPU that supports it and on a CPU that computes "
            "bf16 natively and measured it faster (a cached probe), else float32."
        ),
    )


class DatasetSource(BaseModel):
    """What is read of a ``datasets`` directory or hub dataset id, declared once for ``prompts add`` and
    ``import-pairs`` (each takes the source itself as its argument)."""

    split: str | None = Field(None, description="Split of a datasets directory or hub id to read.")
    subset: str | None = Field(None, description="Subset (configuration) of a hub dataset.")


class AddPromptsConfig(StageConfig, DatasetSource):
    """How ``alignloop prompts add`` reads its source, or that it adds the built-in set."""

    builtin: bool = Field(False, description="Add the built-in prompt set shipped with alignloop.")
    column: str | None = Field(
        None, description="Column holding the prompt in CSV or datasets input (default: prompt)."
    )


Split = Literal["train", "test"]


class PromptSelection(StageConfig):
    """Which of the project's prompts ``alignloop generate`` samples: chosen per run, so not keys of
    ``alignloop.yaml``."""

    split: Split | None = Field(None, description="Only prompts of this split (train or test).")
    limit: int | None = Field(None, ge=1, description="Only the first N prompts (by id).")


class NextRoundConfig(StageConfig):
    """What ``alignloop round next`` samples: which policy answers, and how many fresh prompts of each split."""

    policy: str | None = Field(None, description="Policy to sample from (default: the newest trained policy).")
    prompts: int | None = Field(None, ge=1, description="Sample at most this many fresh train prompts.")
    test_prompts: int = Field(
        0,
        ge=0,
        description="Also sample this many fresh test-split prompts, so a held-out reward model retrained on the "
        "test split's labels knows the new policy's answers.",
    )


class ListPromptsConfig(PromptSelection):
    """Which of the project's prompts ``alignloop prompts list`` shows: ``generate``'s selection, with a limit
    by default."""

    limit: int = Field(20, ge=1, description="Show at most this many.")


class SplitConfig(StageConfig):
    """How prompts are assigned to the train and test splits."""

    test_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of prompts held out for evaluation, chosen by a hash of the prompt text.",
    )
    seed: int = Field(0, description="Salt of that hash; change it to draw a different split.")


TaskTypeName = TASK_TYPES.literal(training_task_types())


class LabelingConfig(StageConfig):
    """How the labeling app hands out tasks."""

    task_type: TaskTypeName = Field("ranking", description=f"The labeling task: {task_type_help()}.")  # type: ignore[valid-type]
    overlap: int = Field(3, ge=1, le=50, description="Distinct labelers who judge each prompt.")
    assignment: Literal["least_judged", "uncertainty"] = Field(
        "least_judged",
        description="Which open prompt comes next: the least-judged, or the highest `alignloop prioritize` priority.",
    )
    allow_ties: bool = Field(False, description="Whether a ranking may place completions level with each other.")
    display_seed: int | None = Field(
        None,
        description="Seed of the order each labeler sees a task's completions in (shuffled per labeler and task, "
        "to measure position bias); unset, each order is drawn afresh. A seeded run (the demo) sets it to repeat.",
    )
    lease_minutes: float = Field(
        30.0,
        gt=0,
        description="A task taken and not submitted within this time returns to the pool.",
    )
    invite_days: float = Field(
        7.0, gt=0, description="An invite link not used within this many days expires; an admin issues a new one."
    )
    criterion: str = Field("helpfulness", description="What labelers judge, shown with the guidelines.")
    max_body_kib: int = Field(256, ge=1, description="Largest request body the app accepts (KiB); larger ones get 413.")
    request_timeout_s: float = Field(
        30.0, gt=0, description="A request that has not started its response in this time gets 503."
    )


class ProjectConfig(StageConfig):
    """The project file, ``alignloop.yaml``."""

    name: str = Field(..., min_length=1, description="Project name, shown in the labeling app.")
    database: str = Field(
        "sqlite:///alignloop.db",
        description="SQLAlchemy URL of the feedback store; a relative SQLite path is relative to the project dir.",
    )
    generate: GenerateConfig = Field(default_factory=GenerateConfig, description="Sampling completions.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/test split of prompts.")
    labeling: LabelingConfig = Field(default_factory=LabelingConfig, description="Labeling tasks.")


M = TypeVar("M", bound=BaseModel)


def _key_lines(node: yaml.Node, prefix: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], int]:
    """Map each key path in a YAML document to its 1-based line number."""
    lines: dict[tuple[str | int, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            path = (*prefix, i)
            lines[path] = value.start_mark.line + 1
            lines.update(_key_lines(value, path))
    return lines


def validate_config(model: type[M], data: Any, *, file: str | Path | None = None, lines: dict | None = None) -> M:
    """Validate ``data`` as ``model``; the first error becomes a ``ConfigError`` naming the key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or None
        line = None
        if lines:
            for n in range(len(loc), 0, -1):
                if loc[:n] in lines:
                    line = lines[loc[:n]]
                    break
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "extra_forbidden":
            known = _known_keys(model, loc[:-1])
            if known:
                message += f" (known keys: {', '.join(known)})"
        raise ConfigError(message, file=file, line=line, field=key) from None


def run_dir_help(stage: str) -> str:
    """The help of every stage's ``output``: the one rule for run directories (``runs.stage_run_dir``)."""
    return (
        f"Run directory; default `<project>/runs/{stage}-<n>` (or `runs/{stage}-<n>` without a project), "
        "n one past the newest, the newest itself when resuming."
    )


def flag_name(key: str, model: type[BaseModel] | None = None) -> str:
    """The command-line flag of a config key: ``k`` → ``-k``, ``max_new_tokens`` → ``--max-new-tokens``,
    or the first of the spellings ``model.flags`` declares for it (``round_index`` → ``--round``)."""
    declared = getattr(model, "flags", {}).get(key)
    if declared:
        return declared[0].partition("/")[0]
    return f"-{key}" if len(key) == 1 else "--" + key.replace("_", "-")


def settings_from(model: type[M], settings: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> M:
    """``model`` from keyword settings (each an API keyword and a CLI flag) over ``base``.

    A value that does not validate is an ``InputError`` naming the flag it came from (an item of a
    list, ``rounds.0``, by its list's flag).
    """
    try:
        return validate_config(model, {**(base or {}), **settings})
    except ConfigError as exc:
        key = (exc.field or "").split(".")[0]
        if key in settings:
            raise InputError(exc.message, field=flag_name(key, model)) from None
        raise


def own_settings(model: type[M], settings: Mapping[str, Any]) -> tuple[M, dict[str, Any]]:
    """``model`` from the keys of ``settings`` that are its fields (as ``settings_from``), and the other keys.

    For an API function that takes the keys of two models as keywords: ``next_round`` its own and ``generate:``'s.
    """
    own = {key: value for key, value in settings.items() if key in model.model_fields}
    return settings_from(model, own), {key: value for key, value in settings.items() if key not in own}


def _known_keys(model: type[BaseModel], parent: tuple) -> list[str]:
    current: Any = model
    for part in parent:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        current = field.annotation
    return sorted(current.model_fields)


def load_config(model: type[M], path: str | Path, overrides: dict[str, Any] | None = None) -> M:
    """Read ``model`` from a YAML file, then apply ``overrides`` (dotted keys, e.g. from CLI flags)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", file=path) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            file=path,
            line=mark.line + 1 if mark else None,
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys to values at the top level", file=path, line=1)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return validate_config(model, data, file=path, lines=_key_lines(node) if node else {})


def nest_dotted(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"ppo.clip": 0.1}`` → ``{"ppo": {"clip": 0.1}}``: dotted override keys as the nested mapping a model reads."""
    data: dict[str, Any] = {}
    for dotted, value in flat.items():
        _set_dotted(data, dotted, value)
    return data


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write the full resolved config as YAML (every field, defaults included)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")


def config_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, Any]]:
    """Every (dotted key, help, default) of a config model, nested sections included; used by the docs test."""
    rows: list[tuple[str, str, Any]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(config_fields(annotation, key + "."))
        else:
            rows.append((key, field.description or "", field.default))
    return rows
