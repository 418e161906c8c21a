"""The CLI's one output channel: progress and results go here; a failure is one line and an exit code."""

from __future__ import annotations

import sys
from typing import NoReturn, TextIO

from phlo_dagster.text import one_line


class CliError(Exception):
    """A failure the user can act on: one line naming the input and the problem, never a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def out(message: str, stream: TextIO | None = None) -> None:
    """A result line, for the user or a script (stdout)."""
    print(message, file=stream or sys.stdout, flush=True)


def progress(message: str, stream: TextIO | None = None) -> None:
    """A progress line for long work (stderr, so stdout stays parseable)."""
    print(f"phlo: {message}", file=stream or sys.stderr, flush=True)


def fail(message: str, exit_code: int = 1) -> NoReturn:
    """Print the one-line cause and exit non-zero."""
    print(f"phlo: error: {one_line(str(message)) or 'failed'}", file=sys.stderr, flush=True)
    raise SystemExit(exit_code)
