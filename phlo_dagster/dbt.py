"""dbt: compile a project with dbt-core's programmatic API (skipped when its content is unchanged) and
turn the compiled manifest into Dagster assets through dagster-dbt.

dbt sources named after spec keys (source ``raw``, table ``orders`` = spec ``raw.orders``) become the models'
upstream assets, so lineage runs from ingestion specs through the models. Every dbt command runs in the
project folder, as ``dbt build`` run there by hand does, so relative paths in profiles.yml (a DuckDB
``path:``) agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phlo_dagster.settings import Settings, load_settings
from phlo_dagster.text import block_lines

__all__ = [
    "DBT_OP_NAME",
    "HASH_FILE",
    "PACKAGE_FILES",
    "CompileResult",
    "DbtCompileError",
    "build_args",
    "compile_from_env",
    "compile_project",
    "dbt_definitions",
    "dbt_error",
    "project_hash",
]

HASH_FILE = "phlo_compile.json"
MANIFEST = "manifest.json"
DBT_RESOURCE_KEY = "dbt"
DBT_OP_NAME = "dbt_models"
PACKAGE_FILES = ("packages.yml", "dependencies.yml")
_HASHED_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".jinja"}
_PACKAGE_LOCK = "package-lock.yml"
_RUN_DIR_PREFIX = "phlo-dbt-run-"
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


def _project_files(project_dir: Path, target_path: Path) -> Iterator[Path]:
    for path in sorted(project_dir.rglob("*")):
        rel = path.relative_to(project_dir)
        if not path.is_file() or path.suffix not in _HASHED_SUFFIXES or path.name.startswith("."):
            continue
        if path.name == _PACKAGE_LOCK:  # written by `dbt deps` from packages.yml, which is hashed
            continue
        if any(p in _SKIPPED_DIRS or p.startswith(".") for p in rel.parts[:-1]):
            continue
        if path.is_relative_to(target_path):
            continue
        yield path


def project_hash(*, project_dir: Path, profiles_dir: Path, target: str | None, target_path: Path) -> str:
    """SHA-256 over the project's sql/yml/csv files, profiles.yml, the target name and the dbt version."""
    from dbt.version import __version__ as dbt_version

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
    common = ["--project-dir", str(project), "--profiles-dir", str(profiles), "--log-path", str(out / "logs")]
    packages = [name for name in PACKAGE_FILES if (project / name).is_file()]
    if packages:
        ok, cause = _invoke(project, ["deps", *common])
        if not ok:
            raise DbtCompileError(_failed(f"dbt deps of {project} ({packages[0]})", cause))
    args = ["compile", *common, "--target-path", str(out)]
    if target:
        args += ["--target", target]
    ok, cause = _invoke(project, args)
    if not ok:
        raise DbtCompileError(_failed(f"dbt compile of {project}", cause))
    if not manifest.is_file():
        raise DbtCompileError(f"dbt compile of {project} succeeded but wrote no {manifest}")
    (out / HASH_FILE).write_text(json.dumps({"hash": spec_hash, "project_dir": str(project)}) + "\n")
    return CompileResult(skipped=False, spec_hash=spec_hash, manifest_path=manifest)


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


def _run_config_class() -> type[Any]:
    """The run config of the dbt step (launchpad `ops: {dbt_models: {config: ...}}`, `phlo materialize`)."""
    from dagster import Config
    from pydantic import Field

    class DbtRunConfig(Config):
        """dbt options of one run, passed to `dbt build`."""

        vars: str = Field("", description="dbt --vars: a YAML or JSON mapping, e.g. '{day: 2024-01-01}'.")
        full_refresh: bool = Field(False, description="dbt --full-refresh: rebuild incremental models.")

    return DbtRunConfig


def dbt_definitions(settings: Settings) -> tuple[list[Any], dict[str, Any], dict[Any, str]]:
    """(assets, resources, source-by-key) for the dbt models in the compiled manifest.

    Compiles first when no manifest exists and PHLO_DBT_COMPILE_ON_LOAD allows it; otherwise a missing
    manifest is a DbtCompileError telling the user to run ``phlo dbt compile``.
    """
    from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

    manifest = settings.resolved_dbt_target_path / MANIFEST
    if not manifest.is_file():
        if not settings.dbt_compile_on_load:
            raise DbtCompileError(
                f"PHLO_DBT_TARGET_PATH={str(settings.resolved_dbt_target_path)!r}: no {MANIFEST}; "
                "run `phlo dbt compile` first"
            )
        manifest = compile_from_env(settings).manifest_path

    project_dir = settings.dbt_project_dir.resolve()

    def dbt_models(context, config):  # type: ignore[no-untyped-def]
        """Build the selected dbt models (and their tests, reported as asset checks)."""
        dbt = getattr(context.resources, DBT_RESOURCE_KEY)
        with _run_dir() as run_dir:  # the compiled target path may be read-only; nothing is left behind
            args = build_args(vars_text=config.vars, full_refresh=config.full_refresh, run_dir=run_dir)
            yield from dbt.cli(args, context=context, target_path=run_dir).stream()

    # A real class, not the string `from __future__ import annotations` would leave: Dagster reads it.
    dbt_models.__annotations__["config"] = _run_config_class()
    dbt_models = dbt_assets(
        manifest=manifest,
        dagster_dbt_translator=DagsterDbtTranslator(),
        name=DBT_OP_NAME,
        required_resource_keys={DBT_RESOURCE_KEY},
    )(dbt_models)

    resource = DbtCliResource(
        project_dir=str(project_dir),
        profiles_dir=str(settings.resolved_dbt_profiles_dir),
        target=settings.dbt_target,
        dbt_executable=_dbt_executable(),
        global_config_flags=["--log-level-file", "none", "--no-send-anonymous-usage-stats"],
    )
    sources = {key: f"dbt model in {manifest}" for key in dbt_models.keys}
    return [dbt_models], {DBT_RESOURCE_KEY: resource}, sources
