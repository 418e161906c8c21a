"""`python -m phlo_operator.generate`: regenerate every committed artifact; one function per artifact."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from phlo_operator import crdgen, vocabulary
from phlo_operator.chart import generate as chart_generate
from phlo_operator.doctext import replace_block

Generator = Callable[[Path], list[Path]]
VOCABULARY_BLOCK = ("vocabulary", "operator/phlo_operator/vocabulary.py")
VOCABULARY_FILES = (Path("docs/operator.md"),)


def vocabulary_files(root: Path) -> dict[Path, str]:
    """The docs with their vocabulary tables (condition types and reasons, Event reasons, components)."""
    table = vocabulary.markdown()
    return {
        path: replace_block((root / path).read_text(), *VOCABULARY_BLOCK, table, path)
        for path in VOCABULARY_FILES
    }


def write_vocabulary(root: Path) -> list[Path]:
    written = []
    for path, content in vocabulary_files(root).items():
        if (root / path).read_text() != content:
            (root / path).write_text(content)
            written.append(path)
    return written


INSTANCE_SCHEMA = Path("operator/phlo_operator/dagster_instance_schema.json")


def instance_schema_text() -> str:
    """Dagster's instance config schema, exported by the runtime package in a process of its own (the operator
    never imports Dagster)."""
    command = [sys.executable, "-m", "phlo_dagster.instance_schema"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def write_instance_schema(root: Path) -> list[Path]:
    text = instance_schema_text()
    path = root / INSTANCE_SCHEMA
    if path.exists() and path.read_text() == text:
        return []
    path.write_text(text)
    return [INSTANCE_SCHEMA]


# name -> function(repo_root) returning the files it wrote. Other areas append their generators here.
GENERATORS: dict[str, Generator] = {
    "crd": crdgen.write,
    "chart": chart_generate.write_files,  # after "crd": the chart embeds a copy of the CRD
    "vocabulary": write_vocabulary,
    "instance-schema": write_instance_schema,
}


def main(argv: list[str] | None = None) -> int:
    """Run the selected (default: all) generators against the repository root."""
    parser = argparse.ArgumentParser(prog="python -m phlo_operator.generate", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    parser.add_argument("only", nargs="*", help=f"generators to run (default: all of {sorted(GENERATORS)})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    unknown = sorted(set(args.only) - set(GENERATORS))
    if unknown:
        parser.error(f"unknown generator(s) {unknown}; choose from {sorted(GENERATORS)}")
    for name in args.only or list(GENERATORS):
        for path in GENERATORS[name](args.root):
            logging.getLogger("phlo_operator.generate").info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
