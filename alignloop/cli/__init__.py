"""The ``alignloop`` command line: one command per stage, thin (parse, call the API, print).

Errors the user can act on (``AlignloopError``) are printed as one line on stderr with
a non-zero exit status, without a traceback. The commands live in one module per kind
(``project``, ``training``, ``labeling``, ``loop``), each adding its commands to ``base.app``.
"""

from __future__ import annotations

import sys

import typer

# Each module adds its commands to the app as it is imported, in the order `alignloop --help` lists them.
from alignloop.cli import project, training, labeling, loop  # noqa: F401  # isort: skip
from alignloop.cli.base import app, console
from alignloop.errors import AlignloopError

__all__ = ["app", "main"]


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
