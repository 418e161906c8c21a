"""Runtime at scale: code-server cold start, /metrics on a long history, definitions build at 50,000 specs.

    .venv/bin/python bench/bench_runtime.py [--only coldstart,metrics,build] [--repeats 5] [--large-repeats 3]
        [--specs 10000] [--build-sizes 1000,10000,50000] [--metrics-sizes 10000,100000] [--json FILE]
        [--markdown FILE]
    make bench ONLY=runtime [BENCH_ARGS="--only coldstart"]

Prints the "Runtime at scale" section of BENCHMARKS.md (markdown, on stdout; progress on stderr):

- cold start: `dagster api grpc -m phlo_dagster.definitions` (the code server's command in our image and in
  the operator's Deployment) against `dagster api grpc -m <module>` on the same definitions written with
  Dagster's decorators, for the quickstart (bench/runtime_quickstart_native.py) and for generated specs;
- /metrics: bench/bench_metrics.py at each size of --metrics-sizes (runs = materializations), filled in
  batches (bench/runtime_fill.py), with the webserver's resident memory;
- definitions build: bench/worker.py (the build benchmark's worker) for ours and native at each size.

Each measurement runs in a fresh process; ours and native alternate within every repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_DIR = ROOT / ".bench"
WORK = BENCH_DIR / "runtime"
BIN = Path(sys.executable).parent
QUICKSTART = ROOT / "examples" / "quickstart"
DAGSTER_PIN = "1.13.27"
SERVE_TIMEOUT_S = 900.0
CHAIN = 10

# The generated workflow module (ours) and its native twin: N assets each with group, description, kinds,
# tags, metadata, a run function and one blocking function check, as in bench/worker.py, but in chains of
# CHAIN assets rather than one chain of N: when a code server starts, Dagster builds the implicit asset job
# and checks it for cycles with a topological sort that is quadratic in the depth of the graph (a 10,000-long
# chain kept `dagster api grpc` loading for over 14 minutes of 2 busy cores, ours and native alike).
OURS_SPECS = '''"""{n} generated specs for bench/bench_runtime.py (ours)."""
from phlo_dagster.capabilities import AssetCheckSpec, AssetSpec, MaterializeResult, RunSpec
from phlo_dagster.capabilities import register_asset, register_check


def run(context):
    return MaterializeResult()


def ok(context):
    return True


for i in range({n}):
    register_asset(
        AssetSpec(
            key=f"bench.a{{i}}",
            group="bench",
            description="benchmark asset",
            kinds={{"python"}},
            tags={{"team": "bench"}},
            metadata={{"index": i}},
            deps=[f"bench.a{{i - 1}}"] if i % {chain} else [],
            run=RunSpec(fn=run),
        )
    )
    register_check(AssetCheckSpec(name="ok", asset_key=f"bench.a{{i}}", fn=ok))
'''

NATIVE_SPECS = '''"""{n} assets written with Dagster's decorators for bench/bench_runtime.py (native)."""
import dagster as dg


def _make(i):
    key = dg.AssetKey(["bench", f"a{{i}}"])

    @dg.asset(
        key=key,
        group_name="bench",
        description="benchmark asset",
        kinds={{"python"}},
        tags={{"team": "bench"}},
        metadata={{"index": i}},
        deps=[dg.AssetKey(["bench", f"a{{i - 1}}"])] if i % {chain} else None,
    )
    def _asset(context):
        return dg.MaterializeResult()

    @dg.asset_check(asset=key, name="ok", blocking=True)
    def _check(context):
        return dg.AssetCheckResult(passed=True)

    return _asset, _check


_built = [_make(i) for i in range({n})]
defs = dg.Definitions(assets=[a for a, _ in _built], asset_checks=[c for _, c in _built])
'''


def say(message: str) -> None:
    sys.stderr.write(f"bench_runtime: {message}\n")
    sys.stderr.flush()


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> dict[str, str]:
    cpu, mem_gib = "unknown", 0.0
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        mem_gib = kib / 1024 / 1024
    except (OSError, StopIteration):
        pass
    import platform

    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_gib:.0f} GiB",
        "python": platform.python_version(),
        "dagster": DAGSTER_PIN,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHLO_", "DAGSTER_", "WORKFLOWS_"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])  # dbt, as on the image's PATH
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------- cold start


@dataclass
class Server:
    """One side of a cold-start pair: the module `dagster api grpc -m` loads, its env and folder."""

    label: str
    module: str
    env: dict[str, str]
    cwd: Path
    assets: int  # expected asset count in the served repository (checked on the uncounted first start)
    samples: list[dict[str, float]] = field(default_factory=list)


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    return next(
        (int(x.split()[1]) / 1024 for x in status.splitlines() if x.startswith("VmRSS:")), float("nan")
    )


def cold_start(server: Server, *, verify: bool = False) -> dict[str, float]:
    """Start `dagster api grpc`, poll ping until it answers (serving), then fetch the repository snapshot the
    webserver fetches (ListRepositories + ExternalRepository); times from just before the process start."""
    from dagster._core.errors import DagsterUserCodeUnreachableError
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._grpc.types import ListRepositoriesResponse
    from dagster_shared.serdes import deserialize_value

    port = free_port()
    log_path = WORK / f"{server.label}.log"
    argv = [str(BIN / "dagster"), "api", "grpc", "-m", server.module, "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=server.cwd, env=server.env, stdout=log, stderr=subprocess.STDOUT)
    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    try:
        while True:
            try:
                client.ping("bench")
                break
            except DagsterUserCodeUnreachableError:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                    raise SystemExit(f"{server.label}: the code server exited: {tail}") from None
                if time.perf_counter() - started > SERVE_TIMEOUT_S:
                    raise SystemExit(f"{server.label}: not serving after {SERVE_TIMEOUT_S:.0f}s") from None
                time.sleep(0.02)
        serving = time.perf_counter() - started
        listed = deserialize_value(client.list_repositories(), ListRepositoriesResponse)
        symbol = listed.repository_symbols[0]
        origin = RemoteRepositoryOrigin(
            GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name="bench"),
            symbol.repository_name,
        )
        serialized = client.external_repository(origin)
        snapshot = time.perf_counter() - started
        rss = rss_mib(proc.pid)
        if verify:
            from dagster._core.remote_representation.external_data import RepositorySnap

            snap = deserialize_value(serialized, RepositorySnap)
            if len(snap.asset_nodes) != server.assets:
                raise SystemExit(
                    f"{server.label}: serves {len(snap.asset_nodes)} assets, expected {server.assets}"
                )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"serving_s": serving, "snapshot_s": snapshot, "rss_mib": rss, "bytes": float(len(serialized))}


def quickstart_servers() -> tuple[Server, Server]:
    """Our code location on the quickstart (workflows, plugin on PYTHONPATH as `make demo` has it, dbt with
    a manifest compiled beforehand, PHLO_DBT_COMPILE_ON_LOAD=false as the operator sets it) and its native
    twin."""
    from phlo_dagster.demo import plugin_pythonpath

    work = WORK / "quickstart"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home = work / "home"
    home.mkdir()
    target = work / "dbt-target"
    plugin = plugin_pythonpath(QUICKSTART / "plugin", work / "plugin-site")
    common = {"DAGSTER_HOME": str(home), "PHLO_DATA_DIR": str(work / "data")}
    ours_env = clean_env(
        **common,
        WORKFLOWS_PATH=str(QUICKSTART / "workflows"),
        PHLO_DBT_ENABLED="true",
        PHLO_DBT_PROJECT_DIR=str(QUICKSTART / "dbt"),
        PHLO_DBT_TARGET_PATH=str(target),
        PYTHONPATH=os.pathsep.join(map(str, plugin)),
    )
    say("compiling the quickstart's dbt project once (not timed)")
    subprocess.run(
        [sys.executable, "-c", "from phlo_dagster.dbt import compile_from_env; compile_from_env()"],
        env=ours_env,
        cwd=work,
        check=True,
        capture_output=True,
    )
    ours_env["PHLO_DBT_COMPILE_ON_LOAD"] = "false"
    native_env = clean_env(
        **common,
        PYTHONPATH=str(HERE),
        BENCH_DBT_PROJECT_DIR=str(QUICKSTART / "dbt"),
        BENCH_DBT_MANIFEST=str(target / "manifest.json"),
    )
    # raw/orders, reports/revenue_summary, ref/regions and the two dbt models (stg_orders, daily_revenue)
    ours = Server("quickstart-ours", "phlo_dagster.definitions", ours_env, work, assets=5)
    native = Server("quickstart-native", "runtime_quickstart_native", native_env, work, assets=5)
    return ours, native


def generated_servers(n: int) -> tuple[Server, Server]:
    work = WORK / f"specs-{n}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "workflows").mkdir(parents=True)
    (work / "native").mkdir()
    (work / "home").mkdir()
    (work / "workflows" / "generated.py").write_text(OURS_SPECS.format(n=n, chain=CHAIN))
    (work / "native" / f"runtime_native_{n}.py").write_text(NATIVE_SPECS.format(n=n, chain=CHAIN))
    common = {"DAGSTER_HOME": str(work / "home"), "PHLO_PLUGINS_ENABLED": "false"}
    ours_env = clean_env(**common, WORKFLOWS_PATH=str(work / "workflows"))
    native_env = clean_env(**common, PYTHONPATH=str(work / "native"))
    ours = Server(f"specs{n}-ours", "phlo_dagster.definitions", ours_env, work, assets=n)
    native = Server(f"specs{n}-native", f"runtime_native_{n}", native_env, work, assets=n)
    return ours, native


def pair(ours: Server, native: Server, repeats: int, *, warm_up: bool = True) -> None:
    """With warm_up, one uncounted start of each first (compiles .pyc, warms the page cache); then `repeats`
    pairs, alternating which side starts first. The first start of each checks the served asset count."""
    if warm_up:
        for server in (ours, native):
            cold_start(server, verify=True)
    for r in range(repeats):
        for server in (ours, native) if r % 2 == 0 else (native, ours):
            sample = cold_start(server, verify=not warm_up and r == 0)
            server.samples.append(sample)
            say(
                f"{server.label} {r + 1}/{repeats}: serving {sample['serving_s']:.2f}s, "
                f"snapshot {sample['snapshot_s']:.2f}s, RSS {sample['rss_mib']:.0f} MiB (load {load()})"
            )


def coldstart_rows(cases: list[tuple[str, Server, Server]]) -> list[str]:
    out = [
        "| definitions | repeats | ours: serving | native: serving | ratio | ours: snapshot fetched "
        "| native: snapshot fetched | ratio | RSS ours / native |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ours, native in cases:
        o = {k: median([s[k] for s in ours.samples]) for k in ("serving_s", "snapshot_s", "rss_mib")}
        n = {k: median([s[k] for s in native.samples]) for k in ("serving_s", "snapshot_s", "rss_mib")}
        out.append(
            f"| {name} | {len(ours.samples)} | {o['serving_s']:.2f} s | {n['serving_s']:.2f} s "
            f"| {o['serving_s'] / n['serving_s']:.2f}x | {o['snapshot_s']:.2f} s | {n['snapshot_s']:.2f} s "
            f"| {o['snapshot_s'] / n['snapshot_s']:.2f}x | {o['rss_mib']:.0f} / {n['rss_mib']:.0f} MiB |"
        )
    return out


def pairs_line(ours: Server, native: Server) -> str:
    ratios = [o["serving_s"] / n["serving_s"] for o, n in zip(ours.samples, native.samples, strict=True)]
    return ", ".join(f"{r:.2f}x" for r in ratios)


# ------------------------------------------------------------------------------------------------ /metrics


def metrics_run(size: int, scrapes: int) -> dict[str, Any]:
    out = WORK / f"metrics-{size}.json"
    out.unlink(missing_ok=True)
    argv = [
        sys.executable,
        str(HERE / "bench_metrics.py"),
        "--runs",
        str(size),
        "--materializations",
        str(size),
    ]
    argv += ["--scrapes", str(scrapes), "--batch", "--json", str(out)]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"bench_metrics.py at {size} failed: {done.stderr.strip().splitlines()[-3:]}")
    figures: dict[str, Any] = json.loads(out.read_text())
    figures["total_s"] = time.perf_counter() - started
    return figures


# ------------------------------------------------------------------------------------------ definitions build


def build_once(impl: str, n: int) -> dict[str, float]:
    """bench/worker.py in a fresh interpreter; its peak RSS from wait4."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DAGSTER_HOME")}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "worker.py"), impl, str(n)],
        cwd=BENCH_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"worker.py {impl} {n} failed (exit {proc.returncode})")
    result = json.loads(text.strip().splitlines()[-1])
    if result["assets"] != n:
        raise SystemExit(f"worker.py {impl} {n} built {result['assets']} assets")
    return {"build_s": result["build_s"], "specs_s": result["specs_s"], "peak_mib": usage.ru_maxrss / 1024}


# ------------------------------------------------------------------------------------------------ report


def _peak(samples: list[dict[str, float]]) -> str:
    known = [s["peak_mib"] for s in samples if s.get("peak_mib") == s.get("peak_mib")]  # not NaN
    return f"{median(known):.0f} MiB" if known else "-"


def run_description(args: argparse.Namespace, results: dict[str, Any], info: dict[str, str]) -> list[str]:
    command = "PYTHONPATH= nice .venv/bin/python bench/bench_runtime.py"
    extra = []
    if args.only != "coldstart,metrics,build":
        extra.append(f"--only {args.only}")
    for flag, value, default in (
        ("--repeats", args.repeats, 5),
        ("--large-repeats", args.large_repeats, 3),
        ("--specs", args.specs, 10_000),
        ("--build-sizes", args.build_sizes, "1000,10000,50000"),
        ("--metrics-sizes", args.metrics_sizes, "10000,100000"),
    ):
        if value != default:
            extra.append(f"{flag} {value}")
    return [
        "Command:",
        "",
        "```sh",
        " ".join([command, *extra]),
        "```",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memory']}, Python {info['python']}, "
        f"Dagster {info['dagster']}; {results['date']}; load average (1/5/15 min) {results['load_before']} "
        f"before and {results['load_after']} after, shared with other work on the same cores, so ratios "
        "measured side by side mean more than absolute times.",
        "",
    ]


def section(args: argparse.Namespace, results: dict[str, Any], info: dict[str, str]) -> str:
    lines = ["## Runtime at scale", ""]
    if args.markdown is None:  # bench/run.py writes the command, machine and load in front of the section
        lines += run_description(args, results, info)
    if "coldstart" in results:
        cs = results["coldstart"]
        lines += [
            "### Code-server cold start",
            "",
            "From process start to the first answered gRPC `Ping` (**serving**: `dagster api grpc` loads the "
            "definitions before it listens), then to the repository snapshot fetched over gRPC "
            "(`ListRepositories` + `ExternalRepository`, what the webserver asks a new code server for; "
            "**snapshot fetched**), timed by the benchmark with Dagster's own gRPC client. **ours** is the "
            "image's command, `dagster api grpc -m phlo_dagster.definitions`; **native** is "
            "`dagster api grpc -m <module>` on the same definitions written with `@dg.asset`: for the "
            "quickstart, bench/runtime_quickstart_native.py (its assets, checks, partitions, retries, "
            "freshness, resources, job, schedule and dbt models, the same compiled manifest; ours with "
            "`PHLO_DBT_COMPILE_ON_LOAD=false` as the operator sets it); for the generated specs, the specs "
            "of the build benchmark (one function check each) in chains of 10 rather than one chain (see "
            "below) as a workflow module against a module of decorated functions. For the quickstart one "
            "uncounted start of each first; ours and native alternate within each repeat; medians. RSS: the "
            "code server's resident memory once the snapshot is served.",
            "",
            *coldstart_rows(cs["cases"]),
            "",
        ]
        for name, ours, native in cs["cases"]:
            lines.append(f"- {name}, ours / native per pair (serving): {pairs_line(ours, native)}")
        lines.append("")
        verdicts = []
        for name, ours, native in cs["cases"]:
            ratio = median([s["serving_s"] for s in ours.samples]) / median(
                [s["serving_s"] for s in native.samples]
            )
            target = 1.0 if name.startswith(f"{args.specs:,}") else 1.1
            verdicts.append(
                f"{name} {ratio:.2f}x ({'met' if ratio <= target else 'MISSED'}: at most {target}x)"
            )
        lines += ["Targets (serving): " + "; ".join(verdicts) + ".", ""]
    if "metrics" in results:
        lines += [
            "### /metrics on a large history",
            "",
            'bench/bench_metrics.py (see "/metrics scrape" above) at each size, runs = materializations, '
            "filled with `--batch` (bench/runtime_fill.py: the same rows as the per-call fill, written in "
            "transactions of 5,000 with the values Dagster's storage computes; the per-call fill costs 5-10 "
            "ms a row on these cores, 20-40 minutes for 100,000 of each). Webserver RSS: the "
            "`phlo webserver` process (and any children) when `/server_info` first answers and after all "
            "scrapes.",
            "",
            "| runs | materializations | fill | first scrape | steady median | steady p95 | +20 runs, median "
            "| RSS at start | RSS after scrapes |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in results["metrics"]:
            label = f" ({m['label']})" if m.get("label") else ""
            lines.append(
                f"| {m['runs']:,}{label} | {m['materializations']:,} "
                f"| {m['fill_s']:.0f} s | {m['first_ms']:.0f} ms "
                f"| {m['steady_median_ms']:.1f} ms | {m['steady_p95_ms']:.1f} ms "
                f"| {m['incremental_ms']:.1f} ms | {m['rss_started_mib']:.0f} MiB "
                f"| {m['rss_after_mib']:.0f} MiB |"
            )
        big = results["metrics"][-1]
        small = next(
            (m for m in results["metrics"] if m["runs"] < big["runs"] and m.get("label") == big.get("label")),
            results["metrics"][0],
        )
        growth = big["rss_after_mib"] - small["rss_after_mib"]
        lines += [
            "",
            f"Targets: steady p95 under 50 ms at {big['runs']:,} runs: {big['steady_p95_ms']:.1f} ms "
            f"({'met' if big['steady_p95_ms'] < 50 else 'MISSED'}); webserver RSS not growing with history: "
            f"{growth:+.0f} MiB from {small['runs']:,} to {big['runs']:,} runs.",
            "",
        ]
    if "build" in results:
        rows = results["build"]
        lines += [
            "### Definitions build up to 50,000 specs",
            "",
            "bench/worker.py (the build benchmark's worker, each in a fresh interpreter): N specs in a "
            "chain, one function check each, from spec objects to a resolved repository. Per-spec cost = "
            "build time / N; linear growth keeps it flat. Peak RSS of the worker process (ru_maxrss). Ours "
            "and native alternate; medians.",
            "",
            "| specs | repeats | ours | ours per spec | native | native per spec | ours / native "
            "| peak RSS ours / native |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            o, n = r["ours"], r["native"]
            ob, nb = (
                median([s["build_s"] for s in o]),
                median([s["build_s"] for s in n]) if n else float("nan"),
            )
            om, nm = _peak(o), _peak(n)
            native_cells = (
                f"{nb:.2f} s | {nb / r['n'] * 1e6:.0f} µs | {ob / nb:.2f}x | {om} / {nm}"
                if n
                else f"not finished | | | {om} / -"
            )
            lines.append(
                f"| {r['n']:,} | {len(o)} | {ob:.2f} s | {ob / r['n'] * 1e6:.0f} µs | {native_cells} |"
            )
        first, last = rows[0], rows[-1]
        per_first = median([s["build_s"] for s in first["ours"]]) / first["n"]
        per_last = median([s["build_s"] for s in last["ours"]]) / last["n"]
        lines += [
            "",
            f"Ours per spec at {last['n']:,} is {per_last / per_first:.2f}x its per-spec cost at "
            f"{first['n']:,} (1.00x = linear).",
            "",
        ]
    notes = Path(HERE / "runtime_notes.md")
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    return "\n".join(_wrapped(line) for line in lines)


def _wrapped(line: str) -> str:
    """Prose wrapped at 115 columns like the rest of BENCHMARKS.md; tables, lists and code as they are."""
    if len(line) <= 115 or line.startswith(("|", "-", "```", "#", "PYTHONPATH")):
        return line
    return textwrap.fill(line, width=115, break_on_hyphens=False, break_long_words=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="coldstart,metrics,build")
    parser.add_argument("--repeats", type=int, default=5, help="cold-start pairs (quickstart), build repeats")
    parser.add_argument("--large-repeats", type=int, default=3, help="repeats at --specs and at 50,000 specs")
    parser.add_argument("--specs", type=int, default=10_000, help="generated specs for the cold start")
    parser.add_argument("--build-sizes", default="1000,10000,50000")
    parser.add_argument("--metrics-sizes", default="10000,100000")
    parser.add_argument("--scrapes", type=int, default=25)
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "runtime.json")
    parser.add_argument("--markdown", type=Path, help="also write the section here (bench/run.py)")
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="measure nothing: render the section from the results in --json (an earlier or merged run)",
    )
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - {"coldstart", "metrics", "build"}
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; use coldstart, metrics, build")
    if args.from_json:
        data = json.loads(args.json.read_text())
        write(args, from_json(data), data["machine"])
        return
    WORK.mkdir(parents=True, exist_ok=True)
    info = machine()
    results: dict[str, Any] = {
        "load_before": load(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }

    if "coldstart" in parts:
        cases = []
        ours, native = quickstart_servers()
        pair(ours, native, args.repeats)
        cases.append(("quickstart", ours, native))
        ours, native = generated_servers(args.specs)
        pair(ours, native, args.large_repeats, warm_up=False)  # modules and page cache warm from the above
        cases.append((f"{args.specs:,} specs", ours, native))
        results["coldstart"] = {"cases": cases}

    if "metrics" in parts:
        results["metrics"] = []
        for size in (int(s) for s in args.metrics_sizes.split(",")):
            figures = metrics_run(size, args.scrapes)
            say(
                f"/metrics at {size}: fill {figures['fill_s']:.0f}s, first {figures['first_ms']:.0f} ms, "
                f"steady p95 {figures['steady_p95_ms']:.1f} ms, RSS {figures['rss_after_mib']:.0f} MiB"
            )
            results["metrics"].append(figures)

    if "build" in parts:
        rows = []
        for n in (int(s) for s in args.build_sizes.split(",")):
            repeats = args.repeats if n <= 10_000 else args.large_repeats
            row: dict[str, Any] = {"n": n, "ours": [], "native": []}
            for r in range(repeats):
                for impl in ("ours", "native") if r % 2 == 0 else ("native", "ours"):
                    sample = build_once(impl, n)
                    row[impl].append(sample)
                    say(
                        f"build {impl} {n} {r + 1}/{repeats}: {sample['build_s']:.2f}s, "
                        f"peak {sample['peak_mib']:.0f} MiB (load {load()})"
                    )
            rows.append(row)
        results["build"] = rows

    results["load_after"] = load()
    encode: Callable[[Any], Any] = lambda o: {"label": o.label, "samples": o.samples}  # noqa: E731
    args.json.write_text(json.dumps({"machine": info, **results}, indent=2, default=encode) + "\n")
    write(args, results, info)


def from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The results main() measures, from what it wrote to --json (Servers as their label and samples)."""
    results = {k: v for k, v in data.items() if k != "machine"}
    if "coldstart" in results:
        results["coldstart"] = {
            "cases": [
                (name, *(Server(s["label"], "", {}, ROOT, 0, s["samples"]) for s in (ours, native)))
                for name, ours, native in results["coldstart"]["cases"]
            ]
        }
    return results


def write(args: argparse.Namespace, results: dict[str, Any], info: dict[str, str]) -> None:
    text = section(args, results, info) + "\n"
    if args.markdown:
        args.markdown.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
