"""Find what exists: specs from ``phlo.plugins.*`` entry points and from every module under WORKFLOWS_PATH.

Discovery only collects; translation to Dagster lives in the adapter. It is all-or-nothing: a plugin or
workflow module that fails stops the load with an error naming it (file and line), never a partial graph.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_checks_definition import AssetChecksDefinition
from dagster._core.definitions.partitions.partitioned_schedule import (
    UnresolvedPartitionedAssetScheduleDefinition,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from phlo_dagster import compat
from phlo_dagster.capabilities import (
    AssetCheckSpec,
    AssetSpec,
    DuplicateSpecError,
    ResourceSpec,
    clear_capabilities,
    register_asset,
    register_check,
    register_resource,
    registry,
)
from phlo_dagster.settings import Settings

__all__ = [
    "ASSETS_GROUP",
    "ORCHESTRATORS_GROUP",
    "RESOURCES_GROUP",
    "WORKFLOWS_PACKAGE",
    "DagsterObjects",
    "Discovery",
    "DiscoveryError",
    "PluginLoadError",
    "WorkflowImportError",
    "discover",
    "import_workflows",
    "load_plugins",
]

log = logging.getLogger(__name__)

ASSETS_GROUP = "phlo.plugins.assets"
RESOURCES_GROUP = "phlo.plugins.resources"
ORCHESTRATORS_GROUP = "phlo.plugins.orchestrators"
# Workflow files are imported as submodules of this synthetic package, so a file named json.py cannot shadow
# the standard library and sibling modules import each other with relative imports.
WORKFLOWS_PACKAGE = "phlo_workflows"


class DiscoveryError(Exception):
    """Discovery stopped; the message names the plugin or workflow file at fault and why."""


class WorkflowImportError(DiscoveryError):
    """A module under WORKFLOWS_PATH failed to import (message: file:line and the exception)."""


class PluginLoadError(DiscoveryError):
    """An entry-point plugin failed to load or returned something that is not a spec."""


@dataclass
class DagsterObjects:
    """Plain Dagster objects defined in workflow modules, with where each came from."""

    assets: list[Any] = field(default_factory=list)
    asset_checks: list[Any] = field(default_factory=list)
    schedules: list[Any] = field(default_factory=list)
    sensors: list[Any] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    definitions: list[dg.Definitions] = field(default_factory=list)
    sources: dict[int, str] = field(default_factory=dict)

    def source(self, obj: Any) -> str:
        """Where the object was found ('file.py (name)')."""
        return self.sources.get(id(obj), "a workflow module")


@dataclass(frozen=True)
class Discovery:
    """Everything discovery found: specs (in deterministic order) and plain Dagster objects."""

    assets: tuple[AssetSpec, ...]
    checks: tuple[AssetCheckSpec, ...]
    resources: tuple[ResourceSpec, ...]
    dagster_objects: DagsterObjects
    modules: tuple[str, ...]
    plugins: tuple[str, ...]


def _entry_points(group: str) -> list[EntryPoint]:
    return sorted(entry_points(group=group), key=lambda ep: (ep.name, ep.value))


def _ep_label(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    dist_name = f" from {dist.name}" if dist is not None else ""
    return f"entry point {ep.group}:{ep.name} ({ep.value}{dist_name})"


def _instantiate(ep: EntryPoint) -> Any:
    obj = ep.load()
    return obj() if isinstance(obj, type) else obj


def _call(plugin: Any, method: str, label: str) -> list[Any]:
    fn: Callable[[], Iterable[Any]] | None = getattr(plugin, method, None)
    if fn is None:
        return []
    result = fn()
    if result is None:
        return []
    if not isinstance(result, Iterable):
        raise PluginLoadError(
            f"{label}: {method}() returned {type(result).__name__}, expected a list of specs"
        )
    return list(result)


def load_plugins() -> list[str]:
    """Register specs from every ``phlo.plugins.assets`` and ``phlo.plugins.resources`` entry point."""
    loaded: list[str] = []
    for group, methods in (
        (RESOURCES_GROUP, (("get_resources", compat.to_resource_spec, register_resource),)),
        (
            ASSETS_GROUP,
            (
                ("get_assets", compat.to_asset_spec, register_asset),
                ("get_checks", compat.to_check_spec, register_check),
            ),
        ),
    ):
        for ep in _entry_points(group):
            label = _ep_label(ep)
            try:
                plugin = _instantiate(ep)
                for method, convert, register in methods:
                    for obj in _call(plugin, method, label):
                        register(convert(obj), source=label)  # type: ignore[arg-type]
            except DiscoveryError:
                raise
            except Exception as exc:
                raise PluginLoadError(f"{label}: {type(exc).__name__}: {exc}") from exc
            loaded.append(f"{group}:{ep.name}")
    return loaded


def _workflow_files(root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"] if rel.name == "__init__" else list(rel.parts)
    for part in parts:
        if not part.isidentifier():
            raise WorkflowImportError(
                f"workflow file {path}: {part!r} is not a valid Python module name "
                "(use letters, digits and underscores)"
            )
    return ".".join([WORKFLOWS_PACKAGE, *parts])


def _forget_workflow_modules() -> None:
    for name in [n for n in sys.modules if n == WORKFLOWS_PACKAGE or n.startswith(WORKFLOWS_PACKAGE + ".")]:
        del sys.modules[name]


def _install_package(root: Path) -> None:
    init = root / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location(
            WORKFLOWS_PACKAGE, init, submodule_search_locations=[str(root)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[WORKFLOWS_PACKAGE] = module
        spec.loader.exec_module(module)
    else:
        module = ModuleType(WORKFLOWS_PACKAGE, "Modules under WORKFLOWS_PATH.")
        module.__path__ = [str(root)]
        sys.modules[WORKFLOWS_PACKAGE] = module


def _failure_location(exc: BaseException, root: Path, fallback: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    root_str = str(root)
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(root_str):
            where = f"{frame.filename}:{frame.lineno}"
    return where or str(fallback)


def import_workflows(root: Path) -> list[ModuleType]:
    """Import every module under ``root`` in sorted path order; a failure raises WorkflowImportError."""
    root = root.resolve()
    _forget_workflow_modules()
    importlib.invalidate_caches()
    modules: list[ModuleType] = []
    current = root / "__init__.py"
    try:
        _install_package(root)
        modules.append(sys.modules[WORKFLOWS_PACKAGE])
        for path in _workflow_files(root):
            if path == root / "__init__.py":
                continue
            current = path
            modules.append(importlib.import_module(_module_name(root, path)))
    except (DiscoveryError, DuplicateSpecError):
        _forget_workflow_modules()  # a duplicate's message already names both places
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        _forget_workflow_modules()
        where = _failure_location(exc, root, current)
        rel = current.relative_to(root) if current.is_relative_to(root) else current
        raise WorkflowImportError(
            f"workflow module {rel} failed to import at {where}: {type(exc).__name__}: {exc}"
        ) from exc
    return modules


_DAGSTER_KINDS: Sequence[tuple[type | tuple[type, ...], str]] = (
    (AssetChecksDefinition, "asset_checks"),
    ((dg.AssetsDefinition, dg.AssetSpec, dg.SourceAsset), "assets"),
    ((dg.ScheduleDefinition, UnresolvedPartitionedAssetScheduleDefinition), "schedules"),
    (dg.SensorDefinition, "sensors"),
    ((dg.JobDefinition, UnresolvedAssetJobDefinition), "jobs"),
    (dg.Definitions, "definitions"),
)


def collect_dagster_objects(modules: Iterable[ModuleType], root: Path | None = None) -> DagsterObjects:
    """Plain Dagster objects (assets, checks, schedules, sensors, jobs, Definitions) bound in the modules."""
    found = DagsterObjects()
    seen: set[int] = set()
    for module in modules:
        origin = getattr(module, "__file__", None) or module.__name__
        if root is not None and origin and Path(origin).is_relative_to(root):
            origin = str(Path(origin).relative_to(root))
        for name, value in sorted(vars(module).items()):
            if id(value) in seen or name.startswith("__"):
                continue
            for kind, bucket in _DAGSTER_KINDS:
                if isinstance(value, kind):
                    seen.add(id(value))
                    getattr(found, bucket).append(value)
                    found.sources[id(value)] = f"{origin} ({name})"
                    break
    return found


def discover(settings: Settings) -> Discovery:
    """Clear the registry, load plugins, import workflows, and return a snapshot of all of it."""
    clear_capabilities()
    try:
        plugins = load_plugins() if settings.plugins_enabled else []
        root = settings.workflows_path
        modules: list[ModuleType] = []
        if root.is_dir():
            modules = import_workflows(root)
        elif settings.workflows_path_explicit:
            raise DiscoveryError(
                f"WORKFLOWS_PATH={str(root)!r}: no such directory (resolved to {root.resolve()})"
            )
        else:
            log.info("no workflows directory at %s; loading plugins only", root.resolve())
        objects = collect_dagster_objects(modules, root.resolve())
        snapshot = registry()
    except BaseException:
        clear_capabilities()
        raise
    return Discovery(
        assets=snapshot.assets,
        checks=snapshot.checks,
        resources=snapshot.resources,
        dagster_objects=objects,
        modules=tuple(m.__name__ for m in modules),
        plugins=tuple(plugins),
    )
