"""`phlo dev`'s watch on the dbt project: a change to its inputs recompiles it and reloads the code location.

The inputs are the files the project hash covers (dbt.is_project_input) and profiles.yml. Changes are
collected by a watchdog observer thread and handled in `phlo dev`'s own loop once they have settled (no
change for `settle_s`), so an editor's save of several files is one compile. The compile is `phlo dbt
compile` in a child process (skipped when the content is unchanged, e.g. a file saved as it was); only a
compile that produced a new manifest reloads the location.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phlo_dagster import graphql
from phlo_dagster.console import error_block, progress, warn
from phlo_dagster.dbt import is_project_input
from phlo_dagster.text import last_line

__all__ = ["DbtWatch", "recompile_and_reload"]

SETTLE_S = 1.0
PROFILES = "profiles.yml"


class DbtWatch:
    """Changed inputs of one dbt project, as seen by a file-system observer (inotify on Linux)."""

    def __init__(
        self, project_dir: Path, profiles_dir: Path, target_path: Path, settle_s: float = SETTLE_S
    ) -> None:
        self.project_dir = project_dir.resolve()
        self.profiles_dir = profiles_dir.resolve()
        self.target_path = target_path.resolve()
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self._changed: set[Path] = set()
        self._last = 0.0
        self._observer: Any = None

    def is_input(self, path: Path) -> bool:
        if path == self.profiles_dir / PROFILES:
            return True
        return is_project_input(path, self.project_dir, self.target_path)

    def note(self, path: str | bytes, is_directory: bool, now: float) -> None:
        """Record one file-system event's path when it is an input (a directory removed or renamed under the
        project counts: the files in it went with it)."""
        where = Path(path.decode() if isinstance(path, bytes) else path)
        if is_directory:
            inside = where.is_relative_to(self.project_dir) and not where.is_relative_to(self.target_path)
            rel = where.relative_to(self.project_dir).parts if inside else ()
            relevant = inside and bool(rel) and not any(p.startswith(".") for p in rel)
            relevant = relevant and rel[0] not in ("target", "dbt_packages", "logs")
        else:
            relevant = self.is_input(where)
        if relevant:
            with self._lock:
                self._changed.add(where)
                self._last = now

    def take(self, now: float) -> list[Path]:
        """The changed inputs once no change came for settle_s (then forgotten), else []."""
        with self._lock:
            if not self._changed or now - self._last < self.settle_s:
                return []
            changed, self._changed = sorted(self._changed), set()
        return changed

    def start(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        watch = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                now = time.monotonic()
                directory = event.is_directory and event.event_type in ("deleted", "moved")
                if event.is_directory and not directory:
                    return
                watch.note(event.src_path, directory, now)
                if getattr(event, "dest_path", ""):
                    watch.note(event.dest_path, directory, now)

        observer = Observer()
        observer.daemon = True
        observer.schedule(Handler(), str(self.project_dir), recursive=True)
        if not self.profiles_dir.is_relative_to(self.project_dir) and self.profiles_dir.is_dir():
            observer.schedule(Handler(), str(self.profiles_dir), recursive=False)
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None


def recompile_and_reload(
    changed: list[Path], *, project: Path, env: Mapping[str, str], url: str, location: str
) -> bool:
    """`phlo dbt compile` after a change; when it wrote a new manifest, reload the code location.

    A failed compile is a warning with dbt's cause (the location keeps its last definitions); returns
    whether the location was reloaded.
    """
    shown = ", ".join(_shown(p, project) for p in changed[:3]) + (" ..." if len(changed) > 3 else "")
    progress(f"dbt project changed ({shown}): compiling")
    argv = [sys.executable, "-m", "phlo_dagster.cli", "dbt", "compile"]
    result = subprocess.run(argv, cwd=project, env=dict(env), capture_output=True, text=True)
    if result.returncode != 0:
        cause = error_block(result.stderr) or last_line(result.stdout) or f"exit code {result.returncode}"
        warn(f"dbt compile after the change failed; code location {location} keeps its definitions\n{cause}")
        return False
    line = last_line(result.stdout)
    if line.startswith("dbt skipped"):
        progress("dbt project unchanged in content; nothing to reload")
        return False
    progress(line)
    try:
        # A reload loads the definitions again (dbt models included) before it answers.
        graphql.reload_location(url, location, timeout=120)
    except graphql.ReloadFailed as exc:
        warn(str(exc))
        return False
    progress(f"code location {location} reloaded with the new dbt manifest")
    return True


def _shown(path: Path, project: Path) -> str:
    return str(path.relative_to(project)) if path.is_relative_to(project) else str(path)
