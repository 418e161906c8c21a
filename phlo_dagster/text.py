"""Messages folded to one line (the operator's Events, hook output) or kept as a block of their meaningful
lines (the CLI's errors and warnings).

Standard library only (the operator imports it without Dagster), like constants.py.
"""

from __future__ import annotations

import re
import textwrap

__all__ = ["BLOCK_LINES", "block_lines", "first_line", "last_line", "nonblank_lines", "one_line"]

BLOCK_LINES = 40
BLOCK_WIDTH = 500
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def nonblank_lines(text: str) -> list[str]:
    """The lines of text that are not blank, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def one_line(text: str, limit: int | None = None) -> str:
    """text's white space (newlines too) folded to single spaces; cut to limit characters, ending '...'."""
    folded = " ".join(text.split())
    if limit is None or len(folded) <= limit:
        return folded
    return folded[: max(limit - 3, 0)] + "..."


def first_line(text: str) -> str:
    """The first line that is not blank, stripped ('' when there is none)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def last_line(text: str) -> str:
    """The last line that is not blank, stripped ('' when there is none)."""
    lines = nonblank_lines(text)
    return lines[-1] if lines else ""


def block_lines(text: str, limit: int = BLOCK_LINES) -> list[str]:
    """text's non-blank lines with their relative indentation (a caret stays under its LINE), at most limit.

    The cause of a failure as a readable block: a dbt or DuckDB error keeps every line that says what is
    wrong (the valid target names, the offending SQL line), not just its first or last line. Terminal colour
    codes (dbt's) are dropped.
    """
    dedented = textwrap.dedent(_ANSI.sub("", text).expandtabs()).splitlines()
    lines = [_cut(line.rstrip(), BLOCK_WIDTH) for line in dedented if line.strip()]
    if len(lines) > limit:
        lines = [*lines[: limit - 1], f"... ({len(lines) - limit + 1} more lines)"]
    return lines


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."
