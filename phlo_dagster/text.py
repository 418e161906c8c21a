"""Messages folded to one line: the runtime's CLI errors, warnings and hook output, and the operator's Events.

Standard library only (the operator imports it without Dagster), like constants.py.
"""

from __future__ import annotations

__all__ = ["first_line", "last_line", "nonblank_lines", "one_line"]


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
