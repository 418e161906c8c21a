"""dbt: compile a project with dbt-core's programmatic API (skipped when its content is unchanged) and
turn the compiled manifest into Dagster assets through dagster-dbt.

dbt sources named after spec keys (source ``raw``, table ``orders`` = spec ``raw.orders``) become the models'
upstream assets, so lineage runs from ingestion specs through the models. Every dbt command runs in the
project folder, as ``dbt build`` run there by hand does, so relative paths in profiles.yml (a DuckDB
``path:``) agree.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from phlo_dagster.dbt_lazy import dagster_dbt, dbt_core_version
from phlo_dagster.settings import Settings, load_settings
from phlo_dagster.text import block_lines

__all__ = [
    "DBT_OP_NAME",
    "HASH_FILE",
    "PACKAGE_FILES",
    "CompileResult",
    "DbtCompileError",
    "DbtSelection",
    "DbtSelectionError",
    "build_args",
    "compile_from_env",
    "compile_project",
    "dbt_definitions",
    "dbt_error",
    "is_project_input",
    "project_hash",
    "selection_keys",
]

HASH_FILE = "phlo_compile.json"
MANIFEST = "manifest.json"
DBT_RESOURCE_KEY = "dbt"
DBT_OP_NAME = "dbt_models"
PACKAGE_FILES = ("packages.yml", "dependencies.yml")
_HASHED_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".jinja"}
_PACKAGE_LOCK = "package-lock.yml"
_RUN_DIR_PREFIX = "phlo-dbt-run-"
_STAGING_PREFIX = ".phlo-compile-"
_LOCK_FILE = ".phlo-compile.lock"
_PARTIAL_PARSE = "partial_parse.msgpack"
_UNIQUE_ID = "dagster_dbt/unique_id"  # dagster-dbt's metadata key on each dbt asset's and check's spec
_SKIPPED_DIRS = {"target", "dbt_packages", "logs", "__pycache__"}
_PREAMBLES = ("Encountered an error:", "Traceback (most recent call last):")
_STACK_FRAME = re.compile(r'^\s*File ".*", line \d+')


class DbtCompileError(Exception):
    """dbt could not compile the project: the first line says which, the further lines are dbt's cause."""


@dataclass(frozen=True)
class CompileResult:
    """Outcome of compile_project: whether it was skipped, the project hash, and the manifest written/kept."""

    skipped: bool
    spec_hash: str
    manifest_path: Path


def is_project_input(path: Path, project_dir: Path, target_path: Path) -> bool:
    """Whether a file under project_dir is one of the dbt project's inputs (the files its hash covers):
    sql/yml/csv/py/md/jinja files outside target/, dbt_packages/, logs/, hidden folders and the target path.
    All three paths absolute."""
    if not path.is_relative_to(project_dir) or path.is_relative_to(target_path):
        return False
    rel = path.relative_to(project_dir)
    if path.suffix not in _HASHED_SUFFIXES or path.name.startswith("."):
        return False
    if path.name == _PACKAGE_LOCK:  # written by `dbt deps` from packages.yml, which is hashed
        return False
    return not any(p in _SKIPPED_DIRS or p.startswith(".") for p in rel.parts[:-1])


def _project_files(project_dir: Path, target_path: Path) -> Iterator[Path]:
    for path in sorted(project_dir.rglob("*")):
        if path.is_file() and is_project_input(path, project_dir, target_path):
            yield path


def project_hash(*, project_dir: Path, profiles_dir: Path, target: str | None, target_path: Path) -> str:
    """SHA-256 over the project's sql/yml/csv files, profiles.yml, the target name and the dbt version."""
    dbt_version = dbt_core_version()
    project_dir = Path(project_dir).resolve()
    digest = hashlib.sha256()
    digest.update(f"dbt={dbt_version}\ntarget={target or ''}\n".encode())
    for path in _project_files(project_dir, Path(target_path).resolve()):
        digest.update(path.relative_to(project_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    profiles = Path(profiles_dir) / "profiles.yml"
    if profiles.is_file():
        digest.update(b"profiles.yml\0" + hashlib.sha256(profiles.read_bytes()).digest())
    return digest.hexdigest()


def _recorded_hash(target_path: Path) -> str | None:
    try:
        return str(json.loads((target_path / HASH_FILE).read_text())["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def dbt_error(messages: Sequence[str]) -> str:
    """dbt's error messages as one block: every line of the cause, without dbt's "Encountered an error:"
    preamble or a Python traceback's frames (a bad target keeps "The valid target names ..." and the names).
    """
    lines = block_lines("\n".join(messages))
    frames = [i for i, line in enumerate(lines) if _STACK_FRAME.match(line)]
    if frames:  # the exception after the last frame (and the frame's source line)
        lines = lines[frames[-1] + 2 :] or lines[-1:]
    lines = [
        ln
        for ln in lines
        if ln.strip() not in ("Encountered an error:", "Traceback (most recent call last):")
    ]
    return "\n".join(block_lines("\n".join(lines))) or "unknown error"


def _failed(what: str, cause: str) -> str:
    """'<what> failed: <cause>' when the cause is one line, else the cause's lines below the first."""
    return f"{what} failed:" + ("\n" if "\n" in cause else " ") + cause


@contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    """Run in folder (where dbt resolves relative profile paths), then return, whatever dbt did meanwhile."""
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


def _invoke(project: Path, args: list[str]) -> tuple[bool, str]:
    """One dbt command in-process, in the project folder: (succeeded, the cause when it did not)."""
    from dbt.cli.main import dbtRunner

    errors: list[str] = []

    def collect(event: Any) -> None:
        if getattr(event.info, "level", "") == "error":
            errors.append(str(event.info.msg))

    quiet = ["--log-level-file", "none", "--log-level", "none", "--no-send-anonymous-usage-stats"]
    try:
        with _in_folder(project):
            # errors reach us through the callback; the CLI prints their block, not dbt's log or traceback
            result = dbtRunner(callbacks=[collect]).invoke([*args, *quiet])
    finally:
        _release_adapters()
    if result.success:
        return True, ""
    _stop_abandoned_pools()
    return False, dbt_error(errors or [str(result.exception or f"dbt {args[0]} failed")])


def _stop_abandoned_pools() -> None:
    """Stop the thread pools a failed dbt command left running.

    dbt leaves its pool open when a node raises during compile; at exit Python would then print a
    `Pool.__del__ ... Bad file descriptor` traceback after our error.
    """
    import gc

    from dbt.graph.thread_pool import DbtThreadPool

    pools: list[Any] = [obj for obj in gc.get_objects() if isinstance(obj, DbtThreadPool)]
    for pool in pools:
        if not pool.is_closed():
            pool.close()
            pool.terminate()
            pool.join()


def _release_adapters() -> None:
    """Close what dbt keeps open in this process (dbt-duckdb holds the database file's lock otherwise)."""
    import gc

    from dbt.adapters.factory import FACTORY, reset_adapters

    for adapter in list(FACTORY.adapters.values()):
        close_all = getattr(getattr(adapter, "connections", None), "close_all_connections", None)
        if callable(close_all):
            close_all()
    reset_adapters()  # type: ignore[no-untyped-call]
    gc.collect()


def compile_project(
    *,
    project_dir: Path | str,
    profiles_dir: Path | str,
    target: str | None,
    target_path: Path | str,
    force: bool = False,
) -> CompileResult:
    """Run ``dbt compile`` into target_path unless the project's content hash matches the last success.

    The hash is written beside the manifest only after dbt succeeds, so a failed compile is retried next time.
    Runs ``dbt deps`` first when the project has packages.yml or dependencies.yml. Raises DbtCompileError
    (its first line names the project, the further lines are dbt's cause) when the project is missing or dbt
    fails.
    """
    project = Path(project_dir).resolve()
    profiles = Path(profiles_dir).resolve()
    out = Path(target_path).resolve()
    if not (project / "dbt_project.yml").is_file():
        raise DbtCompileError(f"PHLO_DBT_PROJECT_DIR={str(project_dir)!r}: no dbt_project.yml in {project}")
    if not (profiles / "profiles.yml").is_file():
        raise DbtCompileError(f"PHLO_DBT_PROFILES_DIR={str(profiles_dir)!r}: no profiles.yml in {profiles}")
    spec_hash = project_hash(project_dir=project, profiles_dir=profiles, target=target, target_path=out)
    manifest = out / MANIFEST
    if not force and manifest.is_file() and _recorded_hash(out) == spec_hash:
        return CompileResult(skipped=True, spec_hash=spec_hash, manifest_path=manifest)

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DbtCompileError(
            f"PHLO_DBT_TARGET_PATH={str(target_path)!r}: cannot create {out}: {exc}"
        ) from None
    with _compile_lock(out, target_path):
        # Another process (a code server, `phlo dev`'s watch, a run) may have compiled while we waited.
        if not force and manifest.is_file() and _recorded_hash(out) == spec_hash:
            return CompileResult(skipped=True, spec_hash=spec_hash, manifest_path=manifest)
        packages = [name for name in PACKAGE_FILES if (project / name).is_file()]
        if packages:
            deps = ["deps", "--project-dir", str(project), "--profiles-dir", str(profiles)]
            ok, cause = _invoke(project, [*deps, "--log-path", str(out / "logs")])
            if not ok:
                raise DbtCompileError(_failed(f"dbt deps of {project} ({packages[0]})", cause))
        with _staging(out) as staging:
            args = ["compile", "--project-dir", str(project), "--profiles-dir", str(profiles)]
            args += ["--log-path", str(out / "logs"), "--target-path", str(staging)]
            if target:
                args += ["--target", target]
            ok, cause = _invoke(project, args)
            if not ok:
                raise DbtCompileError(_failed(f"dbt compile of {project}", cause))
            if not (staging / MANIFEST).is_file():
                raise DbtCompileError(f"dbt compile of {project} succeeded but wrote no {manifest}")
            _publish(staging, out)
        record = json.dumps({"hash": spec_hash, "project_dir": str(project)}) + "\n"
        _write_atomically(out / HASH_FILE, record)
    return CompileResult(skipped=False, spec_hash=spec_hash, manifest_path=manifest)


@contextmanager
def _compile_lock(out: Path, target_path: Path | str) -> Iterator[None]:
    """One compile at a time into a target path, across processes (released when the holder exits)."""
    try:
        handle = (out / _LOCK_FILE).open("a")
    except OSError as exc:
        raise DbtCompileError(
            f"PHLO_DBT_TARGET_PATH={str(target_path)!r}: cannot write in {out}: {exc}"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A fresh folder in the target path for dbt to compile into (with the last partial parse, so dbt
    re-parses only what changed); removed afterwards, whether dbt succeeded or not."""
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out))
    try:
        if (out / _PARTIAL_PARSE).is_file():
            shutil.copy2(out / _PARTIAL_PARSE, staging / _PARTIAL_PARSE)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out: Path) -> None:
    """Move what dbt wrote into the target path, manifest.json last and by rename: a process reading the
    manifest meanwhile (a code server loading, a run starting) reads the old one or the new one, whole."""
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST):
        dest = out / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists():
                dest.unlink()
        os.replace(entry, dest)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def compile_from_env(settings: Settings | None = None, *, force: bool = False) -> CompileResult:
    """compile_project configured by PHLO_DBT_PROJECT_DIR, _PROFILES_DIR, _TARGET and _TARGET_PATH."""
    s = settings or load_settings()
    s.ensure_data_dir()
    return compile_project(
        project_dir=s.dbt_project_dir,
        profiles_dir=s.resolved_dbt_profiles_dir,
        target=s.dbt_target,
        target_path=s.resolved_dbt_target_path,
        force=force,
    )


def _dbt_executable() -> str:
    """The dbt beside this interpreter (a virtualenv's bin/ need not be on PATH), else 'dbt' from PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.is_file() else "dbt"


def build_args(*, vars_text: str, full_refresh: bool, run_dir: Path) -> list[str]:
    """`dbt build` with the run's options: --vars as dbt takes it (a YAML or JSON mapping), --full-refresh."""
    args = ["build", "--log-path", str(run_dir / "logs")]
    if vars_text.strip():
        args += ["--vars", vars_text]
    if full_refresh:
        args.append("--full-refresh")
    return args


@contextmanager
def _run_dir() -> Iterator[Path]:
    """A target directory of one run, removed when the run's dbt command is done (even when it failed)."""
    with tempfile.TemporaryDirectory(prefix=_RUN_DIR_PREFIX) as path:
        yield Path(path)


@cache
def _cli_resource_class() -> type[Any]:
    """dagster-dbt's DbtCliResource without two steps before every dbt command that nothing here uses:
    `dbt --version` in a subprocess (a dbt start-up, about 2 s) when the dbt beside this interpreter is the
    dbt-core installed here, and an in-process dbt adapter (about 3 s: imports, profile, connection), which
    serves only row-count and column-metadata fetches this package never asks for (without it, a DuckDB
    run's events also stream as dbt reports them instead of after dbt exits)."""
    dagster_dbt()  # without dbt-core (phlo_dagster/dbt_lazy.py)
    from dagster_dbt import DbtCliResource
    from packaging import version

    class PhloDbtCliResource(DbtCliResource):
        @cached_property
        def _cli_version(self) -> version.Version:
            if self.dbt_executable == str(Path(sys.executable).parent / "dbt"):
                return version.parse(dbt_core_version())
            return super()._cli_version

        def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
            return None

    return PhloDbtCliResource


def _run_config_class() -> type[Any]:
    """The run config of the dbt step (launchpad `ops: {dbt_models: {config: ...}}`, `phlo materialize`)."""
    from dagster import Config
    from pydantic import Field

    class DbtRunConfig(Config):
        """dbt options of one run, passed to `dbt build`."""

        vars: str = Field("", description="dbt --vars: a YAML or JSON mapping, e.g. '{day: 2024-01-01}'.")
        full_refresh: bool = Field(False, description="dbt --full-refresh: rebuild incremental models.")
        select: str = Field(
            "",
            description="dbt --select, e.g. 'tag:nightly' or 'path:models/marts': of the run's dbt models, "
            "build only these.",
        )
        exclude: str = Field("", description="dbt --exclude: of the run's dbt models, leave these out.")
        selector: str = Field(
            "", description="A selector of the project's selectors.yml: of the run's dbt models, build its."
        )

    return DbtRunConfig


class DbtSelectionError(ValueError):
    """A dbt selection (--dbt-select/--dbt-exclude/--selector, or the dbt step's run config) that cannot be
    resolved or selects no model; the message names the input first."""


@dataclass(frozen=True)
class DbtSelection:
    """A dbt node selection as dbt takes it: --select and --exclude (unions) or --selector."""

    select: str = ""
    exclude: str = ""
    selector: str = ""
    names: tuple[str, str, str] = ("--dbt-select", "--dbt-exclude", "--selector")  # how the user gave them

    def __bool__(self) -> bool:
        return bool(self.select.strip() or self.exclude.strip() or self.selector.strip())

    def describe(self) -> str:
        given = zip(self.names, (self.select, self.exclude, self.selector), strict=True)
        return " ".join(f"{name} {value.strip()!r}" for name, value in given if value.strip())


def selection_keys(assets_def: Any, selection: DbtSelection, project_dir: Path) -> set[Any]:
    """The asset keys of the dbt models (and seeds, snapshots) a dbt selection picks, resolved by dbt's own
    selector on the loaded manifest (selectors.yml is compiled into it). DbtSelectionError when the selection
    is invalid or picks no model."""
    dagster_dbt()
    from dagster_dbt import DbtManifestAssetSelection
    from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

    select, exclude, selector = (v.strip() for v in (selection.select, selection.exclude, selection.selector))
    if selector and (select or exclude):
        raise DbtSelectionError(
            f"{selection.names[2]} {selector!r}: a selector stands alone (dbt takes no "
            f"{selection.names[0]}/{selection.names[1]} with it); put the rest in the selector's definition"
        )
    manifest, translator, project = get_manifest_and_translator_from_dbt_assets([assets_def])
    if selector and selector not in (manifest.get("selectors") or {}):
        names = ", ".join(sorted(manifest.get("selectors") or {})) or "none: the project has no selectors.yml"
        raise DbtSelectionError(f"{selection.names[2]} {selector!r}: no such selector (selectors: {names})")
    chosen = DbtManifestAssetSelection.build(
        manifest,
        select or ("" if selector else "fqn:*"),
        dagster_dbt_translator=translator,
        exclude=exclude,
        selector=selector,
        project=project,
    )
    try:
        # dbt's path: method globs from the current folder, as `dbt` run in the project does
        with _working_dir(project_dir):
            keys = set(chosen.resolve([assets_def]))
    except Exception as exc:
        cause = "\n".join(block_lines(str(exc))) or type(exc).__name__
        raise DbtSelectionError(_failed(selection.describe(), cause)) from None
    if not keys:
        raise DbtSelectionError(f"{selection.describe()}: selects no dbt model")
    return keys


@contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@dataclass(frozen=True)
class _Nodes:
    """The dbt resources behind the assets and checks of the loaded definitions: all a run may build."""

    by_key: Mapping[Any, str]  # asset key -> unique id (models, seeds, snapshots)
    by_check: Mapping[Any, str]  # asset check key -> unique id of its test
    tests: Mapping[str, frozenset[str]]  # every test of the manifest -> the nodes it depends on
    selector: Mapping[str, str]  # unique id -> 'fqn:...', the selection of exactly that node

    @classmethod
    def of(cls, assets_def: Any, manifest: Mapping[str, Any]) -> _Nodes:
        nodes: Mapping[str, Any] = manifest.get("nodes") or {}
        by_key = {
            key: str(spec.metadata[_UNIQUE_ID])
            for key, spec in assets_def.specs_by_key.items()
            if _UNIQUE_ID in spec.metadata
        }
        by_check = {
            spec.key: str(spec.metadata[_UNIQUE_ID])
            for spec in assets_def.check_specs
            if _UNIQUE_ID in spec.metadata
        }
        tests = {
            uid: frozenset(node.get("depends_on", {}).get("nodes") or ())
            for uid, node in nodes.items()
            if node.get("resource_type") == "test"
        }
        selector = {uid: "fqn:" + ".".join(node["fqn"]) for uid, node in nodes.items() if node.get("fqn")}
        return cls(by_key, by_check, tests, selector)


def step_selection(context: Any, nodes: _Nodes, chosen: set[Any] | None) -> list[str]:
    """dbt arguments that build exactly the step's selected models and run exactly its selected tests, as
    the loaded manifest names them: a model or test added to the project since is never run (dbt parses the
    project's files anew, and dagster-dbt would fail on a node it does not know). `chosen` (the run config's
    dbt selection) narrows the step's models; its tests follow their models.
    """
    selected = {k for k in context.selected_asset_keys if k in nodes.by_key}
    kept = {k for k in selected if chosen is None or k in chosen}
    kept_ids = {nodes.by_key[k] for k in kept}
    dropped_ids = {nodes.by_key[k] for k in selected - kept}
    checked = set(nodes.by_check.values())
    tests = {
        uid
        for check, uid in nodes.by_check.items()
        if check in context.selected_asset_check_keys and not nodes.tests.get(uid, frozenset()) & dropped_ids
    }
    # Tests that are no asset check (a singular test on several models): run when they touch a kept model,
    # as dbt's default (eager) indirect selection would.
    tests |= {uid for uid, parents in nodes.tests.items() if uid not in checked and parents & kept_ids}
    tests -= {uid for uid, parents in nodes.tests.items() if parents & dropped_ids}
    args = ["--indirect-selection", "empty", "--select", _union(nodes, kept_ids | tests)]
    if dropped_ids:  # dagster-dbt adds its own --select of the step's models; dbt applies --exclude last
        dropped_tests = {uid for uid, parents in nodes.tests.items() if parents & dropped_ids}
        args += ["--exclude", _union(nodes, dropped_ids | dropped_tests)]
    return args


def _union(nodes: _Nodes, ids: Iterable[str]) -> str:
    return " ".join(sorted(nodes.selector[uid] for uid in ids if uid in nodes.selector))


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DbtCompileError(f"{path}: not a readable dbt manifest ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        raise DbtCompileError(f"{path}: not a dbt manifest (no nodes); run `phlo dbt compile --force`")
    return data


def dbt_definitions(settings: Settings) -> tuple[list[Any], dict[str, Any], dict[Any, str]]:
    """(assets, resources, source-by-key) for the dbt models in the compiled manifest.

    With PHLO_DBT_COMPILE_ON_LOAD (the default) the project is compiled first when it has no manifest or
    its inputs changed since the last compile (so a reload of the code location sees a model added
    meanwhile); otherwise a missing manifest is a DbtCompileError telling the user to run
    ``phlo dbt compile``.
    """
    from dagster import Failure

    dagster_dbt()
    from dagster_dbt import DagsterDbtTranslator, dbt_assets

    manifest_path = settings.resolved_dbt_target_path / MANIFEST
    if settings.dbt_compile_on_load:
        manifest_path = compile_from_env(settings).manifest_path
    elif not manifest_path.is_file():
        raise DbtCompileError(
            f"PHLO_DBT_TARGET_PATH={str(settings.resolved_dbt_target_path)!r}: no {MANIFEST}; "
            "run `phlo dbt compile` first"
        )
    manifest = _load_manifest(manifest_path)
    project_dir = settings.dbt_project_dir.resolve()
    loaded: dict[str, Any] = {}  # the whole dbt assets definition and its index, for the step (set below)

    def dbt_models(context, config):  # type: ignore[no-untyped-def]
        """Build the selected dbt models (and their tests, reported as asset checks)."""
        dbt = getattr(context.resources, DBT_RESOURCE_KEY)
        chosen = None
        wanted = DbtSelection(config.select, config.exclude, config.selector, names=_CONFIG_NAMES)
        if wanted:
            try:
                chosen = selection_keys(loaded["assets"], wanted, project_dir)
                if not chosen & set(context.selected_asset_keys):
                    raise DbtSelectionError(f"{wanted.describe()}: selects none of this run's dbt models")
            except DbtSelectionError as exc:
                raise Failure(description=str(exc)) from None
        with _run_dir() as run_dir:  # the compiled target path may be read-only; nothing is left behind
            args = build_args(vars_text=config.vars, full_refresh=config.full_refresh, run_dir=run_dir)
            args += step_selection(context, loaded["nodes"], chosen)
            yield from dbt.cli(args, context=context, target_path=run_dir).stream()

    # A real class, not the string `from __future__ import annotations` would leave: Dagster reads it.
    dbt_models.__annotations__["config"] = _run_config_class()
    assets = dbt_assets(
        manifest=manifest,
        dagster_dbt_translator=DagsterDbtTranslator(),
        name=DBT_OP_NAME,
        required_resource_keys={DBT_RESOURCE_KEY},
    )(dbt_models)
    _drop_run_selection(assets)
    loaded.update(assets=assets, nodes=_Nodes.of(assets, manifest))

    resource = _cli_resource_class()(
        project_dir=str(project_dir),
        profiles_dir=str(settings.resolved_dbt_profiles_dir),
        target=settings.dbt_target,
        dbt_executable=_dbt_executable(),
        global_config_flags=["--log-level-file", "none", "--no-send-anonymous-usage-stats"],
    )
    sources = {key: f"dbt model in {manifest_path}" for key in assets.keys}
    return [assets], {DBT_RESOURCE_KEY: resource}, sources


def _drop_run_selection(assets: Any) -> None:
    """Take dagster-dbt's `fqn:*` selection tag off the op, after it selected the manifest's nodes.

    At run time dagster-dbt passes that tag to dbt as `--select fqn:*` whenever a run builds every model, and
    dbt, which parses the project's files anew, would then build models added since this manifest was
    compiled (and dagster-dbt fail on them). Without the tag the step's own `--select` (step_selection,
    exactly the loaded nodes) is the whole selection. dagster-dbt refuses the tag in `op_tags`, so it is
    removed from the built op.
    """
    dagster_dbt()
    from dagster_dbt.asset_utils import DAGSTER_DBT_SELECT_METADATA_KEY

    op = assets.op
    tags = {k: v for k, v in op.tags.items() if k != DAGSTER_DBT_SELECT_METADATA_KEY}
    object.__setattr__(op, "_tags", tags)
    if DAGSTER_DBT_SELECT_METADATA_KEY in op.tags:
        raise RuntimeError("dagster-dbt's selection tag could not be removed from the dbt op")


_CONFIG_NAMES = (
    f"ops.{DBT_OP_NAME}.config.select",
    f"ops.{DBT_OP_NAME}.config.exclude",
    f"ops.{DBT_OP_NAME}.config.selector",
)
