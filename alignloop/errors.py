"""Project exceptions. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

from pathlib import Path


class AlignloopError(Exception):
    """An error the user can act on; its message says what is wrong and what to do."""


class InputError(AlignloopError):
    """Bad input in a file or request, located by file, line and field where known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        super().__init__(self.located())

    def located(self) -> str:
        """``file:line: field: message``, leaving out the parts that are unknown."""
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"


class ConfigError(InputError):
    """A configuration file or flag that does not validate."""


class TaskRefused(AlignloopError):
    """A labeling request the rules refuse; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TrainingDiverged(AlignloopError):
    """Loss or reward became NaN/inf; the last good checkpoint is kept."""
