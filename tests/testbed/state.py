"""state.json: what a running bed consists of (PIDs, ports, paths), shared by `up`, `down` and fixtures."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FILE = "state.json"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".state.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read(directory: Path) -> dict[str, Any]:
    """The recorded state, or {} when nothing (readable) is recorded."""
    try:
        data = json.loads((directory / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update(directory: Path, key: str, value: dict[str, Any] | None) -> None:
    """Set (or with None, drop) one part of the state; the file disappears once empty."""
    with _locked(directory):
        data = read(directory)
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        path = directory / FILE
        if not data:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
