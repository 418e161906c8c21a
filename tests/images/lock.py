"""requirements.lock: its inputs' hash (a stale lock is caught without network) and its pins.

The lock is made by `make lock` (uv pip compile, universal: valid on Python 3.11 and 3.12); this module stamps
it with the sha256 of the dependency declarations it was made from, so a test can tell they changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
HASH_PREFIX = "# inputs-sha256: "


def declared() -> dict[str, object]:
    """What the lock is resolved from: pyproject's dependencies and extras, operator/requirements.txt."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    operator = [
        line.split("#", 1)[0].strip()
        for line in (REPO / "operator" / "requirements.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip() and not line.lstrip().startswith("-")
    ]
    return {
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "operator/requirements.txt": operator,
    }


def inputs_hash() -> str:
    return hashlib.sha256(json.dumps(declared(), sort_keys=True).encode()).hexdigest()


def recorded_hash(lock: Path = LOCK) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(HASH_PREFIX):
            return line[len(HASH_PREFIX) :].split()[0]
    return None


def stamp(lock: Path = LOCK) -> None:
    """Writes (or replaces) the hash line right after the tool's header comment."""
    lines = [line for line in lock.read_text().splitlines() if not line.startswith(HASH_PREFIX)]
    at = 0
    while at < len(lines) and lines[at].startswith("#"):
        at += 1
    note = f"{HASH_PREFIX}{inputs_hash()} (pyproject.toml dependencies and extras, operator/requirements.txt)"
    lines.insert(at, note)
    lock.write_text("\n".join(lines) + "\n")


def pins(lock: Path = LOCK) -> list[tuple[str, str, str]]:
    """(normalised name, version, environment marker or "") for every `name==version` line."""
    out = []
    for line in lock.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        requirement, _, marker = line.partition(";")
        name, sep, version = requirement.partition("==")
        if sep:
            out.append((re.sub(r"[-_.]+", "-", name.strip()).lower(), version.strip(), marker.strip()))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["stamp"]:
        stamp(Path(sys.argv[2]) if len(sys.argv) > 2 else LOCK)
    else:
        print(inputs_hash())
