"""Command-line options derived from the stage configs: each setting is declared once, as its pydantic field.

``@config_options(Model, "key", ...)`` gives a Typer command one option per named field of
``Model``: the flag is the key (``max_steps`` → ``--max-steps``, ``k`` → ``-k``, a bool
``--merge-lora/--no-merge-lora``) or the spellings ``Model.flags`` declares for it, and the
type, the help text, the bounds (``ge``/``le``) and the default shown in ``--help`` are the
field's; a field without a default is a required option. The command receives what the user
gave as ``overrides`` (config key → value): an option left out is absent, so the ``--config``
file or the field's default applies. ``set_option=True`` adds ``--set KEY=VALUE`` for every other key (dotted keys reach
into sections, the value is read as YAML). The old spelling of a renamed key
(``Model.renamed_keys``) stays a hidden flag; the model accepts it with a warning. Stacked, the decorators
of two models give one command the keys of both in one ``overrides`` (``round next``: its own and ``-k``).

The API functions take the same keys as keyword arguments and validate them with the same
model, so a flag, a keyword and a YAML key are one declaration.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from alignloop.config import flag_name
from alignloop.errors import AlignloopError

Command = Callable[..., None]


def config_options(
    model: type[BaseModel],
    *keys: str,
    flags: Mapping[str, tuple[str, ...]] | None = None,
    set_option: bool = False,
) -> Callable[[Command], Command]:
    """Add an option per config key in ``keys`` to the decorated command, which takes ``overrides``.

    ``flags`` gives a key other spellings than the derived one (``{"project": ("--project", "-p")}``).
    """
    flags = flags or {}
    renamed = {old: new for old, new in getattr(model, "renamed_keys", {}).items() if new in keys}

    def decorate(command: Command) -> Command:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "overrides"]
        derived = [_parameter(model, key, flags.get(key), required=key not in renamed.values()) for key in keys]
        hidden = [_parameter(model, new, (flag_name(old),), name=old, hidden=True) for old, new in renamed.items()]
        extra = [_set_parameter()] if set_option else []

        @functools.wraps(command)
        def run(**given: Any) -> None:
            overrides: dict[str, Any] = {**given.pop("overrides", {})}  # an outer config_options' keys
            if set_option:
                overrides.update(parse_set(given.pop("set_", None) or []))
            for key in (*keys, *renamed):
                value = given.pop(key)
                if value is not None:
                    overrides[key] = value
            command(**given, overrides=overrides)

        run.__signature__ = inspect.Signature([*own, *derived, *hidden, *extra])  # type: ignore[attr-defined]
        return run

    return decorate


def _parameter(
    model: type[BaseModel],
    key: str,
    decls: tuple[str, ...] | None,
    *,
    name: str | None = None,
    hidden: bool = False,
    required: bool = False,
) -> inspect.Parameter:
    """The Typer parameter of config key ``key`` (named ``name``, for an old spelling), defaulting to None.

    A field without a default is a required option when ``required`` (not for a key that also has an old
    spelling: either may be given, and the model refuses neither).
    """
    field = model.model_fields[key]
    kind = _unwrap_optional(field.annotation)
    decls = decls or getattr(model, "flags", {}).get(key)
    if decls is None:
        flag = flag_name(key)
        decls = (f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,)
    low, high = _bounds(field)
    if required and field.is_required():
        option = typer.Option(*decls, help=field.description, hidden=hidden, min=low, max=high)
        return inspect.Parameter(name or key, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option])
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    shown: str | bool = False if default is None or default == "" or default == [] else _show(default)
    option = typer.Option(*decls, help=field.description, show_default=shown, hidden=hidden, min=low, max=high)
    return inspect.Parameter(
        name or key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
    )


def _bounds(field: FieldInfo) -> tuple[float | None, float | None]:
    """The field's inclusive bounds as Typer's ``min``/``max``: out of range is a usage error (exit 2), as
    for any option; exclusive bounds (``gt``, ``lt``) are left to the model."""
    low = next((rule.ge for rule in field.metadata if isinstance(rule, annotated_types.Ge)), None)
    high = next((rule.le for rule in field.metadata if isinstance(rule, annotated_types.Le)), None)
    return low, high  # type: ignore[return-value]


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` → ``X``; the option itself is always optional (left out = not given)."""
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        if len(kinds) == 1:
            return kinds[0]
    return annotation


def _show(default: Any) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list):
        return ", ".join(map(str, default))
    return str(default)


def _set_parameter() -> inspect.Parameter:
    option = typer.Option(
        "--set", help="Any other config key, e.g. --set ppo.clip=0.1 (repeatable; the value is read as YAML)."
    )
    return inspect.Parameter(
        "set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[list[str] | None, option]
    )


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as a dict, each value read as a YAML scalar (a number, a boolean, a string)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AlignloopError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
