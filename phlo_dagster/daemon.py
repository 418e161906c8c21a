"""`phlo daemon`: Dagster's daemon, with its health served over HTTP from the same process.

Kubernetes used to probe the daemon with `dagster-daemon liveness-check`: an exec probe that starts a new
Python process, imports Dagster and opens the instance on every probe. On a loaded 2-core node that took over
30 s, the probes timed out, and the kubelet restarted a daemon that was launching runs and ticking schedules
all along. Here a probe is one heartbeat query on an instance opened once, answered by a thread of the
daemon's process.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from phlo_dagster.constants import DAEMON_HEALTH_PATH

log = logging.getLogger("phlo_dagster.daemon")


class Health:
    """Whether every daemon the instance requires wrote a heartbeat within the tolerance Dagster's own
    liveness check uses (DAGSTER_DAEMON_HEARTBEAT_TOLERANCE, 300 s by default)."""

    def __init__(self, instance: Any = None) -> None:
        self._instance = instance
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, str]:
        from dagster._daemon.cli import _get_heartbeat_tolerance
        from dagster._daemon.controller import all_daemons_live

        with self._lock:  # one query at a time, whatever the number of probes waiting
            try:
                if self._instance is None:
                    from dagster import DagsterInstance

                    self._instance = DagsterInstance.get()
                tolerance: int = _get_heartbeat_tolerance()  # type: ignore[no-untyped-call]
                live = all_daemons_live(self._instance, heartbeat_tolerance_seconds=tolerance)
            except Exception as exc:  # the instance's database unreachable: not live, and say why
                return False, f"instance unreadable: {type(exc).__name__}"
        return live, "daemon live" if live else "daemon heartbeats missing or stale"


def serve_health(host: str, port: int, health: Health) -> ThreadingHTTPServer:
    """GET /healthz: 200 when live, 503 otherwise (the reason in the body); served by a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != DAEMON_HEALTH_PATH:
                self.send_error(404)
                return
            live, reason = health.check()
            body = (reason + "\n").encode()
            self.send_response(200 if live else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not logged
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="phlo-daemon-health", daemon=True).start()
    return server


def run(workspace: Path, host: str, port: int | None) -> None:
    """The PostgreSQL retry budget, the health endpoint (with a port), then `dagster-daemon run -w workspace`
    in this process until it stops."""
    from dagster._daemon.cli import run_command

    from phlo_dagster.postgres_retry import install

    install()  # the daemon's PostgreSQL connections retried for $PHLO_POSTGRES_RETRY_SECONDS
    if port is not None:
        serve_health(host, port, Health())
    run_command.main(args=["-w", str(workspace)], prog_name="phlo daemon")
