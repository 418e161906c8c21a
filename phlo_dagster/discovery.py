"""Find what exists: specs from ``phlo.plugins.*`` entry points and from every module under WORKFLOWS_PATH.

Discovery only collects; translation to Dagster lives in the adapter. It is all-or-nothing: a plugin or
workflow module that fails stops the load with an error naming it (file and line), never a partial graph.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
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
    SpecError,
    clear_capabilities,
    register_asset,
    register_check,
    register_resource,
    registry,
)
from phlo_dagster.settings import Settings
from phlo_dagster.text import one_line

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


def _entry_points(found: Any, group: str) -> list[EntryPoint]:
    """`found` is what entry_points() returned: EntryPoints, or SelectableGroups before Python 3.12."""
    return sorted(found.select(group=group), key=lambda ep: (ep.name, ep.value))


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


_PROVIDER_METHODS = {
    RESOURCES_GROUP: (("get_resources", compat.to_resource_spec, register_resource),),
    ASSETS_GROUP: (
        ("get_assets", compat.to_asset_spec, register_asset),
        ("get_checks", compat.to_check_spec, register_check),
    ),
}


@dataclass
class _Provider:
    group: str
    name: str
    label: str
    plugin: Any


def _warn_plugin(label: str, exc: BaseException) -> None:
    log.warning("plugin skipped: %s: %s: %s", label, type(exc).__name__, one_line(str(exc), 300))


def load_providers() -> list[_Provider]:
    """Instantiate every ``phlo.plugins.assets``/``resources`` entry point; a failing one is a warning.

    A provider keeping its own registry (Phlo's ``clear_registries()``) is cleared here, before the workflow
    modules that fill it are imported again, so a reload never sees last load's specs.
    """
    providers: list[_Provider] = []
    # One read of every installed distribution's entry points for both groups: each read opens the metadata
    # of all of them (a tenth of a second in a full environment, paid on every code-server start and reload).
    found = entry_points()
    for group in (RESOURCES_GROUP, ASSETS_GROUP):
        for ep in _entry_points(found, group):
            label = _ep_label(ep)
            try:
                plugin = _instantiate(ep)
                clear = getattr(plugin, "clear_registries", None)
                if callable(clear):
                    clear()
            except Exception as exc:
                _warn_plugin(label, exc)
                continue
            providers.append(_Provider(group, ep.name, label, plugin))
    return providers


_Memo = dict[int, tuple[Any, Any]]


def _convert(memo: _Memo, convert: Callable[[Any], Any], obj: Any) -> Any:
    """Convert once per object, so one Phlo spec reached through two channels is one spec (no duplicate)."""
    hit = memo.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    spec = convert(obj)
    memo[id(obj)] = (obj, spec)
    return spec


def register_provider_specs(providers: Iterable[_Provider], memo: _Memo | None = None) -> list[str]:
    """Ask each provider for its specs (after the workflow modules are imported) and register them.

    A provider whose methods fail or return something that is not a spec is a warning and adds nothing;
    a spec clashing with another source raises DuplicateSpecError naming both.
    """
    loaded: list[str] = []
    for provider in providers:
        try:
            specs = [
                (_convert(memo if memo is not None else {}, convert, obj), register)
                for method, convert, register in _PROVIDER_METHODS[provider.group]
                for obj in _call(provider.plugin, method, provider.label)
            ]
        except Exception as exc:
            _warn_plugin(provider.label, exc)
            continue
        for spec, register in specs:
            register(spec, source=provider.label)
        loaded.append(f"{provider.group}:{provider.name}")
    return loaded


def load_plugins() -> list[str]:
    """Register specs from every ``phlo.plugins.assets`` and ``phlo.plugins.resources`` entry point."""
    return register_provider_specs(load_providers())


# --- Phlo core's capability registry (phlo.capabilities.registry), read only when phlo is installed ---

PHLO_FAMILIES = (
    ("resource", compat.to_resource_spec, register_resource),
    ("asset", compat.to_asset_spec, register_asset),
    ("check", compat.to_check_spec, register_check),
)


def phlo_registry() -> Any | None:
    """Phlo core's process-global capability registry, or None without phlo (which is then never imported)."""
    if "phlo.capabilities.registry" not in sys.modules:
        try:
            if importlib.util.find_spec("phlo") is None:
                return None
        except (ImportError, ValueError):
            return None
    try:
        from phlo.capabilities.registry import get_capability_registry
    except Exception as exc:
        log.warning("Phlo's capability registry is not readable: %s: %s", type(exc).__name__, exc)
        return None
    return get_capability_registry()


def clear_phlo_registry(reg: Any | None) -> None:
    """Forget the asset, check and resource specs in Phlo's registry (workflow imports register them anew)."""
    if reg is None:
        return
    for family, _, _ in PHLO_FAMILIES:
        reg.clear(family)


def _phlo_source(spec: Any) -> str:
    fn = getattr(getattr(spec, "run", None), "fn", None) or getattr(spec, "fn", None)
    code = getattr(fn, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}, " if code is not None else ""
    return f"Phlo capability registry ({where}phlo.capabilities.registry)"


def register_phlo_registry_specs(reg: Any | None, memo: _Memo | None = None) -> int:
    """Copy Phlo's registered asset, check and resource specs into ours; clashes name both sources."""
    if reg is None:
        return 0
    count = 0
    for family, convert, register in PHLO_FAMILIES:
        for obj in reg.list(family):
            try:
                spec = _convert(memo if memo is not None else {}, convert, obj)
            except SpecError as exc:
                raise SpecError(f"{_phlo_source(obj)}: {exc}") from None
            register(spec, source=_phlo_source(obj))
            count += 1
    return count


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


class _AliasLoader(importlib.abc.Loader):
    """Loads ``<alias>.x`` as the module ``phlo_workflows.x`` itself (one module object, imported once)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        return None


class WorkflowAliasFinder(importlib.abc.MetaPathFinder):
    """Makes the workflows directory importable by its own name, Phlo-style: ``from workflows.x import y``.

    First on sys.meta_path, so a ``workflows`` directory that is also on sys.path is never imported twice.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.alias and not fullname.startswith(self.alias + "."):
            return None
        target_name = WORKFLOWS_PACKAGE + fullname[len(self.alias) :]
        is_package = fullname == self.alias or hasattr(importlib.import_module(target_name), "__path__")
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(target_name), is_package=is_package)


def _install_alias(root: Path) -> None:
    for finder in [f for f in sys.meta_path if isinstance(f, WorkflowAliasFinder)]:
        sys.meta_path.remove(finder)
    alias = root.name
    if alias.isidentifier() and alias != WORKFLOWS_PACKAGE and alias not in sys.builtin_module_names:
        sys.meta_path.insert(0, WorkflowAliasFinder(alias))


def _forget_workflow_modules() -> None:
    prefixes = [WORKFLOWS_PACKAGE] + [f.alias for f in sys.meta_path if isinstance(f, WorkflowAliasFinder)]
    for name in [n for n in sys.modules if any(n == p or n.startswith(p + ".") for p in prefixes)]:
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
    _install_alias(root)
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
    """Specs from every place Phlo puts them, and the workflows' plain Dagster objects, from scratch.

    Order: clear our registry and Phlo's (and providers' own registries); import the workflow modules (which
    register specs with us or with Phlo); then ask the entry-point providers and read Phlo's registry. The
    same inputs give the same result on every call in one process.
    """
    clear_capabilities()
    try:
        core = phlo_registry()
        clear_phlo_registry(core)
        providers = load_providers() if settings.plugins_enabled else []
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
        memo: _Memo = {}
        plugins = register_provider_specs(providers, memo)
        core = core or phlo_registry()  # a workflow module may have imported phlo just now
        register_phlo_registry_specs(core, memo)
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
