"""Definitions build benchmark: our adapter vs Phlo's phlo-dagster 0.16.2 vs native Dagster, in one run.

    .venv/bin/python bench/run.py [--sizes 100,1000,10000] [--repeats 5] [--json F] [--no-metrics] [--no-cli]

After the build table it runs bench/bench_metrics.py (the /metrics scrape benchmark) and bench/bench_cli.py
(`phlo materialize` and `phlo dev` against native Dagster and dbt): `make bench` runs all three.

Phlo's packages (phlo==0.16.2, phlo-dagster==0.16.2, with the same Dagster pin as ours) are installed by this
script into a separate virtualenv under .bench/, so its ``phlo_dagster`` never meets ours. Each measurement
runs in a fresh interpreter (bench/worker.py); sizes and implementations are interleaved so load on the
machine hits all three alike; the table shows medians and the ratios to native.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
PHLO_VENV = BENCH_DIR / "phlo-0.16.2"
WORKER = Path(__file__).resolve().parent / "worker.py"
DAGSTER_PIN = "1.13.27"
PHLO_PACKAGES = [
    "phlo==0.16.2",
    "phlo-dagster==0.16.2",
    f"dagster=={DAGSTER_PIN}",
    f"dagster-webserver=={DAGSTER_PIN}",
    f"dagster-graphql=={DAGSTER_PIN}",
]
IMPLS = ("native", "ours", "phlo")


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def phlo_python() -> Path:
    """The interpreter of the .bench venv holding Phlo's 0.16.2 packages (created on first use)."""
    python = PHLO_VENV / "bin" / "python"
    stamp = PHLO_VENV / ".installed"
    if stamp.is_file() and stamp.read_text() == "\n".join(PHLO_PACKAGES):
        return python
    _say(f"bench: installing {', '.join(PHLO_PACKAGES)} into {PHLO_VENV} (once)")
    venv.EnvBuilder(with_pip=True, clear=True).create(PHLO_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PHLO_PACKAGES], check=True)
    stamp.write_text("\n".join(PHLO_PACKAGES))
    return python


def measure(python: Path, impl: str, n: int) -> dict[str, float]:
    """One worker run; the worker's cwd is .bench/ so neither repository package shadows the other."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DAGSTER_HOME")}
    done = subprocess.run(
        [str(python), str(WORKER), impl, str(n)],
        cwd=BENCH_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: {impl} at {n} failed: {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["assets"] != n:
        raise SystemExit(f"bench: {impl} at {n} built {result['assets']} assets, expected {n}")
    return result


def machine() -> dict[str, str]:
    """nproc, CPU model, Python and Dagster versions, for BENCHMARKS.md."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "dagster": DAGSTER_PIN,
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "results.json")
    parser.add_argument(
        "--no-cli",
        action="store_true",
        help="Skip the phlo materialize / phlo dev benchmark (bench/bench_cli.py).",
    )
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="Skip the /metrics scrape benchmark (bench/bench_metrics.py).",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    BENCH_DIR.mkdir(exist_ok=True)
    pythons = {"ours": Path(sys.executable), "native": Path(sys.executable), "phlo": phlo_python()}

    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    for repeat in range(args.repeats):
        for n in sizes:
            for impl in IMPLS:
                result = measure(pythons[impl], impl, n)
                samples.setdefault((impl, n), []).append(result)
                _say(
                    f"bench: run {repeat + 1}/{args.repeats} {impl:>6} n={n:>6} "
                    f"build {result['build_s']:.3f}s"
                )

    rows = []
    for n in sizes:
        med = {impl: statistics.median(s["build_s"] for s in samples[(impl, n)]) for impl in IMPLS}
        spec = {impl: statistics.median(s["specs_s"] for s in samples[(impl, n)]) for impl in IMPLS}
        rows.append(
            {
                "n": n,
                "native_s": med["native"],
                "ours_s": med["ours"],
                "phlo_s": med["phlo"],
                "ours_specs_s": spec["ours"],
                "phlo_specs_s": spec["phlo"],
                "ours_vs_native": med["ours"] / med["native"],
                "phlo_vs_native": med["phlo"] / med["native"],
                "ours_vs_phlo": med["ours"] / med["phlo"],
                "ours_total_vs_native": (med["ours"] + spec["ours"]) / med["native"],
            }
        )
    info = machine()
    args.json.write_text(
        json.dumps({"machine": info, "repeats": args.repeats, "rows": rows}, indent=2) + "\n"
    )

    out = sys.stdout
    out.write(
        f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, Dagster {info['dagster']}\n"
    )
    out.write(
        f"medians of {args.repeats} runs, each in a fresh interpreter; "
        "build = specs -> resolved repository\n\n"
    )
    out.write(
        "| specs (+1 check each) | native | ours | Phlo 0.16.2 | ours / native | Phlo / native | ours / Phlo "
        "| ours incl. spec objects / native |\n"
    )
    out.write("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for r in rows:
        out.write(
            f"| {r['n']:,} | {r['native_s']:.3f} s | {r['ours_s']:.3f} s | {r['phlo_s']:.3f} s "
            f"| {r['ours_vs_native']:.2f}x | {r['phlo_vs_native']:.2f}x | {r['ours_vs_phlo']:.2f}x "
            f"| {r['ours_total_vs_native']:.2f}x |\n"
        )
    out.write(f"\nraw samples: {args.json}\n")
    out.flush()

    metrics_bench = Path(__file__).resolve().parent / "bench_metrics.py"
    if not args.no_metrics and metrics_bench.is_file():
        out.write("\n/metrics scrape (bench/bench_metrics.py):\n")
        out.flush()
        subprocess.run([sys.executable, str(metrics_bench)], check=True)

    cli_bench = Path(__file__).resolve().parent / "bench_cli.py"
    if not args.no_cli:
        out.write("\nphlo materialize and phlo dev against native Dagster and dbt (bench/bench_cli.py):\n")
        out.flush()
        subprocess.run([sys.executable, str(cli_bench), "--repeats", str(args.repeats)], check=True)


if __name__ == "__main__":
    main()
