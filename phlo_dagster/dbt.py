"""dbt: compile a project with dbt-core's programmatic API (skipped when its content is unchanged) and
turn the compiled manifest into Dagster assets through dagster-dbt.

dbt sources named after spec keys (source ``raw``, table ``orders`` = spec ``raw.orders``) become the models'
upstream assets, so lineage runs from ingestion specs through the models.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phlo_dagster.settings import Settings, load_settings
from phlo_dagster.text import nonblank_lines

__all__ = [
    "HASH_FILE",
    "CompileResult",
    "DbtCompileError",
    "compile_from_env",
    "compile_project",
    "dbt_definitions",
    "project_hash",
]

HASH_FILE = "phlo_compile.json"
MANIFEST = "manifest.json"
DBT_RESOURCE_KEY = "dbt"
_HASHED_SUFFIXES = {".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".jinja"}
_RUNTIME_DIR = Path(tempfile.gettempdir()) / "phlo-dbt"
_SKIPPED_DIRS = {"target", "dbt_packages", "logs", "__pycache__"}


class DbtCompileError(Exception):
    """dbt could not compile the project; ``str()`` is a one-line cause."""


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


def _one_line(text: str) -> str:
    """A traceback's last line, or the first lines of a dbt error ('Compilation Error in model x' + why)."""
    lines = [ln for ln in nonblank_lines(text) if not set(ln) <= set("^~ ")]
    if not lines:
        return "unknown error"
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        return lines[-1][:500]
    return " | ".join(lines[:3])[:500]


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
    Raises DbtCompileError (one-line cause) when the project is missing or dbt fails.
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

    from dbt.cli.main import dbtRunner

    errors: list[str] = []

    def collect(event: Any) -> None:
        if getattr(event.info, "level", "") == "error":
            errors.append(str(event.info.msg))

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DbtCompileError(
            f"PHLO_DBT_TARGET_PATH={str(target_path)!r}: cannot create {out}: {exc}"
        ) from None
    args = [
        "compile",
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(profiles),
        "--target-path",
        str(out),
        "--log-path",
        str(out / "logs"),
        "--log-level-file",
        "none",
        "--log-level",
        "none",  # errors reach us through the callback; the CLI prints one line, not dbt's traceback
        "--no-send-anonymous-usage-stats",
    ]
    if target:
        args += ["--target", target]
    cwd = Path.cwd()
    try:
        result = dbtRunner(callbacks=[collect]).invoke(args)
    finally:
        os.chdir(cwd)  # dbt may change directory while parsing
        _release_adapters()
    if not result.success:
        cause = errors[-1] if errors else str(result.exception or "dbt compile failed")
        raise DbtCompileError(f"dbt compile of {project} failed: {_one_line(cause)}")
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

    @dbt_assets(
        manifest=manifest,
        dagster_dbt_translator=DagsterDbtTranslator(),
        name="dbt_models",
        required_resource_keys={DBT_RESOURCE_KEY},
    )
    def dbt_models(context):  # type: ignore[no-untyped-def]
        """Build the selected dbt models (and their tests, reported as asset checks)."""
        dbt = getattr(context.resources, DBT_RESOURCE_KEY)
        run_dir = _RUNTIME_DIR / context.run.run_id  # the compiled target path may be read-only
        yield from dbt.cli(["build"], context=context, target_path=run_dir).stream()

    resource = DbtCliResource(
        project_dir=str(project_dir),
        profiles_dir=str(settings.resolved_dbt_profiles_dir),
        target=settings.dbt_target,
        dbt_executable=_dbt_executable(),
        global_config_flags=[
            "--log-path",
            str(_RUNTIME_DIR / "logs"),
            "--log-level-file",
            "none",
            "--no-send-anonymous-usage-stats",
        ],
    )
    sources = {key: f"dbt model in {manifest}" for key in dbt_models.keys}
    return [dbt_models], {DBT_RESOURCE_KEY: resource}, sources
