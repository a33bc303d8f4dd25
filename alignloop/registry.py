"""Registries: the one place each kind of extensible thing is declared.

Four kinds of thing have several interchangeable variants, and each variant is declared
once, as an entry of a ``Registry``:

- pairs formats (``alignloop.pairs.formats.FORMATS``): how pairs are written and read;
- labeling task types (``alignloop.task_types.TASK_TYPES``): validation, page fragment,
  pairs rule and simulated labeler of one kind of task;
- RL algorithms (``alignloop.rl.config.ALGORITHMS``): an algorithm's config section and
  the class with its advantages and loss;
- labeling tools (``alignloop.bridges.tools.TOOLS``): reading a tool's annotated export and
  writing tasks in its import format.

Everything that lists or accepts the variants — config choices, CLI help, the labeling
API's schema, the admin pages, the docs tests — reads the registry instead of keeping
its own list. This module is import-light (no third-party imports), so the CLI can
build its help from the registries and stay instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, Literal, Protocol, TypeVar

from alignloop.errors import InputError


class Named(Protocol):
    name: str


E = TypeVar("E", bound=Named)


class Registry(Generic[E]):
    """Entries of one kind by name, in registration order (the order users see them listed in).

    Iterating yields the names; ``registry[name]`` the entry, or an ``InputError`` that lists the
    choices; ``choices()`` the names as a sentence for help texts.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind  # what an entry is, for messages: "pairs format", "task type", "algorithm"
        self._entries: dict[str, E] = {}

    def register(self, entry: E) -> E:
        """Add ``entry``; a second entry under the same name is a programming error."""
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice")
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str, *, field: str | None = None) -> E:
        """The entry called ``name``; an unknown name is an ``InputError`` on ``field`` naming the choices."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise InputError(f"unknown {self.kind} {name!r} (choose from {', '.join(self)})", field=field) from None

    def __getitem__(self, name: str) -> E:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[E]:
        return list(self._entries.values())

    def choices(self, names: list[str] | None = None, *, last: str = "or") -> str:
        """``"a, b or c"``: the names (all, or those given) as they read in a help text."""
        names = list(self) if names is None else names
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"

    def literal(self, names: list[str] | None = None) -> Any:
        """``Literal["a", "b", ...]`` of the names (all, or those given), for pydantic and FastAPI schemas."""
        return Literal[tuple(list(self) if names is None else names)]  # type: ignore[valid-type]
