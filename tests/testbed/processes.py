"""Start, watch and stop the test bed's background processes by PID; pick free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class TestbedError(RuntimeError):
    """The test bed could not be started or used; the message says which part and why."""

    __test__ = False  # not a pytest test class despite the name


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free on 127.0.0.1, all distinct (held open together while choosing)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass(frozen=True)
class Process:
    """A background process we started: its name, PID, executable and log file."""

    name: str
    pid: int
    executable: str
    log: Path

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "executable": self.executable, "log": str(self.log)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Process:
        return cls(str(data["name"]), int(str(data["pid"])), str(data["executable"]), Path(str(data["log"])))


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    executable: str | None = None,
) -> Process:
    """Start argv detached from our session (it may outlive us), stdout+stderr appended to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    # Popen keeps a handle to reap the child; dropping it is fine, the PID is what we track.
    _children[child.pid] = child
    return Process(name, child.pid, executable or os.path.basename(argv[0]), log)


# Children started by this interpreter, so they can be reaped (no zombies that look alive to kill(pid, 0)).
_children: dict[int, subprocess.Popen[bytes]] = {}


def alive(process: Process) -> bool:
    """True while the PID runs the executable we started (guards against PID reuse)."""
    child = _children.get(process.pid)
    if child is not None:  # started by this interpreter: the handle knows for sure
        return child.poll() is None
    try:
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{process.pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    if not cmdline:  # mid-exec the kernel reports an empty command line
        return True
    argv0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    return os.path.basename(argv0) == process.executable or process.executable.encode() in cmdline


def stop(process: Process, grace: float = 10.0, first_signal: int = signal.SIGTERM) -> None:
    """Signal the process (SIGTERM unless told), SIGKILL after the grace period; no-op once it exited."""
    if not alive(process):
        _reap(process.pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, first_signal)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(process):
            _reap(process.pid)
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    for _ in range(50):
        if not alive(process):
            break
        time.sleep(0.1)
    _reap(process.pid)


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)


def http_ok(url: str) -> bool:
    """Whether a GET of url answers 200 within 2 s (a connection refused or an error status: False)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def request_log(process: Process) -> list[str]:
    """The requests a bed server logged with Go's log package (`date time METHOD /path STATUS`), each as
    `METHOD /path STATUS`."""
    log = process.log.read_text() if process.log.exists() else ""
    return [line.split(" ", 2)[2] for line in log.splitlines() if line.count(" ") >= 4 and " /" in line]


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    processes: Sequence[Process] = (),
    interval: float = 0.25,
) -> None:
    """Poll check() until true; fail early with the log tail when one of processes exits."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if not alive(process):
                raise TestbedError(
                    f"{process.name} exited while waiting for {what}; last log lines of {process.log}:\n"
                    f"{tail(process.log)}"
                )
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} ({p.log}):\n{tail(p.log, 15)}" for p in processes)
            raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(interval)
