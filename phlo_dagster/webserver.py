"""Dagster's own webserver app with a Prometheus /metrics route on the same port, served by uvicorn."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from dagster._cli.utils import get_possibly_temporary_instance_for_cli
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_webserver.version import __version__ as webserver_version
from dagster_webserver.webserver import DagsterWebserver
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from phlo_dagster.console import CliError
from phlo_dagster.constants import METRICS_PATH
from phlo_dagster.metrics import DagsterCollector, registry_for, workspace_locations
from phlo_dagster.postgres_retry import install as install_postgres_retry

log = logging.getLogger("phlo.webserver")

# The webserver's own defaults, matching `dagster-webserver`.
DB_STATEMENT_TIMEOUT_MS = 15000
DB_POOL_RECYCLE_S = 3600
DB_POOL_MAX_OVERFLOW = 20
LIVE_DATA_POLL_RATE_MS = 2000


def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection leaving the pool answers SELECT 1 first; a dead one (its database restarted) is
    replaced by the pool, which retries the checkout with a new connection (SQLAlchemy's pessimistic
    disconnect handling through a checkout listener)."""
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            with contextlib.suppress(Exception):
                cursor.close()
    except Exception as exc:  # the driver's own error type: psycopg2, sqlite3, ...
        raise sqlalchemy.exc.DisconnectionError(f"pooled connection is dead: {exc}") from exc


def ping_pooled_connections() -> None:
    """Check every pooled database connection of this process before use. optimize_for_webserver gives each
    storage one held connection and never checks it: after PostgreSQL restarted, each storage's first
    query failed ("server closed the connection unexpectedly"), e.g. the first launch after the outage
    (tests/integration/test_dev_postgres_outage.py). The daemon and run workers open a new connection per
    use and need nothing."""
    if not sqlalchemy.event.contains(sqlalchemy.pool.Pool, "checkout", _ping):
        sqlalchemy.event.listen(sqlalchemy.pool.Pool, "checkout", _ping)


class MetricsWebserver(DagsterWebserver[Any, Any]):
    """DagsterWebserver whose routes gain /metrics ahead of the UI's catch-all route."""

    def __init__(
        self, process_context: WorkspaceProcessContext, path_prefix: str = "", **kwargs: Any
    ) -> None:
        super().__init__(process_context, path_prefix, **kwargs)
        collector = DagsterCollector(process_context.instance, locations=workspace_locations(process_context))
        self.metrics_collector = collector
        self._metrics_registry = registry_for(collector)
        self._metrics_prefix = path_prefix

    async def metrics_endpoint(self, _request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, self._metrics_registry)
        # 0.0.4 is the text format every Prometheus release parses (the client's default now says 1.0.0).
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    def build_routes(self) -> list[BaseRoute]:
        extra: list[BaseRoute] = [Route(METRICS_PATH, self.metrics_endpoint, methods=["GET"])]
        if self._metrics_prefix:
            extra.append(Route(self._metrics_prefix + METRICS_PATH, self.metrics_endpoint, methods=["GET"]))
        return [*extra, *super().build_routes()]  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def _lifespan(_app: Starlette) -> AsyncIterator[None]:
    """Ctrl-C cancels the lifespan task; that is a normal stop, not an error."""
    with contextlib.suppress(Exception):
        yield


def create_app(
    process_context: WorkspaceProcessContext, path_prefix: str = "", *, prime_metrics: bool = False
) -> Starlette:
    """The ASGI app: Dagster's UI and /graphql, plus /metrics (and <prefix>/metrics under a path prefix).

    With prime_metrics, a background thread reads the run and event history while the server starts, so the
    first scrape is as quick as later ones (without delaying readiness when the history is long).
    """
    if path_prefix and (not path_prefix.startswith("/") or path_prefix.endswith("/")):
        raise CliError(f"--path-prefix {path_prefix!r}: must start with '/' and not end with '/'")
    server = MetricsWebserver(process_context, path_prefix, live_data_poll_rate=LIVE_DATA_POLL_RATE_MS)
    if prime_metrics:
        threading.Thread(
            target=server.metrics_collector.prime, name="phlo-metrics-prime", daemon=True
        ).start()
    return server.create_asgi_app(lifespan=_lifespan)


def serve(
    host: str,
    port: int,
    workspace: Path,
    path_prefix: str = "",
    log_level: str = "warning",
    read_only: bool = False,
) -> None:
    """Load the workspace against the instance in DAGSTER_HOME and serve until SIGINT/SIGTERM; read_only:
    Dagster's read-only mode (the UI and GraphQL refuse mutations)."""
    import uvicorn

    if not workspace.is_file():
        raise CliError(f"--workspace {workspace}: no such file")
    install_postgres_retry()
    with get_possibly_temporary_instance_for_cli("phlo webserver", logger=log) as instance:
        instance.optimize_for_webserver(DB_STATEMENT_TIMEOUT_MS, DB_POOL_RECYCLE_S, DB_POOL_MAX_OVERFLOW)
        ping_pooled_connections()
        with WorkspaceProcessContext(
            instance,
            version=webserver_version,
            read_only=read_only,
            workspace_load_target=WorkspaceFileTarget(paths=[str(workspace)]),
        ) as context:
            app = create_app(context, path_prefix, prime_metrics=True)
            log.info(
                "serving Dagster UI, /graphql and %s on http://%s:%s%s", METRICS_PATH, host, port, path_prefix
            )
            uvicorn.run(app, host=host, port=port, log_level=log_level)
