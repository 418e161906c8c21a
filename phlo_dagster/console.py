"""The CLI's one output channel: progress and results go here; a failure is one block and an exit code.

A message's first line follows `phlo: error:` (or `phlo: WARNING:`); its further lines, the cause as dbt or
Python gave it, follow indented by two spaces. Never a traceback (unless `phlo --debug`).
"""

from __future__ import annotations

import sys
from typing import NoReturn, TextIO

from phlo_dagster.text import block_lines, last_line


class CliError(Exception):
    """A failure the user can act on: a first line naming the input and the problem, then its cause."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def out(message: str, stream: TextIO | None = None) -> None:
    """A result line, for the user or a script (stdout)."""
    print(message, file=stream or sys.stdout, flush=True)


def progress(message: str, stream: TextIO | None = None) -> None:
    """A progress line for long work (stderr, so stdout stays parseable)."""
    print(f"phlo: {message}", file=stream or sys.stderr, flush=True)


def labelled(label: str, message: str) -> str:
    """'phlo: <label>: <first line>' and the message's further lines indented below it."""
    lines = block_lines(str(message)) or ["failed"]
    return "\n".join([f"phlo: {label}: {lines[0].strip()}", *(f"  {line}" for line in lines[1:])])


def warn(message: str, stream: TextIO | None = None) -> None:
    """A loud warning block on stderr: something is wrong but the command goes on."""
    print(labelled("WARNING", message), file=stream or sys.stderr, flush=True)


def fail(message: str, exit_code: int = 1) -> NoReturn:
    """Print the cause (one line, or a first line and the indented cause) and exit non-zero."""
    print(labelled("error", message), file=sys.stderr, flush=True)
    raise SystemExit(exit_code)


def error_block(stderr: str) -> str:
    """The last `phlo: error:` block of a `phlo` command's stderr (its first line and the indented cause)."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("phlo: error: ")]
    if not starts:
        return last_line(stderr)
    head, *rest = lines[starts[-1] :]
    cause = [line.removeprefix("  ") for line in rest if line.startswith("  ")]
    return "\n".join([head.removeprefix("phlo: error: "), *cause])
