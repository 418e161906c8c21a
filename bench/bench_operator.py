"""The operator against its physical limit: PhloWorkflows to Ready vs. applying the same children directly.

    .venv/bin/python bench/bench_operator.py [--sizes 1,10,100,1000] [--repeats 3] [--large-repeats 1]
                                             [--idle-sizes 100,1000] [--memory-sizes 100] [--fresh]
                                             [--idle-only | --memory-profile] [--markdown PATH]

On a private kwok bed (tests/testbed, one per size, the controller-manager's and scheduler's client rate
limits lifted so that they are not the bottleneck of either side), per size and repeat, interleaved (the side
that goes first alternates):

- operator: the real `phlo-dagster-operator` process watches a fresh namespace; N PhloWorkflows are
  server-side applied (one request each, 6 client threads); timed until every one is Ready at its generation.
- direct: the children the operator's own pure renderers produce for the same N specs (owner references
  dropped), server-side applied with the same client (phlo_operator.apply.Kube), one request per object,
  6 threads (kopf's default executor size, the operator's own parallelism); timed until every Deployment is
  available.

At the largest size (and at --idle-sizes) the operator is then restarted on the last repeat's workflows (the
resync storm: time from process start until it has run at least one pass per workflow and its pass counter
has been still for 10 s since, against that run's initial apply; this start has an hour's resync, so that
only the start-up listing counts). At --idle-sizes a third start with `--resync-seconds 60` measures one idle
minute: once every workflow had its start-up pass and one more minute went by, the API server's own
apiserver_request_total is diffed over a minute in which each workflow's resync timer fires once, for the
resources the operator uses (nothing else on the private bed reads them while nothing changes). RSS is the
operator's VmRSS (right after all were Ready) and VmHWM (its peak), from /proc.

The results are kept in bench/results/operator.json (committed with BENCHMARKS.md): the sizes measured now
replace the same sizes there and the others stay, each with the command and date that measured it, so
`--sizes 1000` adds the 1,000 row to the table instead of dropping the rest (`--fresh` starts over).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import venv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import kubernetes  # noqa: E402
from phlo_operator import model as m  # noqa: E402
from phlo_operator.apply import APPLY_PATCH, Kube, path  # noqa: E402
from phlo_operator.render import Workflow, render_all  # noqa: E402

from tests.operator_process import OUR_RESOURCES, free_port  # noqa: E402
from tests.testbed import cluster  # noqa: E402
from tests.testbed.cluster import Placement, Testbed  # noqa: E402

WORK = ROOT / ".bench" / "operator"
OPERATOR_BIN = Path(sys.executable).parent / "phlo-dagster-operator"
MEMORY_WRAPPER = Path(__file__).with_name("operator_memory.py")
THREADS = 6  # kopf runs sync handlers in asyncio's default executor: min(32, cpus + 4) threads
FIELD_MANAGER = "phlo-bench"
# The bed's clients keep their default rate limits (20 qps) otherwise: both sides would wait on the
# controller-manager creating ReplicaSets and pods, not on what is measured.
UNTHROTTLED = ("--kube-api-qps=1000", "--kube-api-burst=2000")
PLACEMENT = Placement(
    extra_args={
        "kube-controller-manager": (
            *UNTHROTTLED,
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
        ),
        "kube-scheduler": UNTHROTTLED,
    }
)
# What the operator reads and writes (apiserver_request_total's resource label).
OPERATOR_RESOURCES = OUR_RESOURCES | {"events", "kopfpeerings"}
READ_VERBS = {"GET", "LIST"}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"}
PASSES = "phlo_operator_reconcile_duration_seconds"


def say(message: str) -> None:
    sys.stderr.write(f"bench-operator: {message}\n")
    sys.stderr.flush()


# -- pure parts (unit-tested) ---------------------------------------------------------------------------
def request_counts(text: str, resources: Iterable[str] = OPERATOR_RESOURCES) -> dict[tuple[str, str], float]:
    """(verb, resource[/subresource]) -> count from the API server's /metrics text (apiserver_request_total),
    dry-run requests left out, only the given resources."""
    wanted = set(resources)
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        resource = labels.get("resource", "")
        if resource not in wanted or labels.get("dry_run"):
            continue
        sub = labels.get("subresource", "")
        key = (labels.get("verb", ""), f"{resource}/{sub}" if sub else resource)
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def reads_writes(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, Any]:
    """The difference split into reads (GET, LIST), writes and watches, with the per-key detail."""
    diff = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}
    diff = {k: v for k, v in diff.items() if v}
    return {
        "reads": sum(v for (verb, _), v in diff.items() if verb in READ_VERBS),
        "writes": sum(v for (verb, _), v in diff.items() if verb in WRITE_VERBS),
        "watches": sum(v for (verb, _), v in diff.items() if verb == "WATCH"),
        "detail": {f"{verb} {res}": v for (verb, res), v in sorted(diff.items())},
    }


def histogram(text: str, name: str) -> tuple[list[tuple[float, float]], float]:
    """Cumulative (upper bound, count) buckets and the total count of a Prometheus histogram."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = re.search(r'le="([^"]+)"', line)
            if le:
                buckets.append((float(le.group(1)), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    return buckets, (buckets[-1][1] if buckets else 0.0)


def bucket_diff(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    old = dict(before)
    return [(le, count - old.get(le, 0.0)) for le, count in after]


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """histogram_quantile: linear within the bucket; the last finite bound when it lands in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a sample."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def direct_children(name: str, namespace: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator would apply for this workflow, by its own pure renderers, with no owner (the owner
    does not exist on the direct side, and the garbage collector would delete what names a missing uid)."""
    wf = Workflow(name, namespace, "00000000-0000-0000-0000-000000000000", m.parse_spec(spec), 1)
    out = []
    for obj in render_all(wf).all_objects():
        obj = json.loads(json.dumps(obj))
        obj["metadata"].pop("ownerReferences", None)
        out.append(obj)
    return out


# -- the bed side ----------------------------------------------------------------------------------------
def workflow_spec(secret: str) -> dict[str, Any]:
    """A quickstart-like workflow on an external storage Secret, without dbt (its compile Job would gate the
    code server on a Job the direct side has no reason to run)."""
    return {
        "image": "phlo-dagster:0.4.0",
        "storage": {"postgres": {"secretName": secret}},
        "env": [{"name": "PHLO_LOG_LEVEL", "value": "INFO"}],
    }


def client(bed: Testbed) -> Kube:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(bed.kubeconfig), client_configuration=config)
    config.connection_pool_maxsize = THREADS * 2
    return Kube(kubernetes.client.ApiClient(config))


def ssa(kube: Kube, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    url = path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    kube.request("PATCH", url, obj, [("fieldManager", FIELD_MANAGER), ("force", "true")], APPLY_PATCH)


def apply_all(kube: Kube, objects: list[dict[str, Any]], done: dict[str, float] | None = None) -> None:
    """One server-side apply per object over THREADS threads; done records when each workflow's went out."""

    def one(obj: dict[str, Any]) -> None:
        ssa(kube, obj)
        if done is not None:
            done[obj["metadata"]["name"]] = time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(one, obj) for obj in objects]:
            future.result()


def prepare_namespace(bed: Testbed, kube: Kube, namespace: str) -> str:
    bed.kubectl("create", "namespace", namespace)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pg", "namespace": namespace},
        "type": "Opaque",
        "stringData": {
            "host": "db.example",
            "port": "5432",
            "user": "dagster",
            "password": "x",
            "database": "d",
        },
    }
    ssa(kube, secret)
    return "pg"


def wait_until(what: str, probe: Callable[[], bool], timeout: float, every: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench-operator: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass
class OperatorProcess:
    bed: Testbed
    namespace: str
    log: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    traced: Path | None = None  # run under bench/operator_memory.py, its snapshots written here

    def start(self) -> OperatorProcess:
        self.metrics_port, self.health_port = free_port(), free_port()
        argv = [str(OPERATOR_BIN), "--namespace", self.namespace, "--standalone", "--no-code-location-check"]
        argv += ["--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port)]
        argv += ["--bind-address", "127.0.0.1", *self.args]
        if self.traced is not None:
            argv = [sys.executable, str(MEMORY_WRAPPER), str(self.traced), "--", *argv[1:]]
        self.started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=self.bed.env(), stdout=out, stderr=subprocess.STDOUT)
        wait_until("the operator's /healthz", self.healthy, 120, 0.2)
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise SystemExit(f"bench-operator: the operator exited; see {self.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    def passes(self) -> float:
        return histogram(self.metrics(), PASSES)[1]

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM (peak) in MiB."""
        assert self.proc is not None
        out: dict[str, float] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
        return out

    def memory_snapshot(self) -> dict[str, Any]:
        """Ask the traced operator for a tracemalloc snapshot (SIGUSR2) and read it."""
        assert self.proc is not None and self.traced is not None
        self.traced.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR2)

        out = self.traced

        def written() -> bool:
            try:
                json.loads(out.read_text())
                return True
            except (OSError, ValueError):  # not there yet, or half written
                return False

        wait_until("the operator's memory snapshot", written, 600, 1.0)
        return dict(json.loads(out.read_text()))

    def quiet(self, window: float = 5.0, timeout: float = 1800) -> float:
        """Wait until no pass ended for `window` seconds; returns when the last one ended (monotonic)."""
        last_count, last_change = self.passes(), time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() - last_change < window:
            if time.monotonic() > deadline:
                raise SystemExit("bench-operator: the operator never went quiet")
            time.sleep(0.5)
            count = self.passes()
            if count != last_count:
                last_count, last_change = count, time.monotonic()
        return last_change

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def list_items(kube: Kube, url: str) -> list[dict[str, Any]]:
    body = kube.request("GET", url) or {}
    return list(body.get("items", []))


def ready_workflows(kube: Kube, namespace: str) -> set[str]:
    ready = set()
    for cr in list_items(kube, f"/apis/{m.API_VERSION}/namespaces/{namespace}/{m.PLURAL}"):
        generation = cr["metadata"].get("generation")
        status = cr.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                if cond.get("observedGeneration") == generation == status.get("observedGeneration"):
                    ready.add(cr["metadata"]["name"])
    return ready


def available_deployments(kube: Kube, namespace: str) -> int:
    count = 0
    for dep in list_items(kube, f"/apis/apps/v1/namespaces/{namespace}/deployments"):
        st = dep.get("status") or {}
        want = (dep.get("spec") or {}).get("replicas", 1)
        fresh = st.get("observedGeneration") == dep["metadata"].get("generation")
        if fresh and st.get("availableReplicas", 0) >= want and st.get("updatedReplicas", 0) >= want:
            count += 1
    return count


def add_nodes(bed: Testbed, n: int) -> None:
    """Fake nodes enough for every pod of the run (the bed's two take 250 pods each)."""
    count = max(0, -(-n * 24 // 2000) - cluster.NODE_COUNT + 1)
    if not count:
        return
    big = {"cpu": "4000", "memory": "16Ti", "pods": "2000", "ephemeral-storage": "64Ti"}
    nodes = []
    for i in range(count):
        node = cluster.fake_node(f"bench-node-{i}")
        node["status"] = {"allocatable": big, "capacity": big}
        nodes.append(node)
    bed.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
    wait_until(f"{count} more Ready nodes", lambda: _ready(bed) >= cluster.NODE_COUNT + count, 120, 1)


def _ready(bed: Testbed) -> int:
    out = bed.kubectl("get", "nodes", "-o", "json")
    return sum(
        1
        for node in json.loads(out.stdout)["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
    )


@contextlib.contextmanager
def sized_bed(n: int) -> Iterator[Testbed]:
    """A private kwok bed with the CRDs and fake nodes enough for n workflows; stopped on the way out."""
    bed = cluster.start(WORK / f"bed-{n}", placement=PLACEMENT)
    try:
        bed.apply_crds()
        add_nodes(bed, n)
        yield bed
    finally:
        bed.stop()


def run_operator(
    bed: Testbed,
    kube: Kube,
    n: int,
    tag: str,
    every: float,
    profile: Path | None = None,
    traced: Path | None = None,
) -> dict[str, Any]:
    namespace = f"op-{tag}"
    secret = prepare_namespace(bed, kube, namespace)
    op = OperatorProcess(bed, namespace, WORK / f"{namespace}.log", traced=traced).start()
    spy: subprocess.Popen[bytes] | None = None
    try:
        if profile is not None:
            assert op.proc is not None
            spy = subprocess.Popen(
                [str(py_spy()), "record", "--pid", str(op.proc.pid), "--format", "raw",
                 "--output", str(profile), "--nonblocking", "--rate", str(PROFILE_RATE)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        docs = [
            {
                "apiVersion": m.API_VERSION,
                "kind": m.KIND,
                "metadata": {"name": f"wf{i:04d}", "namespace": namespace},
                "spec": workflow_spec(secret),
            }
            for i in range(n)
        ]
        hist_before = histogram(op.metrics(), PASSES)[0]
        applied: dict[str, float] = {}
        first_ready: dict[str, float] = {}
        started = time.monotonic()
        apply_all(kube, docs, applied)

        def all_ready() -> bool:
            now = time.monotonic()
            for name in ready_workflows(kube, namespace):
                first_ready.setdefault(name, now)
            return len(first_ready) >= n

        wait_until(f"{n} workflows Ready", all_ready, 3600, every)
        took = max(first_ready.values()) - started
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=120)
        latencies = [first_ready[name] - applied[name] for name in first_ready]
        buckets = bucket_diff(histogram(op.metrics(), PASSES)[0], hist_before)
        result = {
            "seconds": took,
            "ready_p50": percentile(latencies, 0.5),
            "ready_p99": percentile(latencies, 0.99),
            "pass_p50": quantile(0.5, buckets),
            "pass_p99": quantile(0.99, buckets),
            "passes": buckets[-1][1] if buckets else 0.0,
        }
        result["rss"] = op.memory()
        if traced is not None:
            result["memory_profile"] = {**memory_groups(op.memory_snapshot()), "rss": op.memory()}
        say(f"{tag}: operator {n} Ready in {took:.1f}s, {result['passes']:.0f} passes, rss {result['rss']}")
        if profile is not None:
            result["profile"] = summarise_collapsed(profile.read_text() if profile.exists() else "")
        return {**result, "namespace": namespace, "operator": op}
    except BaseException:
        if spy is not None and spy.poll() is None:
            spy.kill()
        op.stop()
        raise


def run_direct(bed: Testbed, kube: Kube, n: int, tag: str, every: float) -> dict[str, Any]:
    namespace = f"direct-{tag}"
    secret = prepare_namespace(bed, kube, namespace)
    objects = [o for i in range(n) for o in direct_children(f"wf{i:04d}", namespace, workflow_spec(secret))]
    expected = sum(1 for o in objects if o["kind"] == "Deployment")
    started = time.monotonic()
    apply_all(kube, objects)
    wait_until(
        f"{expected} Deployments available",
        lambda: available_deployments(kube, namespace) >= expected,
        3600,
        every,
    )
    took = time.monotonic() - started
    say(f"{tag}: direct {n} ({len(objects)} objects) available in {took:.1f}s")
    return {"seconds": took, "objects": len(objects)}


def storm(bed: Testbed, namespace: str, n: int) -> dict[str, Any]:
    """A fresh operator on n Ready workflows: time until its passes are quiet, and its memory then. Its
    resync is an hour, so that no timer pass keeps it from going quiet: the storm is the start-up listing."""
    log = WORK / f"{namespace}-restart.log"
    op = OperatorProcess(bed, namespace, log, ["--resync-seconds", "3600"]).start()
    try:
        # kopf lists every kind first: on a busy machine that alone may take longer than the quiet window.
        wait_until(f"{n} passes after the restart", lambda: op.passes() >= n, 3600, 0.5)
        last = op.quiet(window=10.0)
        passes = op.passes()
        result = {"seconds": last - op.started, "passes": passes, "rss": op.memory()}
        say(f"restart with {n}: quiet {result['seconds']:.1f}s after start, {passes:.0f} passes")
        return result
    finally:
        op.stop()


SETTLE_WINDOW = 60.0  # seconds: one resync period of the idle start
SETTLE_TOLERANCE = 0.05
SETTLE_WINDOWS_MAX = 20


def settle(op: OperatorProcess) -> list[float]:
    """Passes per resync period, period after period, until two in a row differ by at most 5 %: the
    start-up backlog has drained and only the resync timers drive passes (at 1,000 workflows a fixed minute
    after the start-up passes still held 28 % more passes than workflows). The windows counted."""
    windows: list[float] = []
    count = op.passes()
    while len(windows) < SETTLE_WINDOWS_MAX:
        time.sleep(SETTLE_WINDOW)  # a counting window, not a wait for a condition
        now = op.passes()
        windows.append(now - count)
        count = now
        if len(windows) >= 2 and abs(windows[-1] - windows[-2]) <= SETTLE_TOLERANCE * max(windows[-2], 1):
            break
    say(f"passes per {SETTLE_WINDOW:.0f} s before the idle minute: {', '.join(f'{w:.0f}' for w in windows)}")
    return windows


def idle_minute(bed: Testbed, namespace: str, n: int) -> dict[str, Any]:
    """A start with --resync-seconds 60: once each workflow had its start-up pass, the passes are counted per
    minute until two minutes in a row agree (settle), then one minute in which each workflow's timer fires
    once (a pass, if the last one is at least 30 s old), diffed on apiserver_request_total."""
    op = OperatorProcess(bed, namespace, WORK / f"{namespace}-idle.log", ["--resync-seconds", "60"]).start()
    try:
        wait_until(f"{n} start-up passes", lambda: op.passes() >= n, 1800, 1.0)
        windows = settle(op)
        passes_before = op.passes()
        before = request_counts(bed.apiserver_metrics())
        time.sleep(60)
        after = request_counts(bed.apiserver_metrics())
        passes = op.passes() - passes_before
        result = {
            **reads_writes(before, after),
            "passes": passes,
            "workflows": n,
            "rss": op.memory(),
            "settle_windows": windows,
        }
        say(
            f"idle minute with {n}: {result['reads']:.0f} reads, {result['writes']:.0f} writes, "
            f"{passes:.0f} passes"
        )
        return result
    finally:
        op.stop()


PY_SPY = "py-spy==0.4.3"
# Samples per second. py-spy shares the cores with both sides but runs only beside the operator: at 50 Hz it
# took more CPU than the operator itself (88 s against 51 s in the first 9 minutes of the 1,000 pair), so the
# profiled pair paid for it. 10 Hz still gives thousands of samples over a pair at 100 workflows.
PROFILE_RATE = 10


def py_spy() -> Path:
    """py-spy in a virtualenv of its own under .bench/ (installed by pip the first time)."""
    home = ROOT / ".bench" / "py-spy"
    spy = home / "bin" / "py-spy"
    if not spy.exists():
        say(f"installing {PY_SPY} into {home} (once)")
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "-q", PY_SPY], check=True)
    return spy


def frame_name(frame: str) -> str:
    """`fn (/long/path/site-packages/pkg/mod.py:12)` -> `fn (pkg/mod.py)`."""
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    function, where = match.groups()
    for marker in ("site-packages/", "lib/python3", "/operator/", "/work/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{function} ({where})"


# Frames every thread's stack starts with: they say nothing about where the time goes.
BOILERPLATE = {
    "Thread.run (threading.py)",
    "Thread._bootstrap_inner (threading.py)",
    "Thread._bootstrap (threading.py)",
    "_worker (concurrent/futures/thread.py)",
    "_WorkItem.run (concurrent/futures/thread.py)",
}


def summarise_collapsed(text: str, top: int = 15) -> str:
    """The functions with the most inclusive samples in py-spy's collapsed stacks (`a;b;c count` lines)."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for frame in {frame_name(f) for f in stack.split(";")} - BOILERPLATE:
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    rows = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(f"{100 * c / total:5.1f}%  {f}" for f, c in rows) if total else ""


# -- the run -------------------------------------------------------------------------------------------
def without_markdown(argv: list[str]) -> list[str]:
    """The arguments without `--markdown PATH` (bench/run.py's temporary file says nothing about the run)."""
    if "--markdown" in argv:
        at = argv.index("--markdown")
        return argv[:at] + argv[at + 2 :]
    return [a for a in argv if not a.startswith("--markdown=")]


def merged(earlier: dict[str, Any] | None, sizes: Iterable[int]) -> dict[str, Any]:
    """What a run starts from: the earlier results without the sizes it measures again."""
    results: dict[str, Any] = {"sizes": {}, **(earlier or {})}
    results["sizes"] = {k: v for k, v in results["sizes"].items() if int(k) not in set(sizes)}
    return results


def bench(args: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    earlier = None if args.fresh or not args.json.exists() else json.loads(args.json.read_text())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    command = shlex.join(["bench/bench_operator.py", *without_markdown(sys.argv[1:])])
    measured = f"{when}, `{command}` (load average {load} at its start)"
    if args.idle_only:
        return idle_only(args, {"sizes": {}, **(earlier or {})}, measured)
    if args.memory_profile:
        return memory_only(args, {"sizes": {}, **(earlier or {})}, measured)
    results = merged(earlier, args.sizes)
    for n in args.sizes:
        with sized_bed(n) as bed:
            kube = client(bed)
            every = 0.2 if n <= 10 else 1.0
            repeats = args.large_repeats if n >= 1000 else args.repeats
            runs: list[dict[str, Any]] = []
            for r in range(repeats):
                tag = f"{n}-{r}"
                order = ("operator", "direct") if r % 2 == 0 else ("direct", "operator")
                pair: dict[str, Any] = {}
                for side in order:
                    if side == "operator":
                        last = args.profile and n == max(args.sizes) and r == repeats - 1
                        profile = WORK / f"py-spy-{n}.txt" if last else None
                        pair["operator"] = run_operator(bed, kube, n, tag, every, profile)
                        pair["operator"].pop("operator").stop()
                    else:
                        pair["direct"] = run_direct(bed, kube, n, tag, every)
                pair["ratio"] = pair["operator"]["seconds"] / pair["direct"]["seconds"]
                runs.append(pair)
                results["sizes"][str(n)] = {"runs": runs, "measured": measured}
                save(args.json, results)  # what a run stopped later keeps (--from-json renders it)
            entry: dict[str, Any] = {"runs": runs, "measured": measured}
            results["sizes"][str(n)] = entry
            last_ns = runs[-1]["operator"]["namespace"]
            if n == max(args.sizes) or n in args.idle_sizes:
                entry["restart"] = storm(bed, last_ns, n)
                save(args.json, results)
            if n in args.idle_sizes:
                entry["idle"] = idle_minute(bed, last_ns, n)
            if runs[-1]["operator"].get("profile"):
                entry["profile"] = runs[-1]["operator"].pop("profile")
            results["sizes"][str(n)] = entry
            results["kubernetes"] = kube_version()
            save(args.json, results)
    return memory_only(args, results, measured, args.memory_sizes)


def memory_group(path: str) -> str:
    """Where a file belongs: phlo_operator's modules by name, other packages as a whole."""
    if path.startswith("<frozen importlib"):
        return "imports (modules' code and objects)"
    if "/phlo_operator/" in path:
        return "phlo_operator/" + path.split("/phlo_operator/", 1)[1]
    if "site-packages/" in path:
        top = path.split("site-packages/", 1)[1].split("/", 1)[0]
        return top.removesuffix(".py")
    if "/lib/python3" in path:
        return "stdlib"
    return path


def memory_groups(snapshot: dict[str, Any], top: int = 12) -> dict[str, Any]:
    """A tracemalloc snapshot of bench/operator_memory.py summed per memory_group, largest first."""
    groups: dict[str, float] = {}
    for entry in snapshot["files"]:
        group = memory_group(entry["file"])
        groups[group] = groups.get(group, 0.0) + entry["bytes"] / 2**20
    ranked = sorted(groups.items(), key=lambda kv: -kv[1])
    rest = sum(v for _, v in ranked[top:])
    shown = [[k, round(v, 1)] for k, v in ranked[:top]] + ([["the rest", round(rest, 1)]] if rest else [])
    return {"traced_mib": round(snapshot["traced"] / 2**20, 1), "groups": shown}


def memory_only(
    args: argparse.Namespace, results: dict[str, Any], measured: str, sizes: list[int] | None = None
) -> dict[str, Any]:
    """--memory-profile (and --memory-sizes after a full run): per size, the operator runs under tracemalloc
    (bench/operator_memory.py) until n workflows are Ready; what Python holds then, and where. Slower than
    the untraced operator: not timed."""
    for n in args.sizes if sizes is None else sizes:
        with sized_bed(n) as bed:
            traced = WORK / f"memory-{n}.json"
            run = run_operator(bed, client(bed), n, f"{n}-memory", 1.0, traced=traced)
            run.pop("operator").stop()
            profile = {**run["memory_profile"], "measured": measured}
            results["sizes"].setdefault(str(n), {})["memory"] = profile
            save(args.json, results)
    return results


def idle_only(args: argparse.Namespace, results: dict[str, Any], measured: str) -> dict[str, Any]:
    """--idle-only: per size, the operator brings n workflows to Ready (not timed against a direct apply),
    then only the idle minute is measured again; the size's other figures stay as they were."""
    for n in args.sizes:
        with sized_bed(n) as bed:
            setup = run_operator(bed, client(bed), n, f"{n}-idle", 1.0)
            setup.pop("operator").stop()
            idle = idle_minute(bed, setup["namespace"], n)
            results["sizes"].setdefault(str(n), {})["idle"] = {**idle, "measured": measured}
            save(args.json, results)
    return results


def save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def kube_version() -> str:
    out = subprocess.run(
        [str(cluster.BIN_DIR / "kube-apiserver"), "--version"], capture_output=True, text=True
    )
    return out.stdout.strip().replace("Kubernetes ", "")


def med(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def summary(results: dict[str, Any], resync: float = 300.0) -> list[dict[str, Any]]:
    """One row per size: medians over repeats, ratios per pair (side by side in the same run). A size whose
    raw results were not kept carries its published row ("row": the medians as BENCHMARKS.md showed them)."""
    rows = []
    for size, entry in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        if "runs" not in entry:
            if "row" in entry:  # else only an idle minute or a memory profile was measured at this size
                rows.append({**entry["row"], "n": int(size)})
            continue
        runs = entry["runs"]
        row: dict[str, Any] = {
            "n": int(size),
            "repeats": len(runs),
            "operator_s": med(r["operator"]["seconds"] for r in runs),
            "direct_s": med(r["direct"]["seconds"] for r in runs),
            "ratio": med(r["ratio"] for r in runs),
            "ratios": [r["ratio"] for r in runs],
            "objects": runs[0]["direct"]["objects"],
            "ready_p50": med(r["operator"]["ready_p50"] for r in runs),
            "ready_p99": med(r["operator"]["ready_p99"] for r in runs),
            "pass_p50": med(r["operator"]["pass_p50"] for r in runs),
            "pass_p99": med(r["operator"]["pass_p99"] for r in runs),
            "passes": med(r["operator"]["passes"] for r in runs),
            "rss": max(r["operator"]["rss"].get("VmRSS", 0) for r in runs),
            "hwm": max(r["operator"]["rss"].get("VmHWM", 0) for r in runs),
        }
        if "restart" in entry:
            row["restart_s"] = entry["restart"]["seconds"]
            row["restart_ratio"] = entry["restart"]["seconds"] / runs[-1]["operator"]["seconds"]
            row["restart_hwm"] = entry["restart"]["rss"].get("VmHWM", 0)
        if "idle" in entry:
            idle = entry["idle"]
            row["idle_reads"] = idle["reads"]
            row["idle_writes"] = idle["writes"]
            row["idle_passes"] = idle["passes"]
            row["idle_reads_per_wf"] = idle["reads"] / int(size)
            row["idle_detail"] = idle["detail"]
            row["idle_settle"] = idle.get("settle_windows", [])
        rows.append(row)
    return rows


TARGETS = """\
Targets (issue 15): 100 workflows Ready within 1.3x the direct apply and 1,000 within 1.5x; in an idle
minute 0 writes and at most one read per workflow per resync period; RSS at most 120 MiB with 100 workflows
and 300 MiB with 1,000; after a restart with 1,000 workflows, steady again within 2x the initial apply."""


def measured_by(results: dict[str, Any]) -> list[str]:
    """The runs behind the sizes shown, each once, in the order of the sizes (older results name their
    runs in "commands" instead)."""
    seen: list[str] = []
    for _, entry in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        also = [(entry.get(part) or {}).get("measured") for part in ("idle", "memory")]
        for run in (entry.get("measured"), *also):
            if run and run not in seen:
                seen.append(run)
    return seen or list(results.get("commands", []))


def markdown(results: dict[str, Any], notes: str = "") -> str:
    rows = summary(results)
    lines = [
        "## The operator against its physical limit",
        "",
        (__doc__ or "").split("\n\n", 2)[2].strip(),
        "",
        f"Kubernetes {results.get('kubernetes', '?')} (the bed's kube-apiserver), kopf's default executor. "
        "Measured by: " + "; ".join(measured_by(results)) + ".",
        "",
        "| workflows (objects) | operator to Ready | direct apply | ratio (per pair) "
        "| Ready after apply p50 / p99 | pass p50 / p99 | passes (per workflow) | RSS / peak |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_pair = ", ".join(f"{x:.2f}" for x in r["ratios"])
        lines.append(
            f"| {r['n']:,} ({r['objects']:,}) | {r['operator_s']:.2f} s | {r['direct_s']:.2f} s "
            f"| **{r['ratio']:.2f}x** ({per_pair}) | {r['ready_p50']:.2f} / {r['ready_p99']:.2f} s "
            f"| {r['pass_p50']:.3f} / {r['pass_p99']:.3f} s | {r['passes']:.0f} ({r['passes'] / r['n']:.1f}) "
            f"| {r['rss']:.0f} / {r['hwm']:.0f} MiB |"
        )
    lines += [
        "",
        f"Medians of {', '.join(str(r['repeats']) for r in rows)} pairs (per size). "
        "*Ready after apply*: from "
        "the moment a workflow's own apply returned until the poller (every 0.2 s up to 10 workflows, "
        "else 1 s) saw it Ready. *pass*: the operator's phlo_operator_reconcile_duration_seconds histogram "
        "over the run "
        "(interpolated within its buckets, as histogram_quantile does).",
    ]
    carried = [
        int(size)
        for size, e in sorted(results["sizes"].items(), key=lambda kv: int(kv[0]))
        if e.get("source")
    ]
    if carried:
        sources = sorted({results["sizes"][str(n)]["source"] for n in carried})
        lines += [
            "",
            f"Carried over (workflows: {', '.join(f'{n:,}' for n in carried)}) from "
            + "; ".join(sources)
            + ".",
        ]
    restarts = [r for r in rows if "restart_s" in r]
    if restarts:
        lines += ["", "| restart with | back to steady | initial apply (same run) | ratio | peak RSS |",
                  "|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in restarts:
            initial = r["restart_s"] / r["restart_ratio"]
            lines.append(
                f"| {r['n']:,} | {r['restart_s']:.1f} s | {initial:.1f} s | **{r['restart_ratio']:.2f}x** "
                f"| {r['restart_hwm']:.0f} MiB |"
            )
    idles = [r for r in rows if "idle_reads" in r]
    if idles:
        lines += [
            "",
            "| idle minute with | reads (GET, LIST) | writes | passes | reads per pass "
            "| reads per workflow per resync |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in idles:
            lines.append(
                f"| {r['n']:,} | {r['idle_reads']:.0f} | {r['idle_writes']:.0f} | {r['idle_passes']:.0f} "
                f"| {r['idle_reads'] / max(r['idle_passes'], 1):.1f} | **{r['idle_reads_per_wf']:.1f}** |"
            )
        worst = idles[-1]
        detail = ", ".join(f"{k} {v:.0f}" for k, v in worst["idle_detail"].items())
        lines += ["", f"Requests in the idle minute with {worst['n']:,} workflows: {detail}."]
        settled = [r for r in idles if r.get("idle_settle")]
        if settled:
            counted = "; ".join(
                f"{r['n']:,}: {', '.join(f'{w:.0f}' for w in r['idle_settle'])}" for r in settled
            )
            lines += [
                "",
                "Passes per minute counted before the idle minute, until two in a row agreed within 5 % "
                f"(workflows: passes per minute): {counted}.",
            ]
    for size, entry in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        memory = entry.get("memory")
        if not memory:
            continue
        rss = memory["rss"].get("VmRSS", 0.0)
        lines += [
            "",
            f"Memory when {int(size):,} workflows were Ready, the operator under tracemalloc "
            f"(`--memory-profile`): Python held {memory['traced_mib']:.1f} MiB of {rss:.0f} MiB RSS "
            "(tracemalloc's own bookkeeping included), by the code that allocated it (the most recent frame "
            "outside the standard library):",
            "",
            "| held by | MiB | share of traced |",
            "|---|---:|---:|",
        ]
        for group, mib in memory["groups"]:
            share = 100 * mib / memory["traced_mib"] if memory["traced_mib"] else 0.0
            lines.append(f"| {group} | {mib:.1f} | {share:.0f} % |")
    lines += ["", TARGETS]
    if notes:
        lines += ["", notes.strip()]
    profiles = [
        (f"from its start until {int(size):,} workflows were Ready (the last pair)", e["profile"])
        for size, e in sorted(results["sizes"].items(), key=lambda kv: int(kv[0]))
        if e.get("profile")
    ]
    # A profile kept from a run that did not finish (results["profiles"]: what it covers -> summary).
    profiles += list(results.get("profiles", {}).items())
    for what, text in profiles:
        head = f"py-spy over the operator {what}; inclusive share of samples, threads waiting left out:"
        lines += ["", head, "", "```", text, "```"]
    return "\n".join(lines) + "\n"


NOTES = Path(__file__).with_name("operator_notes.md")
RESULTS = Path(__file__).with_name("results") / "operator.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,1000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--repeats", type=int, default=3, help="pairs per size below 1,000 (default 3)")
    parser.add_argument("--large-repeats", type=int, default=1, help="pairs at 1,000 and above (default 1)")
    parser.add_argument(
        "--idle-sizes", default="100,1000", type=lambda s: [int(x) for x in s.split(",") if x]
    )
    parser.add_argument(
        "--idle-only", action="store_true", help="only the idle minute at --sizes (the rest is kept)"
    )
    parser.add_argument(
        "--memory-sizes",
        default="100",
        type=lambda s: [int(x) for x in s.split(",") if x],
        help="after the pairs, a tracemalloc profile at these sizes (default %(default)s; '' for none)",
    )
    parser.add_argument(
        "--memory-profile",
        action="store_true",
        help="only a tracemalloc profile of the operator at Ready, per --sizes (the rest is kept)",
    )
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="no py-spy at the largest size"
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file (default %(default)s)")
    parser.add_argument("--markdown", type=Path, help="write this benchmark's BENCHMARKS.md section here")
    parser.add_argument("--from-json", action="store_true", help="only render --json's results again")
    parser.add_argument("--fresh", action="store_true", help="drop --json's earlier sizes (kept by default)")
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(args.json.read_text())
    else:
        results = bench(args)
    text = markdown(results, NOTES.read_text() if NOTES.exists() else "")
    if args.markdown:
        args.markdown.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
