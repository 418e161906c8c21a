"""The Dagster webserver and daemon as service definitions, and the local runner behind `phlo services`.

A service definition is plain data (name, command, env, ports, health check, post-start hooks) published
through the `phlo.plugins.services` entry points; `LocalServices` runs them as background processes with
pidfiles and logs under `.phlo/`, the same layout `phlo dev` uses in the foreground.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phlo_dagster import graphql
from phlo_dagster.console import CliError, error_block, progress
from phlo_dagster.constants import (
    DEFAULT_CODE_LOCATION_NAME,
    DEFAULT_WEBSERVER_PORT,
    DEFINITIONS_MODULE,
    ENV_DAGSTER_HOME,
    ENV_DBT_ENABLED,
)
from phlo_dagster.text import last_line, one_line

PHLO_DIR = ".phlo"
SERVICES_FILE = "services.yaml"
WEBSERVER_SERVICE = "dagster"
DAEMON_SERVICE = "dagster-daemon"
DBT_COMPILE_HOOK = "dbt-compile"
STOP_TIMEOUT_S = 20.0
RUN_MONITORING_POLL_S = 5
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class HealthCheck:
    """`http`: GET 127.0.0.1:<port><path> answers 2xx; `process`: the process lives past a grace period."""

    kind: str = "process"
    path: str = "/server_info"
    port_name: str = "http"
    grace_seconds: float = 2.0


@dataclass(frozen=True)
class Hook:
    """A step run after the service is healthy; `command` runs with the service's env and cwd."""

    name: str
    command: tuple[str, ...]


@dataclass(frozen=True)
class ServiceDefinition:
    """What `phlo services` needs to run one service; `{placeholders}` in command are filled at start."""

    name: str
    description: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    health_check: HealthCheck = field(default_factory=HealthCheck)
    post_start: tuple[Hook, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["command"] = list(self.command)
        data["env"] = dict(self.env)
        data["ports"] = dict(self.ports)
        data["post_start"] = [{"name": h.name, "command": list(h.command)} for h in self.post_start]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceDefinition:
        try:
            return cls(
                name=str(data["name"]),
                description=str(data.get("description", "")),
                command=tuple(str(c) for c in data["command"]),
                env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
                ports={str(k): int(v) for k, v in (data.get("ports") or {}).items()},
                health_check=HealthCheck(**(data.get("health_check") or {})),
                post_start=tuple(
                    Hook(name=str(h["name"]), command=tuple(str(c) for c in h["command"]))
                    for h in data.get("post_start") or []
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CliError(
                f"service {data.get('name', '?')!r} in {SERVICES_FILE}: invalid definition ({exc})"
            ) from exc


@dataclass(frozen=True)
class PluginMetadata:
    """Name, version and description shown by `phlo plugin list`, as Phlo's plugins carry them."""

    name: str
    version: str
    description: str


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phlo-dagster")
    except PackageNotFoundError:
        return "0"


class DagsterServicePlugin:
    """The Dagster webserver (UI, /graphql, /metrics); after start it runs the dbt-compile hook."""

    @property
    def metadata(self) -> PluginMetadata:
        return PluginMetadata(WEBSERVER_SERVICE, _version(), "Dagster webserver with Prometheus /metrics")

    def definition(self, port: int = DEFAULT_WEBSERVER_PORT) -> ServiceDefinition:
        return ServiceDefinition(
            name=WEBSERVER_SERVICE,
            description=self.metadata.description,
            command=(
                "{python}",
                "-m",
                "phlo_dagster.cli",
                "webserver",
                "--host",
                "{host}",
                "--port",
                "{port:http}",
                "--workspace",
                "{workspace}",
            ),
            ports={"http": port},
            health_check=HealthCheck(kind="http", path="/server_info", port_name="http"),
            post_start=(Hook(DBT_COMPILE_HOOK, ("{python}", "-m", "phlo_dagster.cli", "dbt", "compile")),),
        )

    @property
    def service_definition(self) -> dict[str, Any]:
        """The definition as plain data (the shape Phlo's service plugins expose)."""
        return self.definition().to_dict()


class DagsterDaemonServicePlugin:
    """The Dagster daemon: run queue, schedules, sensors, automation; one per instance."""

    @property
    def metadata(self) -> PluginMetadata:
        return PluginMetadata(DAEMON_SERVICE, _version(), "Dagster daemon (run queue, schedules, sensors)")

    def definition(self) -> ServiceDefinition:
        return ServiceDefinition(
            name=DAEMON_SERVICE,
            description=self.metadata.description,
            command=("{python}", "-m", "phlo_dagster.cli", "daemon", "--workspace", "{workspace}"),
            health_check=HealthCheck(kind="process", grace_seconds=3.0),
        )

    @property
    def service_definition(self) -> dict[str, Any]:
        return self.definition().to_dict()


def default_definitions(port: int = DEFAULT_WEBSERVER_PORT) -> list[ServiceDefinition]:
    return [DagsterServicePlugin().definition(port), DagsterDaemonServicePlugin().definition()]


# --- the .phlo/ directory ---


@dataclass(frozen=True)
class PhloHome:
    """Paths of the local instance: dagster.yaml, workspace.yaml, services.yaml, pidfiles and logs."""

    project: Path

    @property
    def root(self) -> Path:
        return self.project / PHLO_DIR

    @property
    def dagster_yaml(self) -> Path:
        return self.root / "dagster.yaml"

    @property
    def workspace_yaml(self) -> Path:
        return self.root / "workspace.yaml"

    @property
    def services_yaml(self) -> Path:
        return self.root / SERVICES_FILE

    def pidfile(self, service: str) -> Path:
        return self.root / "run" / f"{service}.pid"

    def logfile(self, service: str) -> Path:
        return self.root / "logs" / f"{service}.log"

    def ensure_instance(self) -> None:
        """Write dagster.yaml (embedded SQLite under .phlo/storage) and workspace.yaml unless they exist."""
        for sub in ("storage", "logs", "run", "compute_logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if not self.dagster_yaml.exists():
            self.dagster_yaml.write_text(yaml.safe_dump(sqlite_instance_config(self.root), sort_keys=False))
        if not self.workspace_yaml.exists():
            self.workspace_yaml.write_text(yaml.safe_dump(workspace_config(self.project), sort_keys=False))

    def env(self) -> dict[str, str]:
        return {ENV_DAGSTER_HOME: str(self.root)}

    def storage_kind(self) -> str:
        """The storage named in dagster.yaml (sqlite unless the user pointed it elsewhere)."""
        try:
            config = yaml.safe_load(self.dagster_yaml.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return "unknown"
        storage = config.get("storage") if isinstance(config, dict) else None
        return next(iter(storage), "sqlite") if isinstance(storage, dict) else "sqlite"

    def open_instance(self) -> Any:
        """The Dagster instance of dagster.yaml; a config Dagster refuses is a CliError naming the file."""
        from dagster import DagsterInstance

        try:
            return DagsterInstance.from_config(str(self.root))
        except Exception as exc:
            raise CliError(f"{self.dagster_yaml}: {type(exc).__name__}: {one_line(str(exc), 300)}") from None

    def init_storage(self) -> None:
        """Create or migrate the storage once, before several processes open it at the same time."""
        with self.open_instance():
            pass


def sqlite_instance_config(root: Path) -> dict[str, Any]:
    return {
        "storage": {"sqlite": {"base_dir": str(root / "storage")}},
        "local_artifact_storage": {
            "module": "dagster._core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": str(root / "storage")},
        },
        "compute_logs": {
            "module": "dagster._core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": str(root / "compute_logs")},
        },
        # The daemon enforces RunSpec.max_runtime_seconds (run tag dagster/max_runtime) only with monitoring.
        "run_monitoring": {"enabled": True, "poll_interval_seconds": RUN_MONITORING_POLL_S},
        "telemetry": {"enabled": False},
    }


def workspace_config(project: Path) -> dict[str, Any]:
    return {
        "load_from": [
            {
                "python_module": {
                    "module_name": DEFINITIONS_MODULE,
                    "working_directory": str(project),
                    "location_name": DEFAULT_CODE_LOCATION_NAME,
                }
            }
        ]
    }


def write_services_config(
    home: PhloHome, *, port: int, dev: bool = False, phlo_source: Path | None = None
) -> Path:
    """Write .phlo/services.yaml: the resolved service definitions `phlo services start` runs."""
    if phlo_source is not None and not dev:
        raise CliError("--phlo-source: only valid together with --dev")
    definitions = default_definitions(port)
    settings: dict[str, Any] = {"dev": dev, "phlo_source": None, "host": "127.0.0.1"}
    if dev:
        source = (phlo_source or Path.cwd()).resolve()
        if not (source / "phlo_dagster" / "__init__.py").is_file():
            raise CliError(
                f"--phlo-source {source}: not a phlo-dagster checkout (no phlo_dagster/__init__.py)"
            )
        settings["phlo_source"] = str(source)
        dev_env = {"PYTHONPATH": str(source), "DAGSTER_WEBSERVER_LOG_LEVEL": "debug"}
        definitions = [ServiceDefinition(**{**d.__dict__, "env": {**d.env, **dev_env}}) for d in definitions]
    home.ensure_instance()
    doc = {"settings": settings, "services": [d.to_dict() for d in definitions]}
    home.services_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return home.services_yaml


def load_services(home: PhloHome, port: int | None = None) -> tuple[dict[str, Any], list[ServiceDefinition]]:
    """Definitions from .phlo/services.yaml when present, else from the installed service plugins."""
    if home.services_yaml.exists():
        try:
            doc = yaml.safe_load(home.services_yaml.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CliError(f"{home.services_yaml}: not valid YAML ({exc.__class__.__name__})") from exc
        services = doc.get("services") if isinstance(doc, dict) else None
        settings_doc = doc.get("settings") if isinstance(doc, dict) else None
        if not isinstance(services, list) or not all(isinstance(d, dict) for d in services):
            raise CliError(
                f"{home.services_yaml}: expected a mapping with a 'services' list of service definitions "
                "(rewrite it with `phlo services init`)"
            )
        if settings_doc is not None and not isinstance(settings_doc, dict):
            raise CliError(f"{home.services_yaml}: 'settings' must be a mapping")
        defs = [ServiceDefinition.from_dict(d) for d in services]
        settings = dict(settings_doc or {})
    else:
        defs, settings = plugin_definitions(), {"host": "127.0.0.1"}
    if port is not None:
        defs = [
            ServiceDefinition(**{**d.__dict__, "ports": {**d.ports, "http": port}}) if d.ports else d
            for d in defs
        ]
    return settings, defs


def plugin_definitions() -> list[ServiceDefinition]:
    """Ours, plus every other `phlo.plugins.services` entry point that defines a command to run.

    Our own entry points name Phlo-facing classes (phlo_plugin.py), so ours come from this module directly.
    Another plugin that fails to load is a warning line; one without a command (a Docker service of Phlo's)
    is not ours to run and is left out.
    """
    from importlib.metadata import entry_points

    found: list[ServiceDefinition] = default_definitions()
    for ep in sorted(entry_points(group="phlo.plugins.services"), key=lambda e: e.name):
        if ep.value.startswith("phlo_dagster.") or ep.name in {d.name for d in found}:
            continue
        try:
            plugin = ep.load()
            obj = plugin() if isinstance(plugin, type) else plugin
            data = obj.definition().to_dict() if hasattr(obj, "definition") else obj.service_definition
        except Exception as exc:
            progress(f"warning: service plugin {ep.name} ({ep.value}) skipped: {type(exc).__name__}: {exc}")
            continue
        if isinstance(data, Mapping) and data.get("command"):
            found.append(ServiceDefinition.from_dict({"name": ep.name, **data}))
    return found


# --- running them ---


def render_command(
    command: Sequence[str], *, host: str, ports: Mapping[str, int], workspace: Path
) -> list[str]:
    values = {"{python}": sys.executable, "{host}": host, "{workspace}": str(workspace)}
    out = []
    for part in command:
        for key, val in values.items():
            part = part.replace(key, val)
        for name, port in ports.items():
            part = part.replace(f"{{port:{name}}}", str(port))
        out.append(part)
    return out


def spawn(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], output: Any = None
) -> subprocess.Popen[bytes]:
    """Start a service in its own session, so stopping it can signal its whole process group."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )


def port_in_use(host: str, port: int) -> bool:
    """Something already accepts connections there (checked before starting, so a health check is ours)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host if host not in ("0.0.0.0", "") else "127.0.0.1", port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not running
        done, _status = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def descendants(pids: Sequence[int]) -> list[int]:
    """Every live process below pids (children, grandchildren...), read from /proc; [] where there is none."""
    parents: dict[int, list[int]] = {}
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = list(pids)
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _signal_all(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate_groups(pids: Sequence[int], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each service (it stops its own code servers), wait, then SIGKILL what is left of each group.

    Code servers a service started in a session of their own would otherwise outlive it until their
    heartbeat times out: every process below the services, as found before the SIGTERM, is stopped too.
    """
    below = descendants(pids)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(0.2)
    left = [pid for pid in below if pid_alive(pid)]
    _signal_all(left, signal.SIGTERM)
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in left):
        time.sleep(0.2)
    _signal_all([pid for pid in left if pid_alive(pid)], signal.SIGKILL)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)  # leftovers of the group we started (e.g. a stuck code server)
        except (ProcessLookupError, PermissionError):
            pass


def terminate_group(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    terminate_groups([pid], timeout)


@dataclass
class ServiceStatus:
    name: str
    state: str  # running | stopped | stale
    pid: int | None
    healthy: bool | None
    detail: str = ""


class LocalServices:
    """Starts, stops and reports the services as background processes of this machine."""

    def __init__(
        self,
        home: PhloHome,
        port: int | None = None,
        *,
        definitions: Sequence[ServiceDefinition] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.home.ensure_instance()
        if definitions is None:
            self.settings, loaded = load_services(home, port)
        else:
            self.settings, loaded = {}, list(definitions)
        self.definitions: list[ServiceDefinition] = loaded
        self.host = str(self.settings.get("host") or "127.0.0.1")
        self.extra_env = dict(extra_env or {})

    def select(self, name: str | None) -> list[ServiceDefinition]:
        if name is None:
            return list(self.definitions)
        chosen = [d for d in self.definitions if d.name == name]
        if not chosen:
            known = ", ".join(d.name for d in self.definitions)
            raise CliError(f"--service {name}: unknown service (known: {known})")
        return chosen

    def env_for(self, definition: ServiceDefinition) -> dict[str, str]:
        # WORKFLOWS_PATH stays unset unless the user set it: a missing default workflows/ is no error.
        return {**os.environ, **self.home.env(), **self.extra_env, **definition.env}

    def read_pid(self, name: str) -> int | None:
        try:
            return int(self.home.pidfile(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def start(self, definition: ServiceDefinition) -> int:
        pid = self.read_pid(definition.name)
        if pid is not None and pid_alive(pid):
            progress(f"{definition.name} already running (pid {pid})")
            return pid
        for name, port in definition.ports.items():
            if port_in_use(self.host, port):
                raise CliError(f"{definition.name}: {name} port {port} on {self.host} is already in use")
        argv = render_command(
            definition.command, host=self.host, ports=definition.ports, workspace=self.home.workspace_yaml
        )
        log_path = self.home.logfile(definition.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        progress(f"starting {definition.name}: {' '.join(argv)} (log {log_path})")
        with open(log_path, "ab") as log:
            proc = spawn(argv, cwd=self.home.project, env=self.env_for(definition), output=log)
        self.home.pidfile(definition.name).parent.mkdir(parents=True, exist_ok=True)
        self.home.pidfile(definition.name).write_text(str(proc.pid))
        self.wait_healthy(definition, proc.pid)
        for hook in definition.post_start:
            self.run_hook(definition, hook)
        return proc.pid

    def health_url(self, definition: ServiceDefinition) -> str | None:
        check = definition.health_check
        if check.kind != "http" or check.port_name not in definition.ports:
            return None
        return f"http://127.0.0.1:{definition.ports[check.port_name]}{check.path}"

    def wait_healthy(self, definition: ServiceDefinition, pid: int, timeout: float = START_TIMEOUT_S) -> None:
        url = self.health_url(definition)
        grace_end = time.monotonic() + definition.health_check.grace_seconds
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                self.home.pidfile(definition.name).unlink(missing_ok=True)
                tail = last_log_line(self.home.logfile(definition.name))
                raise CliError(f"{definition.name} exited during start: {tail}")
            if url is not None and http_ok(url):
                progress(f"{definition.name} healthy at {url.rsplit('/', 1)[0]}")
                return
            if url is None and time.monotonic() >= grace_end:
                progress(f"{definition.name} running (pid {pid})")
                return
            time.sleep(0.5)
        raise CliError(
            f"{definition.name} not healthy after {timeout:.0f}s (log {self.home.logfile(definition.name)})"
        )

    def run_hook(self, definition: ServiceDefinition, hook: Hook) -> None:
        runner = HOOKS.get(hook.name)
        if runner is not None:
            runner(self, definition, hook)
            return
        argv = render_command(
            hook.command, host=self.host, ports=definition.ports, workspace=self.home.workspace_yaml
        )
        run_hook_command(self, definition, hook.name, argv)  # the output line is only reported

    def stop(self, name: str) -> bool:
        pid = self.read_pid(name)
        self.home.pidfile(name).unlink(missing_ok=True)
        if pid is None or not pid_alive(pid):
            return False
        terminate_group(pid)
        return True

    def status(self, definition: ServiceDefinition) -> ServiceStatus:
        pid = self.read_pid(definition.name)
        if pid is None:
            return ServiceStatus(definition.name, "stopped", None, None)
        if not pid_alive(pid):
            return ServiceStatus(definition.name, "stale", pid, None, "pidfile left by a process that exited")
        url = self.health_url(definition)
        healthy = http_ok(url) if url else True
        return ServiceStatus(definition.name, "running", pid, healthy, url or "")


def last_log_line(path: Path) -> str:
    """A log file's last line, for a failure message ('no log', 'no output' when there is none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "no log"
    return last_line(text) or "no output"


def run_hook_command(
    services: LocalServices, definition: ServiceDefinition, name: str, argv: list[str]
) -> str:
    """Run a hook command; returns its last output line, raises CliError with its cause on failure."""
    progress(f"{definition.name}: post-start hook {name}")
    result = subprocess.run(
        argv, cwd=services.home.project, env=services.env_for(definition), capture_output=True, text=True
    )
    if result.returncode != 0:
        cause = error_block(result.stderr) or last_line(result.stdout) or f"exit code {result.returncode}"
        raise CliError(f"{definition.name}: post-start hook {name} failed: {cause}")
    last = last_line(result.stdout)
    if last:
        progress(f"{name}: {last}")
    return last


def dbt_compile_hook(services: LocalServices, definition: ServiceDefinition, hook: Hook) -> None:
    """Compile the dbt project (skipped when unchanged), then reload the code location to see the manifest."""
    env = services.env_for(definition)
    if env.get(ENV_DBT_ENABLED, "").strip().lower() not in ("1", "true", "yes", "on"):
        progress(f"{definition.name}: post-start hook {hook.name} skipped ({ENV_DBT_ENABLED} is not true)")
        return
    argv = render_command(
        hook.command, host=services.host, ports=definition.ports, workspace=services.home.workspace_yaml
    )
    if run_hook_command(services, definition, hook.name, argv).startswith("dbt skipped"):
        return
    port = definition.ports.get("http")
    if port is not None:
        try:
            # A reload loads the definitions again (dbt models included) before it answers: allow a minute.
            graphql.reload_location(f"http://127.0.0.1:{port}", DEFAULT_CODE_LOCATION_NAME, timeout=60)
        except graphql.ReloadFailed as exc:
            raise CliError(f"{definition.name}: post-start hook {hook.name}: {exc}") from None


HOOKS: dict[str, Callable[[LocalServices, ServiceDefinition, Hook], None]] = {
    DBT_COMPILE_HOOK: dbt_compile_hook
}
