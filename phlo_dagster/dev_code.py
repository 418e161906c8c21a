"""`phlo dev`'s code servers: one per code location, shared by the webserver and the daemon.

Left to themselves, the webserver and the daemon each start a code server for every Python entry of
workspace.yaml, so the definitions load twice at start-up and after every reload. `phlo dev` starts one
`dagster code-server start` per location instead (the reloadable server `dagster dev` uses too) and gives
both services a workspace of `grpc_server` entries pointing at them. An entry this module does not fully
understand (no explicit location_name, an unknown key) is passed through unchanged: the services load it
themselves, as before.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phlo_dagster.console import CliError
from phlo_dagster.services import port_in_use

LOOPBACK = "127.0.0.1"
# workspace.yaml's Python entries: the key naming the code, and the flag of `dagster code-server start`.
_TARGETS = {
    "python_module": ("module_name", "--module-name"),
    "python_package": ("package_name", "--package-name"),
    "python_file": ("relative_path", "--python-file"),
}
_OPTIONAL_KEYS = frozenset({"attribute", "working_directory", "executable_path"})


@dataclass(frozen=True)
class CodeServer:
    """One shared code server: its location, its command and where it listens."""

    location: str
    argv: tuple[str, ...]
    port: int


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _shareable(entry: Any) -> tuple[str, dict[str, Any]] | None:
    """(kind, settings) of a Python entry with an explicit location name and only known keys, else None."""
    if not isinstance(entry, dict) or len(entry) != 1:
        return None
    ((kind, settings),) = entry.items()
    if kind not in _TARGETS or not isinstance(settings, dict):
        return None
    target_key = _TARGETS[kind][0]
    if set(settings) - {target_key, "location_name"} - _OPTIONAL_KEYS:
        return None
    values = [settings.get(target_key), settings.get("location_name")]
    values += [settings[k] for k in _OPTIONAL_KEYS if k in settings]
    if not all(isinstance(v, str) and v for v in values):
        return None
    return kind, settings


def shared_workspace(
    workspace: Mapping[str, Any], base_dir: Path, next_port: Callable[[], int]
) -> tuple[dict[str, Any], list[CodeServer]]:
    """The workspace the services get, and the code servers it points at.

    Relative paths (python_file, working_directory) are resolved against base_dir, the folder of the
    workspace file, as Dagster resolves them.
    """
    entries = workspace.get("load_from") or []
    load_from: list[Any] = []
    servers: list[CodeServer] = []
    for entry in entries:
        found = _shareable(entry)
        if found is None:
            load_from.append(entry)
            continue
        kind, settings = found
        target_key, flag = _TARGETS[kind]
        target = settings[target_key]
        if kind == "python_file":
            target = str(base_dir / target)
        location = settings["location_name"]
        port = next_port()
        argv = [
            settings.get("executable_path", sys.executable),
            "-m",
            "dagster",
            "code-server",
            "start",
            flag,
            target,
            "--location-name",
            location,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ]
        if "attribute" in settings:
            argv += ["--attribute", settings["attribute"]]
        if "working_directory" in settings:
            argv += ["--working-directory", str(base_dir / settings["working_directory"])]
        servers.append(CodeServer(location, tuple(argv), port))
        load_from.append({"grpc_server": {"host": LOOPBACK, "port": port, "location_name": location}})
    return {**workspace, "load_from": load_from}, servers


def wait_serving(
    servers: Sequence[CodeServer],
    procs: Mapping[str, subprocess.Popen[bytes]],  # by location name
    timeout: float,
) -> None:
    """Wait until every code server accepts connections: it has loaded its code (or holds the error that
    stopped it, which the webserver then shows). A server that exits is an error naming its location;
    timeout 0 waits forever."""
    deadline = time.monotonic() + timeout if timeout > 0 else None
    waiting = list(servers)
    while waiting:
        for server in list(waiting):
            proc = procs[server.location]
            if proc.poll() is not None:
                raise CliError(
                    f"code server of location {server.location} exited with code {proc.returncode} "
                    "while loading; see its output above"
                )
            if port_in_use(LOOPBACK, server.port):
                waiting.remove(server)
        if not waiting:
            return
        if deadline is not None and time.monotonic() >= deadline:
            names = ", ".join(s.location for s in waiting)
            raise CliError(
                f"the code server of location {names} did not start serving within {timeout:.0f}s "
                "(its start plus --load-timeout)"
            )
        time.sleep(0.2)
