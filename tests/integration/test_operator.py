"""The operator on the real test bed, started as a user starts it: `phlo-dagster-operator --namespace NS`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from phlo_operator import crdgen

from tests.operator_process import OUR_RESOURCES, free_port, monitoring_crd
from tests.testbed.cluster import Testbed

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples/quickstart/workflow.yaml"
NAME = "quickstart"
OPERATOR_BIN = Path(sys.executable).parent / "phlo-dagster-operator"
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY"}
READ_VERBS = {"GET", "LIST"}


# -- helpers
def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


PASSES = "phlo_operator_reconcile_duration_seconds_count"  # reconcile passes ended, whatever their outcome


def settled(op: Operator, quiet: float = 2.0, timeout: float = 90) -> float:
    """Wait until no reconcile pass has ended for `quiet` seconds (the triggers of the last change, including
    the watch events of the operator's own writes, have all been handled); returns the passes ended so far.
    Used before a new drift, so that a pass still owed to the previous step cannot repair it by accident."""
    deadline = time.monotonic() + timeout
    count, since = op.metric(PASSES), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = op.metric(PASSES)
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return count
    raise AssertionError(f"the operator never went idle for {quiet}s within {timeout}s:\n{op.tail()}")


def observed(kc: Kubectl) -> bool:
    """The pass that read the current spec generation has ended: its status (written after the children
    were applied) records that generation."""
    cr = kc.must("pwf", NAME)
    return bool((cr.get("status") or {}).get("observedGeneration") == cr["metadata"]["generation"])


class Kubectl:
    def __init__(self, bed: Testbed, namespace: str) -> None:
        self.bed, self.ns = bed, namespace

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.bed.kubectl("-n", self.ns, *args, input=input, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        out = self("get", kind, name, "-o", "json", "--ignore-not-found", "--show-managed-fields")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def items(self, kind: str, selector: str = f"app.kubernetes.io/instance={NAME}") -> list[dict[str, Any]]:
        return list(
            json.loads(self("get", kind, "-l", selector, "-o", "json", "--show-managed-fields").stdout)[
                "items"
            ]
        )

    def must(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.get(kind, name)
        assert obj is not None, f"{kind}/{name} not found in {self.ns}"
        return obj

    def condition(self, type_: str) -> dict[str, Any]:
        cr = self.get("pwf", NAME) or {}
        return next((c for c in cr.get("status", {}).get("conditions", []) if c["type"] == type_), {})

    def wait_condition(self, type_: str, status: str = "True", timeout: int = 120) -> None:
        self("wait", f"--for=condition={type_}={status}", f"pwf/{NAME}", f"--timeout={timeout}s")

    def events(self) -> list[dict[str, Any]]:
        out = self("get", "events", "--field-selector", "involvedObject.kind=PhloWorkflow", "-o", "json")
        return list(json.loads(out.stdout)["items"])

    def patch(self, body: dict[str, Any]) -> None:
        self("patch", "pwf", NAME, "--type=merge", "-p", json.dumps(body))


class ReloadRecorder:
    """Stands in for the webserver's /graphql (the test bed's pods are fake); records reload mutations."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.calls.append({"path": self.path, **body})
                data = {
                    "data": {
                        "reloadRepositoryLocation": {"__typename": "WorkspaceLocationEntry", "name": "phlo"}
                    }
                }
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class Operator:
    """The console script as a subprocess with the bed's KUBECONFIG."""

    def __init__(
        self,
        bed: Testbed,
        namespaces: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.bed, self.namespaces, self.log_path, self.args = bed, namespaces, log, args or []
        self.metrics_port, self.health_port = free_port(), free_port()
        self.env = {**bed.env(), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Any = None

    def start(self) -> Operator:
        argv = [str(OPERATOR_BIN)]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        argv += ["--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port)]
        argv += ["--bind-address", "127.0.0.1", *self.args]
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for("operator health endpoint", self.healthy, timeout=60)
        return self

    def healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"operator exited:\n{self.tail()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                if all(f'{k}="{v}"' in line for k, v in labels.items()):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()


def write_counts(bed: Testbed) -> dict[str, float]:
    """Write requests of the kinds the operator sends, per verb and resource, from the API server's /metrics.

    The counter has no namespace or user label and the bed may be shared, so only the verb/resource pairs this
    operator uses are counted (server-side APPLY of children, create-once POSTs, deletes, CR/status PATCH).
    """
    counts: dict[str, float] = {}
    for line in bed.apiserver_metrics().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        resource, verb, sub = (
            labels.get("resource", ""),
            labels.get("verb", ""),
            labels.get("subresource", ""),
        )
        if verb not in WRITE_VERBS or labels.get("dry_run") or resource not in OUR_RESOURCES:
            continue
        ours = (
            verb == "APPLY"
            or (verb == "POST" and resource in ("secrets", "jobs"))
            or (verb == "DELETE" and labels.get("scope") == "resource")
            or (verb == "PATCH" and resource == "phloworkflows")
        )
        if not ours or (sub and not (resource == "phloworkflows" and sub == "status")):
            continue
        key = f"{verb} {resource}/{sub}"
        counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def read_counts(bed: Testbed) -> dict[str, float]:
    """GET and LIST requests of the resources the operator reads, per verb and resource (the API server's
    apiserver_request_total; watches are verb WATCH and not counted)."""
    counts: dict[str, float] = {}
    for line in bed.apiserver_metrics().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.get("verb") not in READ_VERBS or labels.get("resource") not in OUR_RESOURCES:
            continue
        key = f"{labels['verb']} {labels['resource']}"
        counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def template_hash_annotation(dep: dict[str, Any] | None) -> str:
    assert dep is not None
    return str(dep["spec"]["template"]["metadata"]["annotations"].get("phlo.dev/dbt-spec-hash"))


# -- fixtures


@pytest.fixture
def kc(testbed: Testbed, namespace: str, crds: None) -> Kubectl:
    return Kubectl(testbed, namespace)


def prebound_volume(bed: Testbed, namespace: str) -> str:
    """A PersistentVolume pre-bound to the managed PostgreSQL claim (the bed has no provisioner)."""
    name = f"pv-{namespace}"
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": f"/tmp/{name}"},
            "claimRef": {"namespace": namespace, "name": f"data-{NAME}-postgres-0"},
        },
    }
    bed.kubectl("apply", "-f", "-", input=json.dumps(pv))
    return name


@pytest.fixture
def volume(testbed: Testbed, namespace: str) -> Iterator[str]:
    """prebound_volume on the session's bed, deleted afterwards."""
    name = prebound_volume(testbed, namespace)
    yield name
    testbed.kubectl("delete", "pv", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def reload_recorder() -> Iterator[ReloadRecorder]:
    recorder = ReloadRecorder()
    yield recorder
    recorder.close()


@pytest.fixture
def operator(
    testbed: Testbed, namespace: str, crds: None, tmp_path: Path, reload_recorder: ReloadRecorder
) -> Iterator[Operator]:
    op = Operator(
        testbed, [namespace], tmp_path / "operator.log", {"PHLO_OPERATOR_WEBSERVER_URL": reload_recorder.url}
    )
    op.start()
    yield op
    op.stop()
    sys.stderr.write(f"--- operator log tail ---\n{op.tail()}\n")


def apply_quickstart(kc: Kubectl, **overrides: Any) -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    for key, value in overrides.items():
        doc["spec"][key] = value
    kc("apply", "-f", "-", input=json.dumps(doc))
    return doc


@contextmanager
def quickstart_ready(
    kc: Kubectl, bed: Testbed, log: Path, *args: str, **overrides: Any
) -> Iterator[Operator]:
    """A private operator (own flags) that brought quickstart to Ready; stopped on exit, pass or fail."""
    op = Operator(bed, [kc.ns], log, args=list(args)).start()
    try:
        apply_quickstart(kc, **overrides)
        kc.wait_condition("Ready", timeout=120)
        yield op
    finally:
        op.stop()


@pytest.fixture
def ready(kc: Kubectl, operator: Operator, volume: str) -> Kubectl:
    apply_quickstart(kc)
    kc.wait_condition("Ready", timeout=120)
    return kc


# -- tests
def test_quickstart_reaches_ready_with_every_child(ready: Kubectl, operator: Operator) -> None:
    kc = ready
    cr = kc.get("pwf", NAME)
    assert cr is not None
    status = cr["status"]
    assert status["observedGeneration"] == cr["metadata"]["generation"]
    assert status["webserverUrl"] == f"http://{NAME}-webserver.{kc.ns}.svc:3000"
    assert status["dbt"]["specHash"] and status["dbt"]["lastSuccessTime"]
    assert status["metrics"] == {"serviceMonitor": "Disabled"} and status["runLauncher"] == {
        "namespace": kc.ns
    }
    types = {c["type"]: c for c in status["conditions"]}
    for t in ("Ready", "WebserverReady", "DaemonReady", "CodeServerReady", "DbtCompiled", "StorageReady"):
        assert types[t]["status"] == "True", types[t]
        assert set(types[t]) >= {
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        }
    assert types["Degraded"]["status"] == "False"

    deployments = {d["metadata"]["name"]: d for d in kc.items("deployments")}
    assert set(deployments) == {f"{NAME}-webserver", f"{NAME}-daemon", f"{NAME}-code-server"}
    daemon = deployments[f"{NAME}-daemon"]
    assert daemon["spec"]["replicas"] == 1 and daemon["spec"]["strategy"]["type"] == "Recreate"
    for obj in [
        *deployments.values(),
        *kc.items("configmaps"),
        *kc.items("services"),
        *kc.items("statefulsets"),
    ]:
        owner = obj["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("PhloWorkflow", NAME, True)
        managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
        assert "phlo-dagster-operator" in managers
    assert kc.items("roles") and kc.items("rolebindings")
    netpol = kc.must("networkpolicy", f"{NAME}-code-server")
    [rule] = netpol["spec"]["ingress"]
    assert [p["podSelector"]["matchExpressions"][0]["values"] for p in rule["from"]] == [
        ["webserver", "daemon"]
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 4000}]
    assert {p["name"] for p in kc.must("svc", f"{NAME}-webserver")["spec"]["ports"]} == {"http", "metrics"}
    assert kc.get("secret", f"{NAME}-postgres") is not None

    table = kc("get", "pwf", NAME).stdout
    assert re.search(rf"{NAME}\s+True\s+Available\s+\d+", table), table
    reasons = {e["reason"] for e in kc.events()}
    assert {"DbtCompileStarted", "DbtCompiled", "Ready"} <= reasons, reasons
    assert operator.metric("phlo_operator_reconciles_total", result="ok") >= 1
    assert operator.metric("phlo_operator_workflows", condition="Ready", status="True") == 1
    assert "phlo_operator_reconcile_duration_seconds_bucket" in operator.metrics()


def test_unchanged_workflow_costs_zero_writes(ready: Kubectl, operator: Operator, testbed: Testbed) -> None:
    """A restarted operator lists the unchanged workflow and its children again and writes nothing.

    No fixed sleep: the window is measured from a stopped operator (nothing of ours writes) until the
    restarted one has ended its first full pass and then gone idle (`settled`), so a slow operator lengthens
    the window instead of escaping it. Mutation run (2026-12-02): Kube.apply re-applying every ConfigMap
    unconditionally (a no-op server-side apply, no resourceVersion change) made it fail with
    `writes to an unchanged workflow: [{'APPLY configmaps/': 4.0}, ...] (5 of 5 attempts)`."""
    kc = ready

    def versions() -> dict[str, str]:
        return {
            o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in kc.items("all,cm,secret,netpol")
        }

    attempts = []
    for _ in range(5):  # the bed may be shared: retry a window another session's writes fell into
        operator.stop()  # a restart lists every PhloWorkflow again: one full reconcile of an unchanged CR
        before, versions_before = write_counts(testbed), versions()
        operator.start()
        wait_for(
            "a reconcile pass", lambda: operator.metric("phlo_operator_reconciles_total", result="ok") >= 1
        )
        settled(operator)  # the passes the children's initial listing triggers have ended too
        writes = delta(before, write_counts(testbed))
        attempts.append(writes)
        if not writes:
            break
    assert not attempts[-1], f"writes to an unchanged workflow: {attempts}"
    assert versions() == versions_before
    # The same measurement sees a real change: it can fail.
    before = write_counts(testbed)
    kc.patch({"spec": {"daemon": {"podAnnotations": {"team": "data"}}}})
    wait_for(
        "a counted write", lambda: delta(before, write_counts(testbed)).get("APPLY deployments/", 0) >= 1
    )


def test_a_resync_pass_reads_only_its_workflow(private_bed: Testbed, tmp_path: Path) -> None:
    """Issue 15: a pass reads its children from the store the watches feed (phlo_operator.store), so an idle
    workflow's resync costs one read, the GET of the PhloWorkflow, and no write.

    The window opens once the operator is idle and closes once at least one resync pass (every 20 s) has
    ended and the operator is idle again; no kubectl runs inside it. apiserver_request_total has no
    namespace label: the bed is the test's own, and a window another client's reads fell into is measured
    again.
    Mutation run (2026-12-06): with controller.build handing the Reconciler the plain Kube (no store), all 5
    attempts failed with 24-25 reads in a window of one pass (`assert 25.0 <= 1.0`: GET deployments 4,
    services 4, configmaps 2, ..., LIST horizontalpodautoscalers 1, GET ingresses 1)."""
    testbed = private_bed
    kc = Kubectl(testbed, "reads")
    testbed.kubectl("create", "namespace", kc.ns)
    prebound_volume(testbed, kc.ns)
    with quickstart_ready(kc, testbed, tmp_path / "operator.log", "--resync-seconds", "20") as op:
        attempts = []
        for _ in range(5):
            passes = settled(op)
            reads, writes = read_counts(testbed), write_counts(testbed)
            wait_for("a resync pass", lambda: op.metric(PASSES) >= passes + 1, timeout=60)  # noqa: B023
            ended = settled(op) - passes
            read = delta(reads, read_counts(testbed))
            attempts.append((ended, read, delta(writes, write_counts(testbed))))
            if sum(read.values()) <= ended and read.get("GET phloworkflows", 0) >= 1:
                break
        ended, read, written = attempts[-1]
        assert sum(read.values()) <= ended, f"more than one read per pass: {attempts}"
        assert read.get("GET phloworkflows", 0) >= 1, attempts  # the measurement sees the pass's own read
        assert not written, attempts


def test_update_rolls_out_after_a_new_compile_and_reloads(
    ready: Kubectl, operator: Operator, reload_recorder: ReloadRecorder
) -> None:
    kc = ready
    old_hash = kc.must("pwf", NAME)["status"]["dbt"]["specHash"]
    old_job = f"{NAME}-dbt-{old_hash}"
    kc.patch({"spec": {"env": [{"name": "PHLO_LOG_LEVEL", "value": "DEBUG"}], "webserver": {"replicas": 2}}})
    new_hash = wait_for(
        "a new dbt hash in status",
        lambda: (
            (kc.must("pwf", NAME).get("status", {}).get("dbt", {}).get("specHash") or old_hash) != old_hash
            and kc.must("pwf", NAME)["status"]["dbt"]["specHash"]
        ),
    )
    wait_for(
        "code server on the new hash",
        lambda: template_hash_annotation(kc.get("deploy", f"{NAME}-code-server")) == new_hash,
    )
    wait_for(
        "Ready after the rollout",
        lambda: (
            kc.condition("Ready").get("status") == "True"
            and kc.condition("Ready").get("observedGeneration")
            == kc.must("pwf", NAME)["metadata"]["generation"]
        ),
    )
    wait_for("old dbt Job deleted", lambda: kc.get("job", old_job) is None)
    web = kc.get("deploy", f"{NAME}-webserver")
    assert web is not None and web["spec"]["replicas"] == 2
    env = web["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PHLO_LOG_LEVEL", "value": "DEBUG"} in env
    assert kc.get("pdb", f"{NAME}-webserver") is not None
    wait_for("reload mutation", lambda: reload_recorder.calls)
    call = reload_recorder.calls[-1]
    assert call["path"] == "/graphql" and "reloadRepositoryLocation" in call["query"]
    assert call["variables"] == {"name": "phlo"}
    wait_for("reload event", lambda: "CodeLocationReloaded" in {e["reason"] for e in kc.events()})
    assert "CodeServerRollout" in {e["reason"] for e in kc.events()}
    kc.patch({"spec": {"webserver": {"replicas": 1}}})
    wait_for("PDB removed at 1 replica", lambda: kc.get("pdb", f"{NAME}-webserver") is None)


def test_failed_compile_degrades_and_keeps_the_previous_code_server(
    ready: Kubectl, operator: Operator
) -> None:
    kc = ready
    before = kc.get("deploy", f"{NAME}-code-server")
    old_hash = template_hash_annotation(before)
    kc.patch({"spec": {"dbt": {"target": "broken", "podAnnotations": {"kwok.phlo.dev/fail": "true"}}}})
    kc.wait_condition("Degraded", "True", timeout=120)
    degraded = kc.condition("Degraded")
    assert degraded["reason"] == "DbtCompileFailed", degraded
    assert "failed" in degraded["message"]
    assert kc.condition("DbtCompiled")["status"] == "False"
    after = kc.get("deploy", f"{NAME}-code-server")
    assert template_hash_annotation(after) == old_hash
    assert after is not None and before is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert kc.condition("CodeServerReady")["status"] == "True"  # the previous code server keeps serving
    warnings = [e for e in kc.events() if e["type"] == "Warning" and e["reason"] == "DbtCompileFailed"]
    assert warnings, kc.events()
    # Deleting the failed Job is how a user retries the same inputs: the operator starts it again.
    failed_job = kc.must("job", kc.must("pwf", NAME)["status"]["dbt"]["jobName"])
    kc("delete", "job", failed_job["metadata"]["name"], "--wait=true", "--timeout=60s")
    retried = wait_for("the Job started again", lambda: kc.get("job", failed_job["metadata"]["name"]))
    assert retried["metadata"]["uid"] != failed_job["metadata"]["uid"]
    # Fixing the spec recovers.
    kc.patch({"spec": {"dbt": {"target": None, "podAnnotations": None}}})
    kc.wait_condition("Degraded", "False", timeout=120)
    kc.wait_condition("Ready", timeout=120)


def test_drift_is_repaired(ready: Kubectl, operator: Operator) -> None:
    """Deployments deleted or scaled by hand come back through the Deployment watch, one drift at a time
    after the operator went idle (no pass owed to an earlier change repairs a later one). The other kinds:
    test_edited_or_deleted_children_are_repaired_by_their_watch (the ConfigMap and Service drift this test
    once made was repaired by the Deployment event it also caused); without watch events:
    test_periodic_resync_repairs_drift_that_raises_no_watched_event. Mutation run (2026-12-02): without the
    Deployment `kopf.on.event` decorator on handlers.child_event it failed: "timed out after 90s waiting
    for webserver recreated"."""
    kc = ready
    settled(operator)
    kc("delete", "deploy", f"{NAME}-webserver", "--wait=false")
    wait_for(
        "webserver recreated",
        lambda: (
            (kc.get("deploy", f"{NAME}-webserver") or {}).get("metadata", {}).get("deletionTimestamp") is None
            and kc.get("deploy", f"{NAME}-webserver")
        ),
    )
    settled(operator)
    kc("scale", "deploy", f"{NAME}-daemon", "--replicas=3")
    wait_for(
        "daemon back to one replica", lambda: kc.must("deploy", f"{NAME}-daemon")["spec"]["replicas"] == 1
    )
    kc.wait_condition("Ready", timeout=120)


def test_edited_or_deleted_children_are_repaired_by_their_watch(
    kc: Kubectl, volume: str, testbed: Testbed, tmp_path: Path
) -> None:
    """Each kind's own watch repairs it: the resync is an hour here, and each drift is made alone, after the
    operator went idle, so no pass owed to another change or a timer can repair it within the wait. Every
    drift is tried before the verdict, which names each one left unrepaired.

    Mutation run (2026-12-02): with the Service, ConfigMap and NetworkPolicy `kopf.on.event` decorators
    removed from handlers.child_event, it failed naming both ConfigMaps, both Services and the
    NetworkPolicy as not repaired within 30 s (the RoleBinding, still watched, was repaired; before this
    rewrite, that one deletion's pass repaired everything and the test passed)."""

    # (kind, child suffix, ConfigMap key edited or None to delete the object, text the operator's copy holds)
    drifts = [
        ("cm", "instance", "dagster.yaml", "run_launcher"),
        ("cm", "workspace", "workspace.yaml", "grpc_server"),
        ("svc", "webserver", None, ""),
        ("svc", "code-server", None, ""),
        ("netpol", "code-server", None, ""),
        ("rolebinding", "run-launcher", None, ""),
    ]
    unrepaired: list[str] = []
    with quickstart_ready(kc, testbed, tmp_path / "operator.log", "--resync-seconds", "3600") as op:
        for kind, suffix, key, text in drifts:
            name = f"{NAME}-{suffix}"
            uid = kc.must(kind, name)["metadata"]["uid"]
            settled(op)
            if key is None:
                what = f"{kind}/{name} deleted"
                kc("delete", kind, name, "--wait=true", "--timeout=30s")
            else:
                what = f"{kind}/{name} edited"
                kc("patch", kind, name, "--type=merge", "-p", json.dumps({"data": {key: "x: 1"}}))

            def repaired(
                kind: str = kind, name: str = name, key: str | None = key, text: str = text, uid: str = uid
            ) -> bool:
                live = kc.get(kind, name) or {}
                if key is None:  # a new object, not the one deleted
                    return live.get("metadata", {}).get("uid") not in (None, uid)
                return text in (live.get("data") or {}).get(key, "")

            try:
                wait_for(f"{what}: repaired", repaired, timeout=30)
            except AssertionError:
                unrepaired.append(what)
        assert not unrepaired, f"not repaired within 30 s by their watch: {unrepaired}\n{op.tail()}"


def test_editing_a_referenced_configmap_or_secret_rolls_the_pods_through_its_watch(
    kc: Kubectl, volume: str, testbed: Testbed, tmp_path: Path
) -> None:
    """The content of a ConfigMap (envFrom) and a Secret (env valueFrom) the pods read goes into
    phlo.dev/referenced-checksum; the operator watches both kinds, so an edit rolls the Deployments within
    seconds though the resync is an hour. A key no env reads changes nothing; no value reaches the log.
    Mutation run (2026-12-06): without the ConfigMap and Secret `kopf.on.event` decorators in handlers.py it
    failed: "timed out after 30s waiting for ConfigMap edited: all three Deployments roll"."""
    kc("create", "configmap", "team-settings", "--from-literal=LEVEL=info")
    kc(
        "create",
        "secret",
        "generic",
        "team-api",
        "--from-literal=token=t-first-9f3a",
        "--from-literal=spare=s",
    )
    env = [
        {"name": "PHLO_LOG_LEVEL", "value": "INFO"},
        {"name": "PHLO_DATA_DIR", "value": "/tmp"},
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "team-api", "key": "token"}}},
    ]
    overrides = {"env": env, "envFrom": [{"configMapRef": {"name": "team-settings"}}]}
    deployments = [f"{NAME}-webserver", f"{NAME}-daemon", f"{NAME}-code-server"]

    def checksums() -> set[str]:
        return {
            kc.must("deploy", d)["spec"]["template"]["metadata"]["annotations"].get(
                "phlo.dev/referenced-checksum", ""
            )
            for d in deployments
        }

    with quickstart_ready(
        kc, testbed, tmp_path / "operator.log", "--resync-seconds", "3600", **overrides
    ) as op:
        [first] = checksums()
        assert first
        for what, command in (
            (
                "ConfigMap edited",
                ["patch", "configmap", "team-settings", "-p", '{"data": {"LEVEL": "debug"}}'],
            ),
            (
                "Secret key read by env edited",
                ["patch", "secret", "team-api", "-p", '{"stringData": {"token": "t-second-4b1c"}}'],
            ),
        ):
            before = checksums()
            settled(op)
            kc(*command)
            wait_for(
                f"{what}: all three Deployments roll",
                lambda b=before: len(checksums()) == 1 and checksums() != b,
                timeout=30,
            )
        rolled = checksums()
        settled(op)
        kc("patch", "secret", "team-api", "-p", '{"stringData": {"spare": "unread"}}')
        settled(op)
        assert checksums() == rolled  # a key no env reads
        log = op.log_path.read_text(errors="replace")
        assert "t-first-9f3a" not in log and "t-second-4b1c" not in log


def test_suspend_scales_to_zero_and_keeps_data(ready: Kubectl, operator: Operator) -> None:
    kc = ready
    kc.patch({"spec": {"suspend": True}})
    wait_for("Ready=False Suspended", lambda: kc.condition("Ready").get("reason") == "Suspended")
    for component in ("webserver", "daemon", "code-server"):
        assert kc.must("deploy", f"{NAME}-{component}")["spec"]["replicas"] == 0
    assert kc.must("sts", f"{NAME}-postgres")["spec"]["replicas"] == 1
    assert kc.get("pvc", f"data-{NAME}-postgres-0") is not None
    kc.patch({"spec": {"suspend": False}})
    kc.wait_condition("Ready", timeout=120)


def test_delete_removes_children_but_keeps_the_database_volume(ready: Kubectl, operator: Operator) -> None:
    """deletionPolicy Retain (the quickstart's): deleting the workflow keeps the PVC and the Secret.

    The deletion is a foreground one, so its end is observable: the PhloWorkflow disappears only after the
    garbage collector has deleted every dependent that blocks it, transitively (the StatefulSet, and through
    it the PVC were it owned; the Secret were it owned). Whatever is still there then was kept, not merely
    not deleted yet. Mutation run (2026-12-02): the policy forced to Delete in render/postgres.py (Secret
    owned, whenDeleted Delete) and steps.storage_secret failed it 3 times in 3, at the PVC assertion (the
    background deletion it replaces let it pass 3 times in 4, issue 16's audit). Mutation run: with
    neither Controller.forget nor a "gone" pass clearing the workflow from the gauge, it failed at "the
    gauge forgets the workflow"."""
    kc = ready
    wait_for(
        "the gauge counts it Ready",
        lambda: operator.metric("phlo_operator_workflows", condition="Ready", status="True") == 1,
    )
    claim = kc.must("pvc", f"data-{NAME}-postgres-0")
    secret = kc.must("secret", f"{NAME}-postgres")
    kc("delete", "pwf", NAME, "--cascade=foreground", "--wait=true", "--timeout=120s")
    assert kc.get("pwf", NAME) is None
    assert not kc.items("deployments,statefulsets,services,configmaps,jobs")
    kept = kc.get("pvc", claim["metadata"]["name"])
    assert kept is not None and kept["metadata"]["uid"] == claim["metadata"]["uid"]
    assert "deletionTimestamp" not in kept["metadata"], kept["metadata"]
    password = kc.get("secret", f"{NAME}-postgres")  # the retained data's password
    assert password is not None and password["metadata"]["uid"] == secret["metadata"]["uid"]
    assert "deletionTimestamp" not in password["metadata"], password["metadata"]
    # The workflow gauge forgets the deleted workflow (it counted it Ready before).
    wait_for("the gauge forgets the workflow", lambda: operator.metric("phlo_operator_workflows") == 0)


def test_delete_policy_removes_the_volume(kc: Kubectl, operator: Operator, volume: str) -> None:
    apply_quickstart(kc)  # Retain first: the policy may change after the Secret and PVC exist
    kc.wait_condition("Ready", timeout=120)
    assert "ownerReferences" not in kc.must("secret", f"{NAME}-postgres")["metadata"]
    kc.patch({"spec": {"storage": {"postgres": {"deletionPolicy": "Delete"}}}})
    wait_for("Secret owned", lambda: kc.must("secret", f"{NAME}-postgres")["metadata"].get("ownerReferences"))
    wait_for(
        "PVC retention policy",
        lambda: (
            kc.must("sts", f"{NAME}-postgres")["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"]
            == "Delete"
        ),
    )
    kc("delete", "pwf", NAME, "--timeout=60s")
    wait_for("PVC deleted", lambda: kc.get("pvc", f"data-{NAME}-postgres-0") is None, timeout=120)
    wait_for("Secret deleted", lambda: kc.get("secret", f"{NAME}-postgres") is None, timeout=60)


def test_a_lost_managed_secret_is_not_regenerated_over_existing_data(
    kc: Kubectl, volume: str, testbed: Testbed, tmp_path: Path
) -> None:
    """Secrets raise no watched event: a short resync notices the deletion and the restore.

    Mutation run (2026-12-02): steps.storage_secret regenerating the Secret once it has been lost for 5 s
    (the first passes still report StorageSecretLost) failed it at `secret is None`: the wait for idle and
    then two resync passes replaces a fixed 4 s sleep, which ended before such a delay (or a slow pass)."""
    with quickstart_ready(kc, testbed, tmp_path / "operator.log", "--resync-seconds", "3") as op:
        original = kc.must("secret", f"{NAME}-postgres")
        assert kc.get("pvc", f"data-{NAME}-postgres-0") is not None
        kc("delete", "secret", f"{NAME}-postgres")
        wait_for("StorageSecretLost", lambda: kc.condition("Degraded").get("reason") == "StorageSecretLost")
        message = kc.condition("Degraded")["message"]
        assert f"data-{NAME}-postgres-0" in message and "Restore the Secret" in message
        assert kc.condition("StorageReady")["status"] == "False"
        # Once the passes the loss itself triggered have ended, two more resync passes (every 3 s) end:
        # still no new password over the old data.
        passes = settled(op)
        wait_for("two more resync passes", lambda: op.metric(PASSES) >= passes + 2, timeout=60)
        assert kc.get("secret", f"{NAME}-postgres") is None
        assert any(e["type"] == "Warning" and e["reason"] == "StorageSecretLost" for e in kc.events())
        restored = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{NAME}-postgres"},
            "data": original["data"],
        }
        kc("apply", "-f", "-", input=json.dumps(restored))
        kc.wait_condition("Degraded", "False", timeout=60)
        kc.wait_condition("Ready", timeout=60)
        assert kc.must("secret", f"{NAME}-postgres")["data"] == original["data"]
        assert op.proc is not None and op.proc.poll() is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"storage": {"postgres": {"secretName": "pg", "managed": True}}}, "not both"),
        ({"storage": {"postgres": {"managed": False}}}, "managed: false needs secretName"),
        ({"webserver": {"port": 70000}}, "spec.webserver.port"),
        ({"webserver": {"serviceType": "Bogus"}}, "spec.webserver.serviceType"),
        ({"webserver": {"replicas": 3000000000}}, "less than or equal to 2147483647"),
        ({"image": " "}, "spec.image in body should match"),
        ({"webserver": {"port": 9090}}, "metrics.port must differ from webserver.port"),
        ({"storage": {"postgres": {"secretName": "a/b?c=d"}}}, "spec.storage.postgres.secretName"),
        ({"storage": {"postgres": {"storageSize": "lots"}}}, "spec.storage.postgres.storageSize"),
        ({"runLauncher": {"namespace": "Bad_NS"}}, "spec.runLauncher.namespace"),
        ({"serviceAccountName": "UPPER_case"}, "spec.serviceAccountName"),
        ({"env": [{"name": "X", "valueFrom": {}}]}, "set exactly one of secretKeyRef"),
        ({"env": [{"name": "X", "valueFrom": {"bogus": 1}}]}, 'unknown field "spec.env[0].valueFrom.bogus"'),
        ({"tolerations": [{"key": "k", "operator": "Sometimes"}]}, "spec.tolerations[0].operator"),
        ({"envFrom": [{"secretRef": {"nam": "x"}}]}, 'unknown field "spec.envFrom[0].secretRef.nam"'),
        (
            {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
            "serviceMonitor.enabled needs",
        ),
    ],
)
def test_api_server_rejects_invalid_specs(kc: Kubectl, spec: dict[str, Any], message: str) -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["spec"].update(spec)
    out = kc("apply", "-f", "-", input=json.dumps(doc), check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_operator_judged_invalid_spec_touches_nothing(kc: Kubectl, operator: Operator) -> None:
    apply_quickstart(kc, env=[{"name": "DAGSTER_PG_PASSWORD", "value": "nope"}])
    kc.wait_condition("Degraded", "True", timeout=60)
    degraded = kc.condition("Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "DAGSTER_PG_PASSWORD is set by the operator" in degraded["message"]
    assert kc.condition("Ready")["reason"] == "InvalidSpec"
    assert kc.items("deployments,configmaps,services,statefulsets,jobs,secrets") == []
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in kc.events())
    assert operator.metric("phlo_operator_reconciles_total", result="invalid") >= 1
    assert operator.proc is not None and operator.proc.poll() is None  # no crash loop
    # Fixing the spec brings it up.
    kc.patch({"spec": {"env": [{"name": "OK", "value": "1"}]}})
    kc.wait_condition("Degraded", "False", timeout=60)


def test_missing_external_secret_is_reported(kc: Kubectl, operator: Operator) -> None:
    apply_quickstart(kc, storage={"postgres": {"secretName": "team-pg"}})
    wait_for("storage problem", lambda: kc.condition("Degraded").get("reason") == "StorageSecretInvalid")
    assert "team-pg" in kc.condition("Degraded")["message"]
    kc(
        "create",
        "secret",
        "generic",
        "team-pg",
        "--from-literal=host=h",
        "--from-literal=port=5432",
        "--from-literal=user=u",
        "--from-literal=password=p",
        "--from-literal=database=d",
    )
    kc.wait_condition("Ready", timeout=120)  # the resync or a child event notices the Secret
    assert kc.get("sts", f"{NAME}-postgres") is None


def test_periodic_resync_repairs_drift_that_raises_no_watched_event(
    kc: Kubectl, volume: str, testbed: Testbed, tmp_path: Path
) -> None:
    with quickstart_ready(kc, testbed, tmp_path / "operator.log", "--resync-seconds", "4"):
        kc("patch", "cm", f"{NAME}-workspace", "--type=merge", "-p", '{"data": {"workspace.yaml": "x: 1"}}')
        kc("delete", "svc", f"{NAME}-webserver")

        def restored() -> bool:
            return "grpc_server" in kc.must("cm", f"{NAME}-workspace")["data"]["workspace.yaml"]

        wait_for("workspace restored", restored, timeout=30)
        wait_for("webserver Service recreated", lambda: kc.get("svc", f"{NAME}-webserver"), timeout=30)


def test_only_one_of_two_operator_replicas_acts(
    kc: Kubectl, volume: str, testbed: Testbed, tmp_path: Path
) -> None:
    leader = Operator(testbed, [kc.ns], tmp_path / "a.log", args=["--priority", "200"]).start()
    follower = Operator(testbed, [kc.ns], tmp_path / "b.log", args=["--priority", "100"]).start()
    try:
        assert kc.get("kopfpeering", "phlo-dagster-operator") is not None
        apply_quickstart(kc)
        kc.wait_condition("Ready", timeout=120)
        assert leader.metric("phlo_operator_reconciles_total") >= 1
        assert follower.metric("phlo_operator_reconciles_total") == 0, follower.tail()
        assert "Pausing operations in favour of" in follower.tail(200)
        leader.stop()
        kc.patch({"spec": {"webserver": {"replicas": 2}}})
        wait_for(
            "the follower takes over", lambda: kc.must("deploy", f"{NAME}-webserver")["spec"]["replicas"] == 2
        )
        assert follower.metric("phlo_operator_reconciles_total", result="ok") >= 1
    finally:
        follower.stop()
        leader.stop()


def test_fields_of_other_managers_are_left_alone(ready: Kubectl, operator: Operator) -> None:
    """Replicas an HPA owns, other managers' annotations and a rollout restart survive the operator's applies.

    The absences are checked once the pass of the change has ended (status.observedGeneration) and the
    operator is idle, not after a fixed sleep. Mutation run (2026-12-02): steps.hpa_targets returning no
    target failed it at `replicas == 3` (the operator set the spec's 1)."""
    kc = ready
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{NAME}-webserver"}
    cpu = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"{NAME}-webserver"},
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": cpu}],
        },
    }
    kc("apply", "-f", "-", input=json.dumps(hpa))

    def step() -> str | None:
        dep = kc.must("deploy", f"{NAME}-webserver")
        return dep["spec"]["template"]["metadata"]["annotations"].get("step")

    # Passes run one at a time per workflow: once a change made after the HPA is applied, every later pass
    # has seen the HPA (a pass that started before it cannot reset the replicas set below).
    kc.patch({"spec": {"webserver": {"podAnnotations": {"step": "1"}}}})
    wait_for("a pass that saw the HPA", lambda: step() == "1")
    kc("scale", "deploy", f"{NAME}-webserver", "--replicas=3")  # what the autoscaler does
    # Other managers' fields on the same object: an annotation and a `kubectl rollout restart` stamp.
    kc("annotate", "deploy", f"{NAME}-webserver", "team.example/oncall=ops")
    kc("rollout", "restart", "deploy", f"{NAME}-webserver")
    # A change that makes the operator apply the webserver Deployment again, with the HPA in place.
    kc.patch({"spec": {"webserver": {"podAnnotations": {"step": "2"}}}})
    wait_for("webserver template updated", lambda: step() == "2")
    wait_for("the pass of that generation ended", lambda: observed(kc))
    settled(operator)  # and the passes its own writes triggered
    dep = kc.must("deploy", f"{NAME}-webserver")
    assert dep["spec"]["replicas"] == 3
    assert dep["metadata"]["annotations"]["team.example/oncall"] == "ops"
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]
    kc.patch(
        {"spec": {"webserver": {"replicas": 1}}}
    )  # the spec's replicas do not fight the autoscaler either
    wait_for("the pass of the replicas change ended", lambda: observed(kc))
    settled(operator)
    assert kc.must("deploy", f"{NAME}-webserver")["spec"]["replicas"] == 3


def test_service_monitor_follows_the_spec_when_its_api_exists(
    kc: Kubectl, volume: str, testbed: Testbed, tmp_path: Path
) -> None:
    crd = monitoring_crd("ServiceMonitor", "servicemonitors")
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))
    testbed.kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")
    metrics = {"enabled": True, "serviceMonitor": {"enabled": True, "interval": "15s"}}
    with quickstart_ready(kc, testbed, tmp_path / "operator.log", metrics=metrics):
        monitor = wait_for("ServiceMonitor", lambda: kc.get("servicemonitor", f"{NAME}-webserver"))
        assert kc.must("pwf", NAME)["status"]["metrics"] == {"serviceMonitor": "Applied"}
        assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
        service = kc.must("svc", f"{NAME}-webserver")
        assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
            "http": "http",
            "metrics": "http",
        }
        labels = service["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        kc.patch({"spec": {"metrics": {"serviceMonitor": {"enabled": False}}}})
        wait_for("ServiceMonitor removed", lambda: kc.get("servicemonitor", f"{NAME}-webserver") is None)
        assert kc.must("pwf", NAME)["status"]["metrics"] == {"serviceMonitor": "Disabled"}


def test_api_discovery_notices_a_crd_installed_after_start(testbed: Testbed) -> None:
    """A ServiceMonitor CRD installed after the operator started is seen within the discovery TTL."""
    import kubernetes
    from phlo_operator.apply import DISCOVERY_TTL, Kube

    now = [0.0]
    kube = Kube(kubernetes.config.new_client_from_config(str(testbed.kubeconfig)), clock=lambda: now[0])
    group = f"audit{free_port()}.phlo.dev"
    assert not kube.has_api(f"{group}/v1", "widgets")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    testbed.kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        testbed.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")
        assert not kube.has_api(f"{group}/v1", "widgets")  # still cached
        now[0] += DISCOVERY_TTL + 1
        assert kube.has_api(f"{group}/v1", "widgets")
    finally:
        testbed.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_runs_in_another_namespace_get_rbac_and_config_there(
    kc: Kubectl, volume: str, testbed: Testbed, tmp_path: Path
) -> None:
    runs, runs2 = f"{kc.ns[:50]}-runs", f"{kc.ns[:50]}-runs2"
    testbed.kubectl("create", "namespace", runs)
    op = Operator(testbed, [kc.ns], tmp_path / "operator.log").start()
    try:
        apply_quickstart(kc, runLauncher={"namespace": runs, "jobTTLSeconds": 120})
        kc.wait_condition("Ready", timeout=120)
        other = Kubectl(testbed, runs)
        role = other.must("role", f"{NAME}-run-launcher")
        assert {"jobs"} <= {r for rule in role["rules"] for r in rule["resources"]}
        binding = other.must("rolebinding", f"{NAME}-run-launcher")
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": f"{NAME}-dagster", "namespace": kc.ns}
        ]
        instance = yaml.safe_load(other.must("cm", f"{NAME}-instance")["data"]["dagster.yaml"])
        assert instance["run_launcher"]["config"]["job_namespace"] == runs
        # Run pods there read the storage Secret through secretKeyRef: a copy lives in the run namespace.
        run_env = instance["run_launcher"]["config"]["run_k8s_config"]["container_config"]["env"]
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"] for e in run_env if e["name"].startswith("DAGSTER_PG_")
        }
        assert refs == {f"{NAME}-postgres-runs"}
        source = kc.must("secret", f"{NAME}-postgres")["data"]
        copy = other.must("secret", f"{NAME}-postgres-runs")
        assert copy["data"] == source and "ownerReferences" not in copy["metadata"]
        other("patch", "secret", f"{NAME}-postgres-runs", "--type=merge", "-p", '{"data": {"host": "eA=="}}')
        kc.patch({"metadata": {"annotations": {"touch": "1"}}})  # any event re-reconciles: drift repaired
        wait_for("copy repaired", lambda: other.must("secret", f"{NAME}-postgres-runs")["data"] == source)
        assert kc.must("pwf", NAME)["status"]["runLauncher"] == {"namespace": runs}
        # Moving runs to another namespace moves these objects: nothing is left behind in the old one.
        testbed.kubectl("create", "namespace", runs2)
        third = Kubectl(testbed, runs2)
        kc.patch({"spec": {"runLauncher": {"namespace": runs2}}})
        wait_for(
            "objects in the new run namespace", lambda: len(third.items("roles,rolebindings,cm,secrets")) == 4
        )
        wait_for(
            "old run namespace emptied", lambda: not other.items("roles,rolebindings,configmaps,secrets")
        )
        wait_for(
            "status records the new run namespace",
            lambda: (kc.must("pwf", NAME).get("status") or {}).get("runLauncher") == {"namespace": runs2},
        )
        # Passes may still be in flight (each status write is a watch event): the deletion handler waits for
        # the one running and starts no other, so none re-creates what cleanup deleted (once seen: a pass
        # that read the workflow before the deletion wrote runs2's objects after cleanup, orphaning them).
        kc("delete", "pwf", NAME, "--timeout=60s")
        wait_for(
            "cross-namespace objects cleaned up",
            lambda: not third.items("roles,rolebindings,configmaps,secrets"),
        )
    finally:
        op.stop()
        for ns in (runs, runs2):
            testbed.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_api_failures_degrade_without_crashing(kc: Kubectl, operator: Operator, volume: str) -> None:
    apply_quickstart(kc, runLauncher={"namespace": "no-such-namespace-for-runs"})
    wait_for("ApplyFailed", lambda: kc.condition("Degraded").get("reason") == "ApplyFailed")
    assert "no-such-namespace-for-runs" in kc.condition("Degraded")["message"]
    assert operator.metric("phlo_operator_api_errors_total", verb="patch", code="404") >= 1
    assert operator.metric("phlo_operator_reconciles_total", result="error") >= 1
    kc.patch({"spec": {"runLauncher": {"namespace": None}}})
    kc.wait_condition("Ready", timeout=120)
    assert kc.condition("Degraded")["status"] == "False"
    assert operator.proc is not None and operator.proc.poll() is None


_EXPLAIN_FIELD = re.compile(r"^  (\w+)\t<([^>]+)>")


def explain_fields(bed: Testbed, path: str) -> dict[str, tuple[str, str]]:
    """`kubectl explain phloworkflow.PATH`'s FIELDS section: field -> (type, description)."""
    lines = bed.kubectl("explain", f"phloworkflow.{path}").stdout.splitlines()
    return _fields(lines)


def _explainable(bed: Testbed, timeout: float = 60) -> None:
    """Established is not yet explainable: the API server publishes the CRD's OpenAPI a few seconds later
    (run alone, the explain test raced it: "couldn't find resource")."""
    deadline = time.monotonic() + timeout
    while bed.kubectl("explain", "phloworkflow.spec", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the PhloWorkflow CRD never became explainable"
        time.sleep(1)


def _fields(lines: list[str]) -> dict[str, tuple[str, str]]:
    fields: dict[str, tuple[str, str]] = {}
    current: str | None = None
    in_fields = False
    for line in lines:
        if line.startswith("FIELDS:"):
            in_fields = True
            continue
        match = _EXPLAIN_FIELD.match(line) if in_fields else None
        if match:
            current = match.group(1)
            fields[current] = (match.group(2), "")
        elif current and line.startswith("    ") and line.strip():
            kind, text = fields[current]
            fields[current] = (kind, f"{text} {line.strip()}".strip())
    return fields


def test_children_the_api_server_refuses_degrade_without_a_retry_storm(
    kc: Kubectl, operator: Operator, volume: str
) -> None:
    """Mutation run (2026-12-02): a timestamp appended to the apply error the status reports (so every
    failed pass rewrites status and re-triggers itself) failed it: the operator never went idle."""
    # Affinity is passed through opaquely; the API server refuses it in every pod template, listing the
    # errors in random order. Status must settle (not flap and re-trigger), retries must back off.
    apply_quickstart(kc, affinity={"nodeAffinity": "nope", "podAntiAffinity": 7})
    wait_for("ApplyFailed", lambda: kc.condition("Degraded").get("reason") == "ApplyFailed")
    assert "affinity" in kc.condition("Degraded")["message"]
    assert kc.condition("Ready") == {**kc.condition("Ready"), "status": "False", "reason": "ApplyFailed"}
    assert re.search(rf"{NAME}\s+False\s+ApplyFailed", kc("get", "pwf", NAME).stdout)
    # Observed, not slept on: the passes the failure itself triggered end and the operator goes idle (a
    # storm never does), then the backoff timer's retry runs and fails the same way without rewriting status.
    settled(operator, quiet=3, timeout=30)
    errors = operator.metric("phlo_operator_reconciles_total", result="error")
    version = kc.must("pwf", NAME)["metadata"]["resourceVersion"]
    wait_for(
        "the retry of the backoff timer",
        lambda: operator.metric("phlo_operator_reconciles_total", result="error") > errors,
        timeout=100,
    )
    settled(operator, quiet=3, timeout=30)
    assert operator.metric("phlo_operator_reconciles_total", result="error") - errors <= 1
    assert kc.must("pwf", NAME)["metadata"]["resourceVersion"] == version  # no status churn
    assert operator.proc is not None and operator.proc.poll() is None
    kc("patch", "pwf", NAME, "--type=json", "-p", '[{"op": "remove", "path": "/spec/affinity"}]')
    kc.wait_condition("Ready", timeout=120)


@pytest.mark.usefixtures("crds")
def test_kubectl_explain_documents_every_field_recursively(testbed: Testbed) -> None:
    schema = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    checked: list[str] = []
    _explainable(testbed)

    def walk(path: str, node: dict[str, Any]) -> None:
        node = node.get("items", node) if node.get("type") == "array" else node
        props = node.get("properties") or {}
        if not props:
            return
        shown = explain_fields(testbed, path)
        assert set(shown) == set(props), f"kubectl explain {path}: {sorted(shown)} != {sorted(props)}"
        for field, (_kind, description) in shown.items():
            assert description, f"kubectl explain phloworkflow.{path}.{field} shows no description"
            checked.append(f"{path}.{field}")
            walk(f"{path}.{field}", props[field])

    walk("spec", schema["properties"]["spec"])
    walk("status", schema["properties"]["status"])
    assert len(checked) > 60, checked  # the walk really went down every level
    assert "spec.storage.postgres.deletionPolicy" in checked and "spec.env.valueFrom" in checked
    port = testbed.kubectl("explain", "phloworkflow.spec.webserver.port").stdout
    assert "HTTP port (UI, /graphql, /metrics)." in port


def test_any_legal_cr_name_gets_valid_children(kc: Kubectl, operator: Operator) -> None:
    name = "team.analytics." + "very-long-workflow-name-" * 9 + "end"  # 235 characters, dots included
    kc(
        "create",
        "secret",
        "generic",
        "pg",
        *(f"--from-literal={k}=x" for k in ("host", "user", "password", "database")),
        "--from-literal=port=5432",  # the operator checks that it is a port number
    )
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["storage"] = {"postgres": {"secretName": "pg"}}
    kc("apply", "-f", "-", input=json.dumps(doc))
    kc("wait", "--for=condition=Ready", f"pwf/{name}", "--timeout=120s")
    children = kc.items(
        "deployments,services,configmaps,jobs", selector="app.kubernetes.io/managed-by=phlo-dagster-operator"
    )
    assert len([c for c in children if c["kind"] == "Deployment"]) == 3
    for child in children:
        assert len(child["metadata"]["name"]) <= 47 and "." not in child["metadata"]["name"]
        assert child["metadata"]["ownerReferences"][0]["name"] == name
