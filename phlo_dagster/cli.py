"""The `phlo` command: local development, materialization, services, plugins, dbt and the webserver.

Every failure ends as one block on stderr (a first line naming the input, then the cause as dbt or Python
gave it) and a non-zero exit code (see `main`); no traceback unless `phlo --debug` (or PHLO_DEBUG=1).
Commands print through `phlo_dagster.console` only.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import click

from phlo_dagster import graphql
from phlo_dagster.console import CliError, fail, out, progress, warn
from phlo_dagster.constants import (
    DAEMON_HEALTH_PORT,
    DEFAULT_CODE_LOCATION_NAME,
    DEFAULT_WEBSERVER_PORT,
    ENV_DAGSTER_PORT,
    ENV_DEBUG,
    ENV_WORKFLOWS_PATH,
    METRICS_PATH,
)
from phlo_dagster.dev_code import CodeServer, free_port, shared_workspace, wait_serving
from phlo_dagster.services import (
    DAEMON_SERVICE,
    WEBSERVER_SERVICE,
    DagsterDaemonServicePlugin,
    DagsterServicePlugin,
    LocalServices,
    PhloHome,
    ServiceDefinition,
    http_ok,
    port_in_use,
    render_command,
    spawn,
    terminate_groups,
    write_services_config,
)
from phlo_dagster.text import block_lines, first_line, last_line, one_line

PLUGIN_GROUP_PREFIX = "phlo.plugins."
PORT = click.IntRange(1, 65535)
DEV_START_TIMEOUT_S = 180.0
DEV_LOAD_TIMEOUT_S = 300
LOCATION_POLL_S = 2.0


def default_port() -> int:
    raw = os.environ.get(ENV_DAGSTER_PORT, str(DEFAULT_WEBSERVER_PORT))
    try:
        port = int(raw)
    except ValueError:
        raise CliError(f"{ENV_DAGSTER_PORT}={raw!r}: not a port number") from None
    if not 0 < port < 65536:
        raise CliError(f"{ENV_DAGSTER_PORT}={raw!r}: not a port number (1-65535)")
    return port


def debug_enabled() -> bool:
    """`phlo --debug` or PHLO_DEBUG=1: failures show their traceback (and the services inherit it)."""
    return os.environ.get(ENV_DEBUG, "").strip().lower() in ("1", "true", "yes", "on")


@click.group(name="phlo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help=f"Show tracebacks of failures (also ${ENV_DEBUG}=1).")
def cli(debug: bool) -> None:
    """Run Phlo workflows on Dagster."""
    if debug:
        os.environ[ENV_DEBUG] = "1"


# --- phlo dev ---


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops `phlo dev` the same clean way Ctrl-C does."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Shield a cleanup from Ctrl-C and SIGTERM."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def dev_env(environ: Mapping[str, str], workflows_path: Path | None) -> dict[str, str]:
    """The services' environment: --workflows-path (checked) as WORKFLOWS_PATH, else as the user left it.

    No default is set: unset, a missing workflows/ means "no workflows" (a dbt-only project is served);
    set by the user or --workflows-path, a missing directory is an error.
    """
    env = dict(environ)
    if workflows_path is not None:
        if not workflows_path.is_dir():
            raise CliError(f"--workflows-path {workflows_path}: no such directory")
        env[ENV_WORKFLOWS_PATH] = str(workflows_path)
    return env


class LocationWatch:
    """`phlo dev`'s eye on the code location: a load failure is a loud warning in its own output (the
    webserver would only show it in the UI), a recovery a line, and never loading within the timeout an error.
    """

    def __init__(self, location: str, load_timeout: float, now: float) -> None:
        self.location = location
        self.load_timeout = load_timeout
        self.deadline = now + load_timeout if load_timeout > 0 else None
        self.state = graphql.LocationState("loading")
        self.loaded_once = False

    def observe(self, state: graphql.LocationState, now: float) -> None:
        """Report a change of state; raise CliError when the location has not loaded by the deadline."""
        if state.status != "unreachable":  # a busy webserver is asked again at the next poll
            previous, self.state = self.state, state
            if state != previous:
                self.report(state)
            self.loaded_once = self.loaded_once or state.status == "loaded"
        if not self.loaded_once and self.deadline is not None and now >= self.deadline:
            cause = self.state.error or f"its state is {self.state.status}"
            raise CliError(
                f"code location {self.location} did not load within {self.load_timeout:.0f}s "
                f"(--load-timeout):\n{cause}"
            )

    def report(self, state: graphql.LocationState) -> None:
        if state.status == "failed":
            stop = (
                f"; `phlo dev` stops if not loaded {self.load_timeout:.0f}s after the webserver answered"
                if self.deadline is not None and not self.loaded_once
                else ""
            )
            warn(
                f"code location {self.location} failed to load; the UI shows no assets from it\n"
                f"{state.error or 'no error message'}\n"
                f"fix it, then reload the location (UI: Deployment > {self.location} > Reload){stop}"
            )
        elif state.status == "missing":
            warn(f"code location {self.location} is not in the webserver's workspace")
        elif state.status == "loaded":
            progress(f"code location {self.location} loaded")


def dbt_watch() -> Any:
    """A DbtWatch on the dbt project when PHLO_DBT_ENABLED is true (the services' settings: this process's
    environment), else None; settings the code location will refuse leave it off (the location says why)."""
    from phlo_dagster.dev_watch import DbtWatch
    from phlo_dagster.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError:
        return None
    if not settings.dbt_enabled or not settings.dbt_project_dir.is_dir():
        return None
    return DbtWatch(
        settings.dbt_project_dir, settings.resolved_dbt_profiles_dir, settings.resolved_dbt_target_path
    )


def run_dev(
    host: str,
    port: int | None,
    workflows_path: Path | None,
    load_timeout: float = DEV_LOAD_TIMEOUT_S,
    watch_dbt: bool = True,
) -> None:
    project = Path.cwd()
    port = port if port is not None else default_port()
    env = dev_env(os.environ, workflows_path)
    check_host(host)
    if port_in_use(host, port):
        raise CliError(f"--port {port}: {host}:{port} is already in use")
    home = PhloHome(project)
    home.ensure_instance()
    home.init_storage()
    env.update(home.env())
    services = [DagsterServicePlugin().definition(port), DagsterDaemonServicePlugin().definition()]
    workspace, code_servers = dev_workspace(home)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    files: Any = None
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    with sigterm_as_interrupt():
        try:
            # One code server per location, shared by the webserver and the daemon (the definitions load
            # once, not once per service), serving before either starts, as `dagster dev` does.
            located: dict[str, subprocess.Popen[bytes]] = {}
            for server in code_servers:
                progress(f"starting the code server of location {server.location}")
                located[server.location] = spawn(server.argv, cwd=project, env=env)
                procs[f"code server {server.location}"] = located[server.location]
            # The proxy serves once its code has loaded (or failed to: the webserver then shows why).
            wait_serving(code_servers, located, DEV_START_TIMEOUT_S + load_timeout if load_timeout else 0)
            for definition in services:
                argv = render_command(
                    definition.command, host=host, ports=definition.ports, workspace=workspace
                )
                progress(f"starting {definition.name}")
                procs[definition.name] = spawn(argv, cwd=project, env={**env, **definition.env})
            wait_for_server(url, procs)
            out(f"Dagster UI: {url}  (GraphQL {url}/graphql, metrics {url}{METRICS_PATH})")
            watch = LocationWatch(DEFAULT_CODE_LOCATION_NAME, load_timeout, time.monotonic())
            out(f"instance: {home.root} ({home.storage_kind()} storage); press Ctrl-C to stop")
            files = dbt_watch() if watch_dbt else None
            if files is not None:
                files.start()  # before the post-start compile: a change meanwhile is compiled after it
                progress(f"watching {files.project_dir} for dbt changes")
            dev_post_start(home, services[0], env)
            next_poll = 0.0
            while True:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise CliError(f"{name} exited with code {proc.returncode}; see its output above")
                changed = files.take(time.monotonic()) if files is not None else []
                if changed:
                    from phlo_dagster.dev_watch import recompile_and_reload

                    recompile_and_reload(changed, project=project, env=env, url=url, location=watch.location)
                if time.monotonic() >= next_poll:
                    watch.observe(graphql.location_state(url, watch.location), time.monotonic())
                    next_poll = time.monotonic() + LOCATION_POLL_S
                time.sleep(0.5)
        except KeyboardInterrupt:
            progress("stopping")
        finally:
            if files is not None:
                files.stop()
            with signals_ignored():  # a second Ctrl-C or SIGTERM must not cut the shutdown short
                terminate_groups([proc.pid for proc in procs.values()])
                for proc in procs.values():
                    proc.wait()


def dev_workspace(home: PhloHome) -> tuple[Path, list[CodeServer]]:
    """The workspace `phlo dev` gives its services (.phlo/dev-workspace.yaml) and the shared code servers
    it points at, made from the project's .phlo/workspace.yaml."""
    import yaml

    path = home.workspace_yaml
    try:
        workspace = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: not a readable workspace file ({one_line(str(exc), 200)})") from None
    if not isinstance(workspace, dict) or not isinstance(workspace.get("load_from", []), list):
        raise CliError(f"{path}: expected a mapping with a load_from list, as Dagster's workspace.yaml")
    shared, servers = shared_workspace(workspace, path.parent, free_port)
    if not servers:
        return path, []
    target = home.root / "dev-workspace.yaml"
    target.write_text(
        "# Written by `phlo dev` from workspace.yaml (edit that one): its code servers, shared by the\n"
        "# webserver and the daemon.\n" + yaml.safe_dump(shared, sort_keys=False)
    )
    return target, servers


def check_host(host: str) -> None:
    """--host must be an address of this machine, so the webserver can bind it."""
    try:
        infos = socket.getaddrinfo(host or None, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CliError(f"--host {host}: not an address or resolvable name ({exc})") from None
    for *_, sockaddr in infos:
        with socket.socket(socket.AF_INET6 if ":" in str(sockaddr[0]) else socket.AF_INET) as sock:
            try:
                sock.bind((sockaddr[0], 0))
                return
            except OSError:
                continue
    raise CliError(f"--host {host}: not an address of this machine")


def wait_for_server(url: str, procs: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + DEV_START_TIMEOUT_S
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise CliError(
                    f"{name} exited during start with code {proc.returncode}; see its output above"
                )
        if http_ok(f"{url}/server_info"):
            return
        time.sleep(0.5)
    raise CliError(f"webserver not answering at {url} after {DEV_START_TIMEOUT_S:.0f}s")


def dev_post_start(home: PhloHome, webserver: ServiceDefinition, env: dict[str, str]) -> None:
    """Run the webserver's post-start hooks; in dev a failing hook warns instead of stopping the server."""
    runner = LocalServices(home, definitions=[webserver], extra_env=env)
    for hook in webserver.post_start:
        try:
            runner.run_hook(webserver, hook)
        except CliError as exc:
            warn(str(exc))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface the webserver binds.")
@click.option(
    "--port", type=PORT, default=None, help=f"Webserver port [default: ${ENV_DAGSTER_PORT} or 3000]."
)
@click.option(
    "--workflows-path", type=click.Path(path_type=Path), default=None, help="Directory of workflows."
)
@click.option(
    "--load-timeout",
    type=click.IntRange(0),
    default=DEV_LOAD_TIMEOUT_S,
    show_default=True,
    help="Seconds the code location may take to load before `phlo dev` fails (0: wait forever).",
)
@click.option(
    "--watch/--no-watch",
    default=True,
    show_default=True,
    help="With PHLO_DBT_ENABLED: recompile the dbt project when its files change and reload the location.",
)
def dev(host: str, port: int | None, workflows_path: Path | None, load_timeout: int, watch: bool) -> None:
    """Webserver (with /metrics) and daemon on embedded SQLite under .phlo/, until Ctrl-C."""
    run_dev(host, port, workflows_path, load_timeout, watch_dbt=watch)


# --- phlo materialize ---


def parse_asset_key(text: str) -> Any:
    """'raw/orders' or 'raw.orders' -> AssetKey(['raw', 'orders'])."""
    from dagster import AssetKey

    parts = [p for p in (text.split("/") if "/" in text else text.split(".")) if p]
    if not parts:
        raise CliError(f"asset {text!r}: empty asset key")
    return AssetKey(parts)


def local_instance() -> Any:
    """The project's .phlo/ instance (made on first use): the one `phlo dev` serves, not $DAGSTER_HOME."""
    home = PhloHome(Path.cwd())
    home.ensure_instance()
    return home.open_instance()


def load_definitions() -> Any:
    """The code location's Definitions (importing the module builds them once)."""
    import phlo_dagster.definitions as definitions_module

    return definitions_module.defs


def resolve_asset_keys(
    graph: Any, assets: Sequence[str], select: str | None, dbt_selection: Any = None
) -> set[Any]:
    """The materializable keys named by ASSET arguments, --select and a dbt selection (a DbtSelection:
    --dbt-select, --dbt-exclude, --selector), together; an unknown one is an error."""
    from dagster import AssetSelection

    if not assets and not select and not dbt_selection:
        raise CliError(
            "give at least one ASSET (e.g. raw/orders), --select EXPR or a dbt selection "
            "(--dbt-select, --selector)"
        )
    known = graph.materializable_asset_keys
    keys = set()
    for text in assets:
        key = parse_asset_key(text)
        if key not in known:
            sample = ", ".join(sorted(k.to_user_string() for k in known)[:8]) or "none"
            raise CliError(f"asset {text!r}: not defined (defined: {sample})")
        keys.add(key)
    if select:
        try:
            chosen = AssetSelection.from_string(select).resolve(graph)
        except Exception as exc:
            raise CliError(f"--select {select!r}: {last_line(str(exc)) or type(exc).__name__}") from None
        if not chosen:
            raise CliError(f"--select {select!r}: matches no assets")
        keys |= {k for k in chosen if k in known}
    if dbt_selection:
        keys |= dbt_selected_keys(graph, dbt_selection)
    return keys


def dbt_selected_keys(graph: Any, selection: Any) -> set[Any]:
    """The dbt models a DbtSelection picks, resolved by dbt on the loaded manifest (with selectors.yml)."""
    from phlo_dagster.dbt import DBT_OP_NAME, DbtSelectionError, selection_keys

    found = {id(a): a for a in (graph.get(k).assets_def for k in graph.materializable_asset_keys)}
    dbt_defs = [a for a in found.values() if a.node_def.name == DBT_OP_NAME]
    if not dbt_defs:
        raise CliError(f"{selection.describe()}: no dbt models are defined (is PHLO_DBT_ENABLED true?)")
    from phlo_dagster.settings import load_settings

    try:
        return selection_keys(dbt_defs[0], selection, load_settings().dbt_project_dir.resolve())
    except DbtSelectionError as exc:
        raise CliError(str(exc)) from None


def parse_dbt_vars(text: str | None) -> str:
    """--vars as dbt takes it (a YAML or JSON mapping), checked here so a typo fails before the run."""
    if text is None:
        return ""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"--vars {text!r}: not YAML or JSON ({one_line(str(exc), 200)})") from None
    if not isinstance(value, dict):
        raise CliError(f"--vars {text!r}: not a mapping (e.g. '{{day: 2024-01-01}}' or '{{\"day\": 1}}')")
    return text


def dbt_run_config(graph: Any, keys: set[Any], vars_text: str, full_refresh: bool) -> dict[str, Any]:
    """The dbt step's run config for --vars / --full-refresh; an error when no dbt model is selected."""
    from phlo_dagster.dbt import DBT_OP_NAME

    if not vars_text and not full_refresh:
        return {}
    if not any(graph.get(k).assets_def.node_def.name == DBT_OP_NAME for k in keys):
        flag = "--vars" if vars_text else "--full-refresh"
        raise CliError(f"{flag}: none of the selected assets is a dbt model (is PHLO_DBT_ENABLED true?)")
    return {"ops": {DBT_OP_NAME: {"config": {"vars": vars_text, "full_refresh": full_refresh}}}}


def materialize_assets(
    assets: Sequence[str],
    select: str | None,
    partition: str | None,
    *,
    dbt_vars: str | None = None,
    full_refresh: bool = False,
    dbt_selection: Any = None,
) -> None:
    from dagster._core.definitions.partitions.context import partition_loading_context

    vars_text = parse_dbt_vars(dbt_vars)
    defs = load_definitions()
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    keys = resolve_asset_keys(graph, assets, select, dbt_selection)
    dbt_config = dbt_run_config(graph, keys, vars_text, full_refresh)
    job = repo.get_implicit_job_def_for_assets(keys)
    if job is None:
        raise CliError(
            "the selected assets have different partitions definitions; materialize them separately"
        )
    partitioned = sorted(k.to_user_string() for k in keys if graph.get(k).partitions_def is not None)
    if partition is None and partitioned:
        raise CliError(f"--partition: required, {partitioned[0]} is partitioned")
    if partition is not None and not partitioned:
        raise CliError(f"--partition {partition}: none of the selected assets is partitioned")
    names = ", ".join(sorted(k.to_user_string() for k in keys))
    progress(f"materializing {names}" + (f" (partition {partition})" if partition else ""))
    with local_instance() as instance, terminal_stderr() as progress_stream, dagster_logs_not_repeated():
        if partition is not None:
            with partition_loading_context(dynamic_partitions_store=instance):
                for key in keys:
                    pdef = graph.get(key).partitions_def
                    if pdef is not None and not pdef.has_partition_key(partition):
                        raise CliError(f"--partition {partition}: not a partition of {key.to_user_string()}")
        started = time.monotonic()
        result = job.with_logger_defs({"phlo_progress": progress_logger(progress_stream)}).execute_in_process(
            instance=instance,
            asset_selection=sorted(keys),
            partition_key=partition,
            raise_on_error=False,
            run_config={"loggers": {"phlo_progress": {}}, **dbt_config},
        )
    elapsed = time.monotonic() - started
    if not result.success:
        raise CliError(f"run {result.run_id} failed in {failure_cause(result, debug=debug_enabled())}")
    for event in result.get_asset_materialization_events():
        out(f"materialized {event.asset_key.to_user_string()}" + (f" [{partition}]" if partition else ""))
    out(f"run {result.run_id} succeeded in {elapsed:.1f}s")


PROGRESS_EVENTS = {
    "STEP_START",
    "STEP_SUCCESS",
    "STEP_FAILURE",
    "STEP_UP_FOR_RETRY",
    "ASSET_MATERIALIZATION",
    "ASSET_CHECK_EVALUATION",
    "PIPELINE_START",
    "PIPELINE_SUCCESS",
    "PIPELINE_FAILURE",
}


class ProgressHandler(logging.Handler):
    """One short line per run event on stderr: errors keep their message, never their stack trace."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None)
        if not meta:
            return
        event = meta.get("dagster_event")
        if event is None and record.levelno < logging.INFO:
            return
        if event is not None and event.event_type_value not in PROGRESS_EVENTS:
            return
        progress(
            f"{meta.get('step_key') or 'run'}: {first_line(str(meta.get('orig_message', '')))}", self.stream
        )


@contextmanager
def terminal_stderr() -> Iterator[TextIO]:
    """A copy of stderr that Dagster's compute-log capture cannot redirect.

    During a step Dagster points fd 2 at the step's log file and mirrors it back with `tail -F`, which is
    killed when the step ends: lines written meanwhile can be lost on a busy machine (dagster#23336).
    """
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real file descriptor (e.g. captured in tests)
        yield sys.stderr
        return
    with os.fdopen(fd, "w", buffering=1, encoding="utf-8", errors="replace") as stream:
        yield stream


@contextmanager
def dagster_logs_not_repeated() -> Iterator[None]:
    """Dagster's own python logger (`dagster.builtin`, which dagster-dbt writes to) reaches the run's loggers,
    the progress lines; kept from the root logger's handler too, it printed each line a second time."""
    dagster_log = logging.getLogger("dagster.builtin")
    before = dagster_log.propagate
    dagster_log.propagate = False
    try:
        yield
    finally:
        dagster_log.propagate = before


def progress_logger(stream: TextIO | None = None) -> Any:
    """A Dagster logger definition that reports through ProgressHandler."""
    from dagster import LoggerDefinition

    def phlo_progress(_init_context: Any) -> logging.Logger:
        log = logging.Logger("phlo.progress", level=logging.DEBUG)
        log.addHandler(ProgressHandler(stream))
        return log

    return LoggerDefinition(phlo_progress, description="phlo CLI progress lines")


_DBT_ERRORS_MARK = "Errors parsed from dbt logs:"
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<fn>\S+)')


def failure_cause(result: Any, *, debug: bool = False) -> str:
    """The first failed step and its innermost error (the user's, not Dagster's wrapper) as a block.

    `step X:` then the error's meaningful lines (for dbt, the errors dbt logged: the model or test and why),
    then where in the user's code it was raised; with debug the whole error with its stack instead.
    """
    for event in result.all_events:
        if event.is_step_failure:
            error: Any = getattr(event.event_specific_data, "error", None)
            if error is not None and debug:
                return f"step {event.step_key}:\n{error.to_string()}"
            while error is not None and error.cause is not None:
                error = error.cause
            if error is None:
                return f"step {event.step_key}: failed"
            lines = error_lines(str(error.message))
            where = user_frame(list(error.stack or []), Path.cwd())
            if len(lines) == 1:
                return f"step {event.step_key}: {lines[0]}" + (f" (at {where})" if where else "")
            return "\n".join([f"step {event.step_key}:", *lines, *([f"at {where}"] if where else [])])
    return "a run that failed before any step (see the run's logs)"


def error_lines(message: str) -> list[str]:
    """The lines that say what went wrong: dbt's own errors when dagster-dbt quotes them, else all of them."""
    if _DBT_ERRORS_MARK in message:
        head, _, errors = message.partition(_DBT_ERRORS_MARK)
        code = re.search(r"exit code `?(\d+)`?", head)
        lines = [f"dbt exited with code {code.group(1) if code else '?'}:", *block_lines(errors)]
    else:
        lines = block_lines(message)
    return lines or ["failed"]


def user_frame(stack: Sequence[str], project: Path) -> str:
    """'workflows/x.py:12 in fn': the innermost frame outside installed packages and phlo_dagster, or ''."""
    for entry in reversed(stack):
        match = _FRAME.search(entry)
        if match is None:
            continue
        path = Path(match["file"])
        if "site-packages" in path.parts or "phlo_dagster" in path.parts or not path.is_absolute():
            continue
        if path.is_relative_to(sys.prefix) or path.is_relative_to(sys.base_prefix):
            continue
        shown = path.relative_to(project) if path.is_relative_to(project) else path
        return f"{shown}:{match['line']} in {match['fn']}"
    return ""


@cli.command()
@click.argument("assets", nargs=-1)
@click.option(
    "--select", default=None, help="Dagster asset selection, e.g. 'key:raw/orders+' or 'group:ingestion'."
)
@click.option("--partition", default=None, help="Partition key to materialize.")
@click.option(
    "--vars", "dbt_vars", default=None, help="dbt --vars for the dbt models: a YAML or JSON mapping."
)
@click.option("--full-refresh", is_flag=True, help="dbt --full-refresh: rebuild incremental models.")
@click.option(
    "--dbt-select",
    default=None,
    metavar="EXPR",
    help="dbt models by dbt's --select syntax, e.g. 'tag:nightly', 'path:models/marts', '+customers'.",
)
@click.option(
    "--dbt-exclude",
    default=None,
    metavar="EXPR",
    help="dbt --exclude: leave these dbt models out (of --dbt-select, or of all of them).",
)
@click.option(
    "--selector",
    default=None,
    metavar="NAME",
    help="dbt models of a selector in the dbt project's selectors.yml.",
)
def materialize(
    assets: tuple[str, ...],
    select: str | None,
    partition: str | None,
    dbt_vars: str | None,
    full_refresh: bool,
    dbt_select: str | None,
    dbt_exclude: str | None,
    selector: str | None,
) -> None:
    """Materialize assets in this process against the .phlo/ instance (the one `phlo dev` serves).

    ASSETs, --select and the dbt selection (--dbt-select/--dbt-exclude, or --selector) add up.
    """
    from phlo_dagster.dbt import DbtSelection

    given = (("--dbt-select", dbt_select), ("--dbt-exclude", dbt_exclude), ("--selector", selector))
    for flag, value in given:
        if value is not None and not value.strip():
            raise CliError(f"{flag}: empty")
    dbt_selection = DbtSelection(dbt_select or "", dbt_exclude or "", selector or "")
    materialize_assets(
        assets,
        select,
        partition,
        dbt_vars=dbt_vars,
        full_refresh=full_refresh,
        dbt_selection=dbt_selection or None,
    )


@cli.command()
@click.argument("assets", nargs=-1)
@click.option("--select", default=None, help="Dagster asset selection, e.g. 'group:ingestion'.")
@click.option("--start", default=None, help="First partition key [default: the first partition].")
@click.option("--end", default=None, help="Last partition key [default: the last partition].")
def backfill(assets: tuple[str, ...], select: str | None, start: str | None, end: str | None) -> None:
    """Materialize partitioned assets once per partition from --start to --end (in this process)."""
    from phlo_dagster.cli_runs import backfill_partitions

    backfill_partitions(
        assets,
        select,
        start,
        end,
        load_definitions=load_definitions,
        resolve_keys=resolve_asset_keys,
        materialize=materialize_assets,
    )


@cli.command()
def status() -> None:
    """Each asset's last materialization in .phlo/, and the state of the local services."""
    from phlo_dagster.cli_runs import print_status

    print_status(load_definitions(), PhloHome(Path.cwd()))


@cli.command()
@click.option("--service", type=click.Choice([WEBSERVER_SERVICE, DAEMON_SERVICE]), default=None)
@click.option("--run", "run_id", default=None, help="Show this run's event log instead.")
@click.option("-n", "--lines", type=click.IntRange(0), default=50, show_default=True, help="0: all.")
def logs(service: str | None, run_id: str | None, lines: int) -> None:
    """The last lines of the local services' logs (.phlo/logs), or one run's events."""
    from phlo_dagster.cli_runs import print_logs

    print_logs(PhloHome(Path.cwd()), service, run_id, lines)


# --- phlo services ---


@cli.group()
def services() -> None:
    """Run the Dagster services as local background processes (state under .phlo/)."""


SERVICE_CHOICE = click.Choice([WEBSERVER_SERVICE, DAEMON_SERVICE])


@services.command("init")
@click.option("--dev", "dev_mode", is_flag=True, help="Run services from a phlo-dagster source checkout.")
@click.option(
    "--phlo-source", type=click.Path(path_type=Path), default=None, help="The checkout (with --dev)."
)
@click.option("--port", type=PORT, default=None, help="Webserver port [default: $DAGSTER_PORT or 3000].")
def services_init(dev_mode: bool, phlo_source: Path | None, port: int | None) -> None:
    """Write .phlo/ (dagster.yaml, workspace.yaml, services.yaml)."""
    path = write_services_config(
        PhloHome(Path.cwd()),
        port=port if port is not None else default_port(),
        dev=dev_mode,
        phlo_source=phlo_source,
    )
    out(f"wrote {path}")


@services.command("start")
@click.option("--service", type=SERVICE_CHOICE, default=None, help="Only this service.")
@click.option("--port", type=PORT, default=None, help="Override the webserver port.")
def services_start(service: str | None, port: int | None) -> None:
    """Start the services in the background, wait until healthy, run post-start hooks."""
    runner = LocalServices(PhloHome(Path.cwd()), port)
    chosen = runner.select(service)
    runner.home.init_storage()
    for definition in chosen:
        pid = runner.start(definition)
        url = runner.health_url(definition)
        out(f"{definition.name}: running (pid {pid})" + (f" at {url.rsplit('/', 1)[0]}" if url else ""))


@services.command("stop")
@click.option("--service", type=SERVICE_CHOICE, default=None, help="Only this service.")
def services_stop(service: str | None) -> None:
    """Stop the services started by `phlo services start`."""
    runner = LocalServices(PhloHome(Path.cwd()))
    for definition in reversed(runner.select(service)):
        stopped = runner.stop(definition.name)
        out(f"{definition.name}: {'stopped' if stopped else 'not running'}")


@services.command("status")
@click.option("--service", type=SERVICE_CHOICE, default=None, help="Only this service.")
def services_status(service: str | None) -> None:
    """Show each service's state, pid and health."""
    runner = LocalServices(PhloHome(Path.cwd()))
    for definition in runner.select(service):
        st = runner.status(definition)
        health = "" if st.healthy is None else (" healthy" if st.healthy else " unhealthy")
        pid = f" pid {st.pid}" if st.pid else ""
        detail = f" {st.detail}" if st.detail else ""
        out(f"{st.name}: {st.state}{pid}{health}{detail}")


# --- phlo plugin ---


@cli.group()
def plugin() -> None:
    """List or install Phlo plugins (entry points in the phlo.plugins.* groups)."""


def plugin_entries() -> list[tuple[str, str, str, str, str]]:
    """(group, name, object, distribution, version) for every phlo.plugins.* entry point installed."""
    from importlib.metadata import distributions

    rows = set()
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group.startswith(PLUGIN_GROUP_PREFIX):
                group = ep.group.removeprefix(PLUGIN_GROUP_PREFIX)
                rows.add((group, ep.name, ep.value, str(dist.metadata["Name"]), str(dist.version)))
    return sorted(rows)


@plugin.command("list")
def plugin_list() -> None:
    """Every entry point in the phlo.plugins.* groups, with its distribution."""
    rows = plugin_entries()
    header = ("GROUP", "NAME", "OBJECT", "DISTRIBUTION", "VERSION")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact_credentials(text: str) -> str:
    """'https://user:token@host/x' -> 'https://***@host/x': package URLs may carry index or Git tokens."""
    return _URL_CREDENTIALS.sub("***@", text)


@plugin.command("install")
@click.argument("packages", nargs=-1, required=True)
def plugin_install(packages: tuple[str, ...]) -> None:
    """pip install PACKAGES into this environment (requirement specifiers or local paths)."""
    argv = [sys.executable, "-m", "pip", "install", *packages]
    shown = redact_credentials(" ".join(packages))
    progress(f"pip install {shown}")
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        cause = next(
            (ln.strip() for ln in result.stderr.splitlines() if ln.strip().startswith("ERROR")),
            last_line(result.stderr) or f"exit code {result.returncode}",
        )
        raise CliError(f"pip install {shown} failed: {redact_credentials(cause)}")
    out(last_line(result.stdout) or "installed")


# --- phlo dbt ---


@cli.group()
def dbt() -> None:
    """dbt project tasks (PHLO_DBT_* settings)."""


@dbt.command("compile")
@click.option("--force", is_flag=True, help="Compile even when the project is unchanged.")
def dbt_compile(force: bool) -> None:
    """Compile the dbt project; skipped when its content hash matches the last successful compile."""
    from phlo_dagster.dbt import DbtCompileError, compile_from_env

    try:
        result = compile_from_env(force=force)
    except DbtCompileError as exc:
        raise CliError(str(exc)) from None
    verb = "skipped (unchanged)" if result.skipped else "compiled"
    out(f"dbt {verb}: {result.manifest_path} (hash {result.spec_hash[:12]})")


# --- phlo webserver ---


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=PORT, default=None, help=f"[default: ${ENV_DAGSTER_PORT} or 3000]")
@click.option("--workspace", type=click.Path(path_type=Path), default=None, help="workspace.yaml to load.")
@click.option("--path-prefix", default="", help="Serve under this path, e.g. /dagster.")
@click.option(
    "--read-only",
    is_flag=True,
    default=False,
    help="Serve the UI without mutations: no launching, terminating, deleting runs or toggling schedules.",
)
def webserver(host: str, port: int | None, workspace: Path | None, path_prefix: str, read_only: bool) -> None:
    """Dagster's webserver (UI, /graphql) plus Prometheus /metrics on the same port."""
    from phlo_dagster.webserver import serve

    if workspace is None:
        workspace = PhloHome(Path.cwd()).workspace_yaml
    port = port if port is not None else default_port()
    check_host(host)
    if port_in_use(host, port):
        raise CliError(f"--port {port}: {host}:{port} is already in use")
    serve(host, port, workspace, path_prefix, read_only=read_only)


# --- phlo daemon ---


@cli.command()
@click.option("--workspace", type=click.Path(path_type=Path), default=None, help="workspace.yaml to load.")
@click.option(
    "--health-host", default="0.0.0.0", show_default=True, help="Interface the health endpoint binds."
)
@click.option(
    "--health-port",
    type=PORT,
    default=None,
    help=f"Serve GET /healthz on this port (the operator uses {DAEMON_HEALTH_PORT}); off by default.",
)
def daemon(workspace: Path | None, health_host: str, health_port: int | None) -> None:
    """Dagster's daemon (schedules, sensors, run queue, run monitoring), its PostgreSQL connections retried
    for $PHLO_POSTGRES_RETRY_SECONDS, and with --health-port, GET /healthz for probes."""
    from phlo_dagster.daemon import run

    if workspace is None:
        workspace = PhloHome(Path.cwd()).workspace_yaml
    if health_port is not None and port_in_use(health_host, health_port):
        raise CliError(f"--health-port {health_port}: {health_host}:{health_port} is already in use")
    run(workspace, health_host, health_port)


# --- entry point ---


def add_plugin_commands(group: click.Group) -> None:
    """Commands from other distributions' `phlo.plugins.cli` entry points (ours are built in).

    An entry point may name a click command, a CliCommandPlugin class or instance (its get_cli_commands()).
    One that fails to load, to instantiate or to list its commands is a warning line naming it, and skipped.
    """
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="phlo.plugins.cli"), key=lambda e: (e.name, e.value)):
        if ep.value.startswith("phlo_dagster."):
            continue
        try:
            obj = ep.load()
            if isinstance(obj, type) and not issubclass(obj, click.Command):
                obj = obj()
            commands = list(obj.get_cli_commands()) if hasattr(obj, "get_cli_commands") else [obj]
        except Exception as exc:
            progress(
                f"warning: CLI plugin {ep.name} ({ep.value}) skipped: "
                f"{type(exc).__name__}: {one_line(str(exc), 200)}"
            )
            continue
        for command in commands:
            if isinstance(command, click.Command) and command.name and command.name not in group.commands:
                group.add_command(command)


# Our commands Phlo core's `phlo` mounts (its own services, plugin and logs win on a name clash).
PHLO_COMMANDS = ("dev", "materialize", "webserver", "daemon", "dbt", "backfill", "status", "logs")


class _ClickError(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


def _guarded(command: click.Command) -> click.Command:
    """Under Phlo's CLI our errors stay one block, no traceback: CliError and domain errors become
    ClickException (with PHLO_DEBUG=1 a domain error keeps its traceback)."""
    if getattr(command, "_phlo_dagster_guarded", False):
        return command
    callback = command.callback
    if callback is not None:

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return callback(*args, **kwargs)
            except CliError as exc:
                raise _ClickError(str(exc), exc.exit_code) from None
            except click.ClickException:
                raise
            except Exception as exc:
                if debug_enabled():
                    raise
                if type(exc).__module__.startswith("phlo_dagster."):
                    raise click.ClickException(str(exc) or type(exc).__name__) from None
                raise

        command.callback = guarded
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _guarded(sub)
    command._phlo_dagster_guarded = True  # type: ignore[attr-defined]
    return command


def phlo_commands() -> list[click.Command]:
    """The commands DagsterCliPlugin.get_cli_commands() gives Phlo core."""
    return [_guarded(cli.commands[name]) for name in PHLO_COMMANDS]


def phlo_core_cli() -> click.Group | None:
    """Phlo core's root command when phlo is installed, else None (phlo is never imported without it)."""
    import importlib.util

    try:
        if importlib.util.find_spec("phlo") is None:
            return None
    except (ImportError, ValueError):
        return None
    if _phlo_loads_cli_plugins_on_import():
        guard_cli_plugins_before_phlo_import()
    try:
        from phlo.cli.main import cli as core
    except Exception as exc:
        progress(
            f"warning: Phlo core's CLI failed to import ({type(exc).__name__}: {one_line(str(exc), 200)}); "
            "running phlo-dagster's own commands"
        )
        return None
    return core if isinstance(core, click.Group) else None


def _phlo_loads_cli_plugins_on_import() -> bool:
    """Phlo before 0.18 calls every CLI plugin's get_cli_commands() while `phlo.cli.main` is imported."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = version("phlo").split(".")
        return (int(parts[0]), int(parts[1])) < (0, 18)
    except (PackageNotFoundError, ValueError, IndexError):
        return False


def guard_cli_plugins_before_phlo_import() -> None:
    """Keep one CLI plugin whose get_cli_commands() raises from failing the import of Phlo's CLI.

    Phlo 0.16 and 0.17 collect every CLI plugin's commands at import time, so one raising plugin would take
    all of Phlo's commands with it. Each is asked first: one that raises is one warning line naming it, and
    its class then answers no commands (Phlo's import-time load skips it; nothing else changes).
    """
    try:
        from phlo.plugins.discovery import discover_plugins
    except ImportError:
        return
    try:
        found = discover_plugins(plugin_type="cli_command", auto_register=False, failure_level="debug")
    except Exception:
        return  # Phlo's own import reports what is wrong
    for plugin in found.get("cli_command", []):
        try:
            list(plugin.get_cli_commands())
        except Exception as exc:
            cls = type(plugin)
            name = getattr(getattr(plugin, "metadata", None), "name", cls.__name__)
            progress(
                f"warning: CLI plugin {name} ({cls.__module__}.{cls.__qualname__}) skipped: "
                f"get_cli_commands() raised {type(exc).__name__}: {one_line(str(exc), 200)}"
            )
            cls.get_cli_commands = _no_commands


def _no_commands(_self: Any) -> list[click.Command]:
    return []


def load_phlo_plugin_commands(core: click.Group) -> None:
    """Every CLI plugin's commands onto Phlo's root command, as Phlo does, but one plugin at a time.

    A plugin that fails to import or whose get_cli_commands() raises is one warning line naming it (Phlo
    itself would stop there); Phlo's own commands keep their names. Afterwards Phlo has nothing left to load.
    """
    try:
        from phlo.plugins.discovery import discover_plugins, get_global_registry
    except ImportError:
        load = getattr(core, "load_plugins", None)
        if callable(load):
            load()
        return
    failures: list[dict[str, str]] = []
    try:
        discover_plugins(
            plugin_type="cli_command", auto_register=True, failure_level="debug", failure_sink=failures
        )
    except TypeError:  # a Phlo without failure_sink
        discover_plugins(plugin_type="cli_command", auto_register=True)
    for failure in failures:
        progress(
            f"warning: CLI plugin {failure.get('plugin_name')} ({failure.get('entry_point')}) skipped: "
            f"{failure.get('error_type')}: {one_line(str(failure.get('error', '')), 200)}"
        )
    registry = get_global_registry()
    taken = set(core.commands) | set(getattr(core, "lazy_commands", {}))
    for name in registry.list("cli_command"):
        plugin = registry.get("cli_command", name)
        try:
            commands = list(plugin.get_cli_commands())
        except Exception as exc:
            cls = type(plugin)
            progress(
                f"warning: CLI plugin {name} ({cls.__module__}.{cls.__qualname__}) skipped: "
                f"get_cli_commands() raised {type(exc).__name__}: {one_line(str(exc), 200)}"
            )
            continue
        for command in commands:
            if isinstance(command, click.Command) and command.name and command.name not in taken:
                core.add_command(command)
                taken.add(command.name)
    if hasattr(core, "load_plugins"):
        core.load_plugins = None


def run_phlo_core(core: click.Group, argv: Sequence[str] | None) -> None:
    """Phlo's CLI with every plugin's commands loaded (ours through DagsterCliPlugin), so help lists them.

    `phlo plugin ...` first discovers every plugin family: Phlo 0.18's `plugin list` shows only what an
    earlier step of the same process discovered (from Phlo's own script it lists none).
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    load_phlo_plugin_commands(core)
    if next((a for a in args if not a.startswith("-")), None) == "plugin":
        try:
            from phlo.plugins.discovery import discover_plugins

            discover_plugins(auto_register=True, failure_level="debug")
        except Exception as exc:
            progress(
                f"warning: Phlo plugin discovery failed: {type(exc).__name__}: {one_line(str(exc), 200)}"
            )
    core.main(args=args, prog_name="phlo")


def main(argv: Sequence[str] | None = None, *, own: bool = False) -> None:
    """Run `phlo`; any failure is one block on stderr and a non-zero exit, a traceback only with --debug.

    The `phlo` console script of both packages is one command: with Phlo core installed this runs Phlo's CLI
    (our commands come in through the phlo.plugins.cli entry point), else ours. ``own`` (`python -m
    phlo_dagster.cli`, used by our service definitions) always runs ours.
    """
    if not own:
        core = phlo_core_cli()
        if core is not None:
            run_phlo_core(core, argv)
            return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("phlo").setLevel(logging.INFO)
    try:
        add_plugin_commands(cli)
        cli.main(args=list(argv) if argv is not None else None, prog_name="phlo", standalone_mode=False)
    except CliError as exc:
        if debug_enabled():
            traceback.print_exc()
        fail(str(exc), exc.exit_code)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except (SystemExit, click.exceptions.Exit):
        raise
    except Exception as exc:
        if debug_enabled():
            traceback.print_exc()
        if type(exc).__module__.startswith("phlo_dagster."):  # our domain errors carry their cause
            fail(str(exc) or type(exc).__name__)
        # a bug or an environment problem: still its message's block, with the type (--debug: the traceback)
        fail(f"{type(exc).__name__}: {str(exc).strip() or 'unexpected error'}")


if __name__ == "__main__":
    main(own=True)
