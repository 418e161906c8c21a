"""The root README stays a newcomer's start: short, in its own words, its map and links naming what exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _sentences(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", " ", path.read_text(), flags=re.DOTALL)
    text = " ".join(text.split())
    return {s.strip() for s in re.split(r"(?<=[.!?])\s+|\s-\s", text) if len(s.strip()) > 30}


def test_readme_is_at_most_about_150_lines_and_carries_no_process_comments() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    assert not [ln for ln in lines if "<!--" in ln], "the README has HTML comments (process notes?)"


def test_readme_repeats_no_sentence_of_the_chart_readme() -> None:
    shared = _sentences(README) & _sentences(REPO / "charts" / "phlo-dagster" / "README.md")
    assert not shared, shared


def test_readme_states_the_python_it_needs() -> None:
    assert "Python 3.12" in README.read_text()


def test_readme_links_and_repository_map_point_at_what_exists() -> None:
    text = README.read_text()
    links = re.findall(r"\]\(([^)#:]+)\)", text)
    assert links and not [link for link in links if not (REPO / link).exists()]
    block = re.search(r"## Repository map\n+```\n(.*?)```", text, flags=re.DOTALL)
    assert block, "the README has no repository map"
    folder = REPO
    missing = []
    for line in block.group(1).splitlines():
        names = re.findall(r"[\w./-]+(?:/|\.py)(?=[ ,;]|$)", line)
        if names and not line.startswith(" "):
            folder = REPO / names[0]  # an indented line names what is inside the folder above it
        missing += [name for name in names if not ((REPO / name).exists() or next(folder.rglob(name), None))]
    assert not missing, missing
