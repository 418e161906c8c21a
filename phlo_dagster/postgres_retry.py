"""How long the Dagster processes phlo_dagster runs retry PostgreSQL connections: PHLO_POSTGRES_RETRY_SECONDS.

dagster-postgres opens every storage connection (a new one per call under its NullPool; the webserver's pooled
ones too) through ``dagster_postgres.utils.retry_pg_connection_fn``, which gives up after 6 tries over about
11 s: a step that writes an event during a longer outage fails and the event is lost. Every caller passes no
``retry_limit``, so putting this module's drop-in where dagster-postgres looks the function up gives each of
those connections a budget in seconds instead: tries 0.2 s apart, the wait doubling to at most 5 s, until
the budget is spent. ``install()`` does it in the process that calls it: the webserver and the daemon (`phlo
webserver`, `phlo daemon`) and every process that loads the code location (phlo_dagster.definitions: code
servers, run workers, their step processes, Kubernetes run pods).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, TypeVar

from phlo_dagster.constants import ENV_POSTGRES_RETRY_SECONDS
from phlo_dagster.settings import SettingsError

__all__ = [
    "DEFAULT_BUDGET_SECONDS",
    "budget_seconds",
    "install",
    "retry_pg_connection_fn",
    "retry_within",
    "waits",
]

T = TypeVar("T")

DEFAULT_BUDGET_SECONDS = 300.0
FIRST_WAIT_SECONDS = 0.2
MAX_WAIT_SECONDS = 5.0
PATCHED_MODULE = "dagster_postgres.utils"
FUNCTION = "retry_pg_connection_fn"

log = logging.getLogger(__name__)

_budget = DEFAULT_BUDGET_SECONDS
_library_fn: Callable[..., Any] | None = None  # dagster-postgres's own, for callers that pass retry_limit


def budget_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """PHLO_POSTGRES_RETRY_SECONDS (unset or empty: 300); 0 tries once. Anything else is a SettingsError."""
    raw = environ.get(ENV_POSTGRES_RETRY_SECONDS, "").strip()
    if not raw:
        return DEFAULT_BUDGET_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise SettingsError(f"{ENV_POSTGRES_RETRY_SECONDS}={raw!r}: expected a number of seconds >= 0")
    return value


def waits(attempt: int) -> float:
    """The wait after the attempt-th failed try: 0.2 s, doubling, at most 5 s."""
    return min(FIRST_WAIT_SECONDS * 2.0 ** min(attempt - 1, 10), MAX_WAIT_SECONDS)


def retry_within(
    fn: Callable[[], T],
    budget: float,
    retry_on: tuple[type[BaseException], ...],
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], object] | None = None,
) -> T:
    """fn's result, trying again on retry_on until budget seconds have passed since the first try; the last
    failure is raised as it is. clock and sleep: time's, by default."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    deadline = clock() + budget
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except retry_on as exc:
            left = deadline - clock()
            if left <= 0:
                raise
            log.warning(
                "Retrying failed database connection (try %d, %.0f s of %s=%g left): %s",
                attempt,
                left,
                ENV_POSTGRES_RETRY_SECONDS,
                budget,
                exc,
            )
            sleep(min(waits(attempt), left))


def retry_pg_connection_fn(fn: Callable[[], T], retry_limit: int | None = None, retry_wait: float = 0.2) -> T:
    """dagster-postgres's function with the installed budget; a caller's explicit retry_limit keeps the
    library's own count of tries."""
    import sqlalchemy.exc
    from dagster_postgres.utils import DagsterPostgresException

    if retry_limit is not None and _library_fn is not None:
        return _library_fn(fn, retry_limit=retry_limit, retry_wait=retry_wait)  # type: ignore[no-any-return]
    retry_on = (sqlalchemy.exc.DatabaseError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError)
    try:
        return retry_within(fn, _budget, retry_on)
    except retry_on as exc:
        within = f"{ENV_POSTGRES_RETRY_SECONDS}={_budget:g}"
        raise DagsterPostgresException(f"too many retries for DB connection (none within {within})") from exc


def _patch(utils: ModuleType) -> None:
    """Our function wherever dagster-postgres's modules hold theirs (the storages import it by name)."""
    global _library_fn
    library = getattr(utils, FUNCTION)
    if library is retry_pg_connection_fn:
        return
    _library_fn = library
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] == "dagster_postgres" and getattr(module, FUNCTION, None) is library:
            setattr(module, FUNCTION, retry_pg_connection_fn)


class _PatchWhenImported(importlib.abc.MetaPathFinder):
    """Patches dagster_postgres.utils as soon as it has run, before the storages import from it. Importing
    it ourselves would cost every code-location process 0.5-1.7 s with a SQLite instance."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != PATCHED_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install(environ: Mapping[str, str] = os.environ) -> float:
    """Give this process's PostgreSQL connections the budget of environ (see budget_seconds); returns it.
    Idempotent; a process that never imports dagster-postgres pays nothing."""
    global _budget
    _budget = budget_seconds(environ)
    utils = sys.modules.get(PATCHED_MODULE)
    if utils is not None:
        _patch(utils)
    elif not any(isinstance(finder, _PatchWhenImported) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchWhenImported())
    return _budget
