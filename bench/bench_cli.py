"""A data engineer's feedback loop: `phlo materialize` and `phlo dev` against native Dagster and dbt.

    .venv/bin/python bench/bench_cli.py [--repeats 5] [--json .bench/cli.json] [--only asset,dbt,ui]
                                        [--markdown F]

Three timings, each a whole command in a fresh process (what the user waits for), interleaved per repeat so
load on the machine hits every variant alike; medians and ratios go to stdout as a Markdown table:

- one small asset (a workflow spec with a no-op body, no dbt): `phlo materialize wf/first` vs
  `dagster asset materialize -m phlo_dagster.definitions --select wf/first` on the same definitions;
- one dbt model of tests/fixtures/dbt_shop (seeds already built): `phlo materialize stg_customers` vs the same
  `dagster asset materialize` vs dbt's own `dbt build --select stg_customers` in the project folder;
- time to UI: `phlo dev` vs `dagster dev -m phlo_dagster.definitions`, from process start until the
  webserver's GraphQL reports the code location loaded with its assets.

Each side keeps its own instance folder from run to run, as a user's project does (`.phlo/` for phlo,
DAGSTER_HOME=.dagster/ for native Dagster), after one uncounted warm-up of every case. Targets (issue 14):
each `phlo` figure at most 1.1x native, and `phlo materialize` of one dbt model under 2x dbt's own
`dbt build --select`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHOP = ROOT / "tests" / "fixtures" / "dbt_shop"
WORKFLOW = """from phlo_dagster.capabilities import AssetSpec, MaterializeResult, RunSpec, register_asset

register_asset(AssetSpec(key="wf.first", run=RunSpec(fn=lambda context: MaterializeResult())))
"""
LOCATION_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename } } } } assetNodes { id } }"
)


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PHLO_", "WORKFLOWS_"))}
    env.update(TMPDIR=str(project / "tmp"), **extra)
    return env


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(argv)} failed in {cwd}:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return elapsed


def _home(project: Path, which: str) -> dict[str, str]:
    """The instance folder of one side, kept from run to run as a user's is (`.phlo/` is phlo's own; native
    Dagster gets DAGSTER_HOME=.dagster/): each side reads only the history it wrote itself."""
    if which == "phlo":
        return {}
    home = project / ".dagster"
    home.mkdir(exist_ok=True)
    return {"DAGSTER_HOME": str(home)}


def spec_project(root: Path) -> tuple[Path, dict[str, str]]:
    project = root / "spec"
    (project / "workflows").mkdir(parents=True)
    (project / "tmp").mkdir()
    (project / "workflows" / "plain.py").write_text(WORKFLOW)
    return project, {"WORKFLOWS_PATH": "workflows", "PHLO_DBT_ENABLED": "false"}


def dbt_project(root: Path) -> tuple[Path, dict[str, str]]:
    """The dbt_shop fixture compiled, with its seeds built (the model under test reads them)."""
    project = root / "dbt"
    shutil.copytree(SHOP, project / "shop", ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    (project / "tmp").mkdir()
    settings = {"PHLO_DBT_ENABLED": "true", "PHLO_DBT_PROJECT_DIR": "shop"}
    env = _env(project, **settings)
    _timed([str(BIN / "phlo"), "dbt", "compile"], project, env)
    _timed([str(BIN / "dbt"), "seed", "--profiles-dir", "."], project / "shop", env)
    return project, settings


def materialize_phlo(project: Path, settings: dict[str, str], asset: str) -> float:
    env = _env(project, **settings)
    return _timed([str(BIN / "phlo"), "materialize", asset], project, env)


def materialize_native(project: Path, settings: dict[str, str], asset: str) -> float:
    env = _env(project, **settings, **_home(project, "native"))
    argv = [str(BIN / "dagster"), "asset", "materialize", "-m", "phlo_dagster.definitions", "--select", asset]
    return _timed(argv, project, env)


def dbt_build(project: Path, model: str) -> float:
    env = _env(project)
    return _timed(
        [str(BIN / "dbt"), "build", "--select", model, "--profiles-dir", "."], project / "shop", env
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _loaded(url: str) -> bool:
    body = json.dumps({"query": LOCATION_QUERY}).encode()
    request = urllib.request.Request(url + "/graphql", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            data = json.load(response).get("data") or {}
    except (OSError, ValueError):
        return False
    entries = (data.get("workspaceOrError") or {}).get("locationEntries") or []
    ok = any(
        e["loadStatus"] == "LOADED"
        and (e.get("locationOrLoadError") or {}).get("__typename") == "RepositoryLocation"
        for e in entries
    )
    return ok and bool(data.get("assetNodes"))


def time_to_ui(project: Path, settings: dict[str, str], which: str) -> float:
    port = _free_port()
    if which == "phlo":
        env = _env(project, **settings)
        argv = [str(BIN / "phlo"), "dev", "--port", str(port)]
    else:
        env = _env(project, **settings, **_home(project, "native"))
        argv = [str(BIN / "dagster"), "dev", "-m", "phlo_dagster.definitions", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not _loaded(url):
            if proc.poll() is not None:
                raise SystemExit(
                    f"bench: {' '.join(argv)} exited with {proc.returncode} before the UI loaded"
                )
            if time.perf_counter() - started > 600:
                raise SystemExit(f"bench: {' '.join(argv)}: no loaded code location within 600 s")
            time.sleep(0.1)
        return time.perf_counter() - started
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / ".bench" / "cli.json")
    parser.add_argument(
        "--only", default="", help="comma-separated case groups to run (asset, dbt, ui); default all"
    )
    parser.add_argument("--markdown", type=Path, help="write this benchmark's BENCHMARKS.md section here")
    args = parser.parse_args()
    groups = {g for g in args.only.split(",") if g}
    with tempfile.TemporaryDirectory(prefix="phlo-bench-cli-") as tmp:
        root = Path(tmp)
        spec, spec_settings = spec_project(root)
        shop, shop_settings = dbt_project(root)
        cases: dict[str, Callable[[], float]] = {
            "asset/phlo": lambda: materialize_phlo(spec, spec_settings, "wf/first"),
            "asset/native": lambda: materialize_native(spec, spec_settings, "wf/first"),
            "dbt/phlo": lambda: materialize_phlo(shop, shop_settings, "stg_customers"),
            "dbt/native": lambda: materialize_native(shop, shop_settings, "stg_customers"),
            "dbt/dbt": lambda: dbt_build(shop, "stg_customers"),
            "ui/phlo": lambda: time_to_ui(spec, spec_settings, "phlo"),
            "ui/native": lambda: time_to_ui(spec, spec_settings, "native"),
        }
        if groups:
            cases = {name: case for name, case in cases.items() if name.split("/")[0] in groups}
        for name, case in cases.items():  # a warm-up, not counted: instances created, caches filled
            _say(f"bench: warm-up {name:<12} {case():.2f}s")
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for repeat in range(args.repeats):
            for name, case in cases.items():
                samples[name].append(case())
                _say(f"bench: run {repeat + 1}/{args.repeats} {name:<12} {samples[name][-1]:.2f}s")
    med = {name: statistics.median(values) for name, values in samples.items()}
    rows = [
        ("one small asset: `phlo materialize` / `dagster asset materialize`", "asset/phlo", "asset/native"),
        ("one dbt model: `phlo materialize` / `dagster asset materialize`", "dbt/phlo", "dbt/native"),
        ("one dbt model: `phlo materialize` / `dbt build --select`", "dbt/phlo", "dbt/dbt"),
        ("time to UI: `phlo dev` / `dagster dev`", "ui/phlo", "ui/native"),
    ]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"repeats": args.repeats, "samples": samples, "medians": med}, indent=2))
    text = markdown(med, samples, rows, args.repeats)
    if args.markdown:
        args.markdown.write_text(text)
    sys.stdout.write(text)


INTRO = """\
What is timed (bench/bench_cli.py): whole commands in fresh processes, what the user waits for, after one
uncounted warm-up of each; the variants are interleaved per repeat and each side keeps its own instance
folder between runs, as a project does. Native Dagster runs the same definitions (`-m
phlo_dagster.definitions`) with its own CLI, so the difference is the CLI and the executor, not the
definitions:

- one small asset: a workflow spec with a no-op body (`phlo materialize wf/first` vs `dagster asset
  materialize --select wf/first`);
- one dbt model of tests/fixtures/dbt_shop, seeds built (`phlo materialize stg_customers` vs the same
  `dagster asset materialize` vs dbt's own `dbt build --select stg_customers` in the project folder);
- time to UI: process start until the webserver's GraphQL reports the code location loaded with its assets
  (`phlo dev` vs `dagster dev -m phlo_dagster.definitions`)."""

WHY = """\
Targets: at most 1.1x native for each `phlo` figure, and `phlo materialize` of one dbt model under 2x dbt's
own `dbt build --select`.

What was cut to get here:

- dagster-dbt ran `dbt --version` in a subprocess (a whole dbt start-up) and built an in-process dbt adapter
  (about 3 s) before every dbt command; neither serves anything this package uses, so the resource skips
  both (`_cli_resource_class` in phlo_dagster/dbt.py): the run of one dbt model went from 9.2 s to 2.9 s
  inside `phlo materialize` (from the run's own "succeeded in" line).
- `phlo materialize` runs in-process (no step subprocess) and launched runs fork their steps from a
  forkserver that built the definitions once (phlo_dagster/definitions.py, `step_executor`); a 5-step chain
  through `dagster asset materialize` took 12.5-16 s against 20-42 s with Dagster's default spawn start.
- `phlo dev` starts one `dagster code-server start` per location itself and gives the webserver and the
  daemon a workspace of `grpc_server` entries pointing at it (phlo_dagster/dev_code.py): before, each loaded
  the code location in a code server of its own, two definition loads competing on 2 busy cores, where
  `dagster dev` starts one code server that both use.

- dagster-dbt imported dbt-core on import (its `compat` module: 1.5-2 s of every code server, run worker
  and `phlo materialize` start), although dbt runs as a subprocess and the manifest is JSON. It is now
  imported in its mode for environments without dbt-core (phlo_dagster/dbt_lazy.py); a selection other than
  "every node" still loads dbt-core's selector when it is asked for. Loading a dbt project's definitions
  imports no dbt module (tests/integration/test_dbt_selection.py).

Where the rest of `phlo materialize stg_customers` goes: the interpreter and `import dagster`, the
definitions (parsing the manifest), opening the SQLite instance (alembic loads its 176 revision files to check
the schema), then the step: dbt's own start-up and build (what `dbt build` costs alone) plus dagster-dbt's
event handling. Under heavy load the dbt ratio spreads widely per pair (see the last column)."""


def markdown(
    med: dict[str, float], samples: dict[str, list[float]], rows: list[tuple[str, str, str]], repeats: int
) -> str:
    lines = [
        "## A data engineer's feedback loop: `phlo materialize` and `phlo dev` against native Dagster and dbt"
    ]
    lines += ["", INTRO, "", f"| what (medians of {repeats}) | ours | reference | ratio | per pair |"]
    lines.append("|---|---:|---:|---:|---|")
    for label, ours, ref in rows:
        if ours not in med:
            continue
        pairs = ", ".join(f"{a / b:.2f}" for a, b in zip(samples[ours], samples[ref], strict=True))
        lines.append(
            f"| {label} | {med[ours]:.2f} s | {med[ref]:.2f} s | {med[ours] / med[ref]:.2f}x | {pairs} |"
        )
    return "\n".join([*lines, "", WHY]) + "\n"


if __name__ == "__main__":
    main()
