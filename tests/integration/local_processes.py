"""What the dbt-project and demo tests share: a local process started in its own session with its output in a
log file, and its stop (SIGTERM, then SIGKILL of its group)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def start_logged(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        session = {"stdout": out, "stderr": subprocess.STDOUT, "start_new_session": True}
        return subprocess.Popen(list(argv), cwd=cwd, env=dict(env), **session)  # type: ignore[call-overload]


def stop(proc: subprocess.Popen[bytes], timeout: float = 90) -> int:
    """SIGTERM, wait up to timeout, then SIGKILL the process group; the exit code."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return int(proc.returncode)
