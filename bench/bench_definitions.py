"""Definitions build benchmark: our adapter vs Phlo's phlo-dagster 0.16.2 vs native Dagster, in one run.

    .venv/bin/python bench/bench_definitions.py [--sizes 100,1000,10000] [--repeats 5] [--json F]
                                                [--markdown F]

Phlo's packages (phlo==0.16.2, phlo-dagster==0.16.2, with the same Dagster pin as ours) are installed by this
script into a separate virtualenv under .bench/, so its ``phlo_dagster`` never meets ours. Each measurement
runs in a fresh interpreter (bench/worker.py); sizes and implementations are interleaved so load on the
machine hits all three alike; the table shows medians and the ratios to native.
"""

from __future__ import annotations

import argparse
import json
import os
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


INTRO = """\
What is timed (bench/worker.py, each measurement in a fresh interpreter, after a 3-asset warm-up that pays
Dagster's one-time lazy imports): N assets in a chain (`bench.a{i}` depends on `bench.a{i-1}`), each with
group, description, kinds, tags, metadata, a run function and one blocking function check, from ready spec
objects to a resolved repository (`Definitions` + `get_repository_def()`, what a code server does before it
serves). The first run creates `.bench/phlo-0.16.2/`, a separate virtualenv with Phlo's `phlo==0.16.2` and
`phlo-dagster==0.16.2` on the same Dagster pin.

- **native**: the same graph written with `@dg.asset` / `@dg.asset_check` and `dg.Definitions`.
- **ours**: `phlo_dagster.adapter.DagsterAdapter().build_definitions(assets=..., checks=..., resources=[])`.
- **Phlo 0.16.2**: `phlo_dagster.adapter.DagsterOrchestratorAdapter` from PyPI's phlo-dagster 0.16.2 (the
  implementation this repository replaces), with `phlo.capabilities.specs` objects.

The implementations are interleaved per size and repeat, so load on the machine hits all three alike."""

WHY = """\
Why ours is faster than the decorators: `@asset` and `@asset_check` inspect the decorated function's
signature about a dozen times per definition. Every spec shares one compute signature, so the adapter builds
the same `OpDefinition` / `AssetsDefinition` / `AssetChecksDefinition` objects directly (one per asset and
one per function check: not one multi_asset per batch, which would change retries, selection and step
isolation), reuses one `PartitionsDefinition` per distinct partition spec and shared Nothing-typed
`In`/`Out` objects, and pauses the cyclic garbage collector while building (each full collection would
rescan every definition built so far, which made large builds superlinear)."""


def markdown(rows: list[dict[str, float]], repeats: int) -> str:
    lines = [
        "## Definitions build: capability specs to Dagster definitions",
        "",
        INTRO,
        "",
        f"Medians of {repeats} runs:",
        "",
        "| specs (+1 check each) | native | ours | Phlo 0.16.2 | ours / native | Phlo / native | ours / Phlo "
        "| ours incl. spec objects / native |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['native_s']:.3f} s | {r['ours_s']:.3f} s | {r['phlo_s']:.3f} s "
            f"| {r['ours_vs_native']:.2f}x | {r['phlo_vs_native']:.2f}x | {r['ours_vs_phlo']:.2f}x "
            f"| {r['ours_total_vs_native']:.2f}x |"
        )
    largest = rows[-1]
    met = "met" if largest["ours_vs_native"] <= 1.1 else "missed"
    faster = all(r["ours_vs_phlo"] < 1 for r in rows)
    lines += [
        "",
        f"Targets: ours at most 1.1x native at the largest size ({met}: {largest['ours_vs_native']:.2f}x at "
        f"{int(largest['n']):,}) and faster than Phlo's at every size ("
        + ("met" if faster else "missed")
        + f": {min(r['ours_vs_phlo'] for r in rows):.2f}x to {max(r['ours_vs_phlo'] for r in rows):.2f}x of "
        "Phlo's time). The last column adds the time to create our pydantic spec objects (validation "
        "included), which the other columns leave out because native code has no spec objects.",
        "",
        WHY,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "results.json")
    parser.add_argument("--markdown", type=Path, help="write this benchmark's BENCHMARKS.md section here")
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
    args.json.write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2) + "\n")
    text = markdown(rows, args.repeats)
    if args.markdown:
        args.markdown.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
