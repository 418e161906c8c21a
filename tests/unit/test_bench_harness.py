"""The pure parts of `make bench`: BENCHMARKS.md assembly (bench/run.py) and the operator benchmark's reading
of the API server's and the operator's metrics (bench/bench_operator.py). No benchmark runs here."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


run = _load("run")
operator_bench = _load("bench_operator")


def test_every_registered_section_names_a_distinct_script_in_bench() -> None:
    names = [s.name for s in run.SECTIONS]
    assert len(set(names)) == len(names)
    assert all(s.script.startswith("bench_") and s.script.endswith(".py") for s in run.SECTIONS)


def test_a_section_not_run_keeps_its_text_and_order_follows_the_registry() -> None:
    """Refreshing one section (make bench ONLY=b) keeps the others as measured, in registry order.
    Mutation check: assemble() iterating bodies instead of sections puts b before a and fails."""
    sections = (
        run.Section("a", "bench_a.py"),
        run.Section("b", "bench_b.py"),
        run.Section("c", "bench_c.py"),
    )
    old = run.assemble(sections, {"a": "## A\n\nold a, 1.00x\n", "b": "## B\n\nold b\n"})
    bodies = run.parse_sections(old)
    assert bodies == {"a": "## A\n\nold a, 1.00x\n", "b": "## B\n\nold b\n"}
    bodies["b"] = "## B\n\nnew b\n"
    new = run.assemble(sections, bodies)
    assert new.index("old a, 1.00x") < new.index("new b") < new.index("make bench ONLY=c")
    assert "old b" not in new
    assert run.parse_sections(new)["a"] == "## A\n\nold a, 1.00x\n"
    assert new.startswith(run.TITLE)


def test_the_run_description_follows_the_section_title() -> None:
    info = {
        "section": "operator",
        "cores": "2",
        "cpu": "AMD EPYC",
        "memory": "24 GiB",
        "python": "3.12.1",
        "dagster": "1.13.27",
        "kubernetes": "v1.36.3",
    }
    header = run.run_header(
        ".venv/bin/python bench/bench_operator.py", dt.datetime(2026, 12, 6, 16, 0), info, ("3.0", "5.0")
    )
    body = run.with_run_header("## The operator\n\nprose\n", header)
    lines = body.splitlines()
    assert lines[0] == "## The operator" and lines[2] == header and lines[4] == "prose"
    assert "`make bench ONLY=operator`" in header and "load average 3.0 before and 5.0 after" in header
    assert "Kubernetes v1.36.3" in header and "Dagster 1.13.27" in header


def _request_line(verb: str, resource: str, value: float, sub: str = "", dry_run: str = "") -> str:
    labels = (
        f'code="200",component="apiserver",dry_run="{dry_run}",group="",resource="{resource}",'
        f'scope="resource",subresource="{sub}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}"


def _apiserver(gets: float, status_patches: float, leases: float) -> str:
    return "\n".join(
        [
            "# HELP apiserver_request_total [STABLE] Counter of apiserver requests",
            _request_line("GET", "deployments", gets),
            _request_line("LIST", "deployments", 2),
            _request_line("APPLY", "deployments", 9, dry_run="All"),
            _request_line("PATCH", "phloworkflows", status_patches, sub="status"),
            _request_line("WATCH", "configmaps", 1),
            _request_line("PUT", "leases", leases),
        ]
    )


def test_apiserver_request_total_split_into_reads_writes_and_watches() -> None:
    """Dry runs and resources the operator never touches (kwok's node leases) are left out."""
    before = operator_bench.request_counts(_apiserver(40, 3, 500))
    assert before[("GET", "deployments")] == 40
    assert before[("PATCH", "phloworkflows/status")] == 3
    assert ("APPLY", "deployments") not in before
    assert not any(resource == "leases" for _, resource in before)
    after = operator_bench.request_counts(_apiserver(52, 4, 900))
    diff = operator_bench.reads_writes(before, after)
    assert (diff["reads"], diff["writes"], diff["watches"]) == (12, 1, 0)
    assert diff["detail"] == {"GET deployments": 12, "PATCH phloworkflows/status": 1}


def test_histogram_quantiles_interpolate_within_buckets_like_histogram_quantile() -> None:
    text = "\n".join(
        [
            'phlo_operator_reconcile_duration_seconds_bucket{le="0.1"} 50.0',
            'phlo_operator_reconcile_duration_seconds_bucket{le="0.5"} 90.0',
            'phlo_operator_reconcile_duration_seconds_bucket{le="1.0"} 100.0',
            'phlo_operator_reconcile_duration_seconds_bucket{le="+Inf"} 100.0',
            "phlo_operator_reconcile_duration_seconds_count 100.0",
        ]
    )
    buckets, total = operator_bench.histogram(text, "phlo_operator_reconcile_duration_seconds")
    assert total == 100
    assert operator_bench.quantile(0.5, buckets) == pytest.approx(0.1)
    assert operator_bench.quantile(0.7, buckets) == pytest.approx(0.3)
    assert operator_bench.quantile(0.99, buckets) == pytest.approx(0.95)
    earlier = [(0.1, 40.0), (0.5, 40.0), (1.0, 40.0), (float("inf"), 40.0)]
    assert operator_bench.bucket_diff(buckets, earlier)[0] == (0.1, 10.0)


def test_py_spy_stacks_summarised_by_inclusive_share_per_function() -> None:
    collapsed = "\n".join(
        [
            "run (threading.py:1010);reconcile (phlo_operator/reconcile/reconciler.py:60);"
            "get (apply.py:5) 30",
            "run (threading.py:1010);reconcile (phlo_operator/reconcile/reconciler.py:61) 10",
            "main (kopf/_core/reactor/running.py:20) 60",
        ]
    )
    lines = operator_bench.summarise_collapsed(collapsed).splitlines()
    assert lines[0].split() == ["60.0%", "main", "(kopf/_core/reactor/running.py)"]
    assert " 40.0%  reconcile (phlo_operator/reconcile/reconciler.py)" in lines
    assert " 30.0%  get (apply.py)" in lines


def _pair(operator_s: float, direct_s: float) -> dict[str, object]:
    operator = {"seconds": operator_s, "ready_p50": 1.0, "ready_p99": 2.0, "pass_p50": 0.1, "pass_p99": 0.5}
    operator |= {"passes": 40.0, "rss": {"VmRSS": 150.0, "VmHWM": 160.0}}
    return {
        "operator": operator,
        "direct": {"seconds": direct_s, "objects": 11},
        "ratio": operator_s / direct_s,
    }


def test_a_partial_operator_run_keeps_the_sizes_it_does_not_measure_again() -> None:
    """`make bench ONLY=operator BENCH_ARGS="--sizes 1000"` adds the 1,000 row: the sizes measured earlier
    stay in the table, a size whose raw results were not kept shows its published row, and each run is named
    once in 'Measured by'. Mutation check: merged() starting from empty results (the old default without
    --merge) leaves only the 1,000 row and fails."""
    earlier = {
        "sizes": {
            "100": {"row": {"repeats": 3, "operator_s": 96.14, "direct_s": 50.5, "ratio": 2.1,
                            "ratios": [2.42, 1.58, 2.1], "objects": 1100, "ready_p50": 84.92,
                            "ready_p99": 93.95, "pass_p50": 0.2, "pass_p99": 9.468, "passes": 571.0,
                            "rss": 160.0, "hwm": 160.0},
                    "measured": "run A", "source": "the published section"},
            "10": {"runs": [_pair(12.0, 6.0), _pair(9.0, 6.0)], "measured": "run B"},
            "1000": {"runs": [_pair(1.0, 1.0)], "measured": "run C"},
        }
    }  # fmt: skip
    results = operator_bench.merged(earlier, [1000])
    assert sorted(results["sizes"]) == ["10", "100"]  # 1,000 is measured again, starting empty
    results["sizes"]["1000"] = {"runs": [_pair(900.0, 450.0)], "measured": "run D"}
    rows = operator_bench.summary(results)
    assert [r["n"] for r in rows] == [10, 100, 1000]
    assert rows[0]["ratio"] == pytest.approx(1.75)
    assert (rows[1]["ratio"], rows[2]["ratio"]) == (2.1, 2.0)
    text = operator_bench.markdown(results)
    assert "Measured by: run B; run A; run D." in text
    assert "| 100 (1,100) | 96.14 s | 50.50 s | **2.10x** (2.42, 1.58, 2.10) |" in text
    assert "Carried over (workflows: 100) from the published section." in text
    assert "run C" not in text
    assert operator_bench.without_markdown(["--sizes", "1000", "--markdown", "/tmp/x.md"]) == [
        "--sizes",
        "1000",
    ]


def test_an_idle_only_run_names_itself_and_its_settling_minutes() -> None:
    """`--idle-only` replaces a size's idle minute and keeps its pairs: 'Measured by' names both runs, the
    idle row reads from the new minute, and the minutes counted before it are printed. Mutation check:
    measured_by() reading only entry["measured"] drops run E and fails."""
    idle = {
        "reads": 1000.0,
        "writes": 0.0,
        "passes": 1001.0,
        "detail": {"GET phloworkflows": 1000.0},
        "settle_windows": [1390.0, 1010.0, 1002.0],
        "measured": "run E",
    }
    results = {"sizes": {"1000": {"runs": [_pair(900.0, 450.0)], "measured": "run D", "idle": idle}}}
    text = operator_bench.markdown(results)
    assert "Measured by: run D; run E." in text
    assert "| 1,000 | 1000 | 0 | 1001 | 1.0 | **1.0** |" in text
    assert "(workflows: passes per minute): 1,000: 1390, 1010, 1002." in text


def test_a_memory_profile_is_summed_per_package_and_shown_per_size() -> None:
    """tracemalloc's files (bench/operator_memory.py) become packages, phlo_operator's modules by name and
    imports as one line; the section shows them with their share. Mutation check: memory_group() returning
    the path unchanged keeps two kopf lines and fails."""
    site = "/x/.venv/lib/python3.12/site-packages"
    snapshot = {
        "traced": 10 * 2**20,
        "files": [
            {"file": "<frozen importlib._bootstrap_external>", "bytes": 5 * 2**20},
            {"file": f"{site}/kopf/_core/reactor/queueing.py", "bytes": 2 * 2**20},
            {"file": f"{site}/kopf/_cogs/clients/watching.py", "bytes": 1 * 2**20},
            {"file": "/work/main/operator/phlo_operator/store.py", "bytes": 2 * 2**20},
        ],
    }
    summary = operator_bench.memory_groups(snapshot)
    assert summary["groups"] == [
        ["imports (modules' code and objects)", 5.0],
        ["kopf", 3.0],
        ["phlo_operator/store.py", 2.0],
    ]
    memory = {**summary, "rss": {"VmRSS": 160.0}, "measured": "run F"}
    results = {"sizes": {"100": {"runs": [_pair(90.0, 45.0)], "measured": "run D", "memory": memory}}}
    text = operator_bench.markdown(results)
    assert "Python held 10.0 MiB of 160 MiB RSS" in text
    assert "| kopf | 3.0 | 30 % |" in text and "run F" in text


realnode_bench = _load("bench_realnode")


def test_the_realnode_section_keeps_a_published_row_and_the_spec_changes() -> None:
    """A run of `--sizes 5 --changes 0` adds the 5-workflow row beside the kept 1-workflow row and spec
    changes. Mutation check: size_row() reading entry["runs"] unconditionally raises KeyError on the kept
    row."""
    pair = {"operator": {"seconds": 120.0, "pods_s": 110.0}, "direct": {"seconds": 100.0}}
    results = {
        "sizes": {
            "5": {"runs": [{**pair, "ratio": 1.2, "pods_ratio": 1.1}], "measured": "run B",
                  "load_after": "9.0"},
            "1": {"row": {"repeats": 3, "operator_s": 66.9, "pods_s": 65.7, "direct_s": 52.4, "ratio": 1.28,
                          "ratios": [0.99, 1.28, 1.46], "pods_ratio": 1.25},
                  "measured": "run A", "source": "the published section"},
        },
        "changes": [{"rolled_s": 10.0, "reloaded_s": 10.0, "run_s": 20.0, "attempts": 1}],
        "changes_measured": "run C",
    }  # fmt: skip
    text = realnode_bench.markdown(results, "A note.")
    assert "Measured by: run A; run B, load average 9.0 at its end; run C." in text
    assert text.index(
        "| 1 (4) | 66.9 s | 65.7 s | 52.4 s | **1.28x** (0.99, 1.28, 1.46) | 1.25x |"
    ) < text.index("| 5 (20) | 120.0 s | 110.0 s | 100.0 s | **1.20x** (1.20) | 1.10x |")
    assert "| change 1 | 10.0 s | 10.0 s | **20.0 s** | 1 |" in text
    assert text.rstrip().endswith("A note.")
