"""Faults on the test bed, with counts (issue 16, item 2).

- The operator killed with SIGKILL at random moments while workflows reconcile, then started again, over and
  over: the end state equals that of a clean run of the same workflows (the same children, no duplicate
  dbt-compile Job, no orphan, every status observed and Ready).
- kube-apiserver and etcd restarted under a running operator: it recovers without being restarted (same
  process), finishes what it was doing and reconciles a workflow applied after the last restart.

`make test` runs small counts; `make reliability` the ones RELIABILITY.md quotes (PHLO_FAULT_WORKFLOWS,
PHLO_FAULT_KILLS, PHLO_FAULT_RESTARTS).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_operator import Operator, wait_for
from tests.testbed.cluster import Testbed
from tests.testbed.processes import Process, alive, spawn

pytestmark = [pytest.mark.integration, pytest.mark.binaries]  # a private control plane too

WORKFLOWS = int(os.environ.get("PHLO_FAULT_WORKFLOWS", "6"))
KILLS = int(os.environ.get("PHLO_FAULT_KILLS", "5"))
RESTARTS = int(os.environ.get("PHLO_FAULT_RESTARTS", "2"))
MANAGED = "app.kubernetes.io/managed-by=phlo-dagster-operator"
CHILD_KINDS = (
    "deployments,statefulsets,services,configmaps,secrets,jobs,serviceaccounts,roles,rolebindings,"
    "networkpolicies,poddisruptionbudgets,persistentvolumeclaims"
)
ROOT = Path(__file__).resolve().parents[2]


def workflow_docs(count: int, round_: int = 0) -> list[dict[str, Any]]:
    """count quickstart-like workflows with dbt, each on an external storage Secret of its own; round_ is an
    env value, so each round is a spec change (a new generation, a rollout) for the operator to work on."""
    docs: list[dict[str, Any]] = []
    for i in range(count):
        name = f"wf{i:03d}"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{name}-pg"},
                "type": "Opaque",
                "stringData": {
                    "host": "db.example",
                    "port": "5432",
                    "user": "dagster",
                    "password": f"fault-password-{name}",
                    "database": "dagster",
                },
            }
        )
        docs.append(
            {
                "apiVersion": "phlo.dev/v1alpha1",
                "kind": "PhloWorkflow",
                "metadata": {"name": name},
                "spec": {
                    "image": "phlo-dagster:0.4.0",
                    "storage": {"postgres": {"secretName": f"{name}-pg"}},
                    "dbt": {"enabled": True, "projectDir": "/app/dbt"},
                    "env": [{"name": "PHLO_FAULT_ROUND", "value": str(round_)}],
                },
            }
        )
    return docs


def apply(bed: Testbed, namespace: str, docs: list[dict[str, Any]]) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    bed.kubectl("-n", namespace, "apply", "-f", "-", input=body, timeout=120)


def workflows(bed: Testbed, namespace: str) -> dict[str, dict[str, Any]]:
    out = bed.kubectl("-n", namespace, "get", "pwf", "-o", "json", timeout=30, check=False)
    if out.returncode:
        return {}
    return {i["metadata"]["name"]: i for i in json.loads(out.stdout)["items"]}


def condition(cr: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (cr.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def settled_ready(cr: dict[str, Any]) -> bool:
    """Ready=True, observed at the current generation (status.observedGeneration and the condition's own)."""
    ready = condition(cr, "Ready")
    generation = cr["metadata"]["generation"]
    return (
        ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
        and (cr.get("status") or {}).get("observedGeneration") == generation
    )


def all_ready(bed: Testbed, namespace: str, names: set[str]) -> bool:
    found = workflows(bed, namespace)
    return set(found) >= names and all(settled_ready(found[n]) for n in names)


def _decided(obj: dict[str, Any], namespace: str) -> str:
    """What the operator decides about a child: its spec/data and its labels and annotations (the server's
    own fields, the namespace and checksums over namespaced content left out)."""
    kind = obj["kind"]
    meta = obj["metadata"]
    mine = {
        "labels": meta.get("labels", {}),
        "annotations": {
            k: v
            for k, v in meta.get("annotations", {}).items()
            if not k.startswith("deployment.kubernetes.io/")
        },
    }
    if kind == "Job":
        template = obj["spec"]["template"]
        containers = [
            {"image": c.get("image"), "args": c.get("args"), "command": c.get("command")}
            for c in template["spec"]["containers"]
        ]
        mine["spec"] = {"containers": containers}
    elif kind == "Secret":
        mine["data"] = sorted(obj.get("data", {}))  # the keys only: values may be generated
    elif kind in ("ConfigMap",):
        mine["data"] = obj.get("data", {})
    elif kind == "Service":
        mine["spec"] = {k: v for k, v in obj["spec"].items() if k not in ("clusterIP", "clusterIPs")}
    elif kind == "PersistentVolumeClaim":
        mine["spec"] = {k: v for k, v in obj["spec"].items() if k not in ("volumeName",)}
    elif "spec" in obj:
        mine["spec"] = obj["spec"]
    for key in ("rules", "roleRef", "subjects"):
        if key in obj:
            mine[key] = obj[key]
    template = (mine.get("spec") or {}).get("template")
    if isinstance(template, dict):
        # A checksum over content that names the namespace differs between two namespaces; the content
        # itself (the ConfigMaps) is compared directly.
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        for key in [k for k in annotations if k.endswith("checksum")]:
            annotations[key] = "<checksum>"
    return json.dumps(mine, sort_keys=True).replace(namespace, "<ns>")


def _digest(obj: dict[str, Any], namespace: str) -> str:
    return hashlib.sha256(_decided(obj, namespace).encode()).hexdigest()[:16]


def children(bed: Testbed, namespace: str) -> dict[tuple[str, str], str]:
    """Every object the operator manages in namespace: (kind, name) -> digest of what it decided."""
    out = bed.kubectl("-n", namespace, "get", CHILD_KINDS, "-l", MANAGED, "-o", "json", timeout=60)
    return {
        (i["kind"], i["metadata"]["name"]): _digest(i, namespace) for i in json.loads(out.stdout)["items"]
    }


def differences(bed: Testbed, clean_ns: str, killed_ns: str) -> dict[str, Any]:
    """Children that differ between the two runs: (kind, name) -> (clean, killed), a side None if missing;
    a differing object is shown in full."""
    want, got = children(bed, clean_ns), children(bed, killed_ns)
    diff: dict[str, Any] = {}
    for key in sorted(set(want) | set(got)):
        if want.get(key) != got.get(key):
            kind, name = key
            sides = []
            for ns, side in ((clean_ns, want), (killed_ns, got)):
                if key not in side:
                    sides.append(None)
                    continue
                obj = json.loads(bed.kubectl("-n", ns, "get", kind, name, "-o", "json", timeout=30).stdout)
                sides.append(json.loads(_decided(obj, ns)))
            clean, killed = sides
            if clean is None or killed is None:
                diff[f"{kind}/{name}"] = (
                    "only in the killed run" if clean is None else "missing in the killed run"
                )
            else:
                diff[f"{kind}/{name}"] = _leaf_differences(clean, killed)
    return diff


def _leaf_differences(a: Any, b: Any, path: str = "") -> dict[str, Any]:
    """path -> (clean, killed) for each leaf that differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        found: dict[str, Any] = {}
        for k in sorted(set(a) | set(b)):
            found.update(_leaf_differences(a.get(k), b.get(k), f"{path}.{k}"))
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        found = {}
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found.update(_leaf_differences(x, y, f"{path}[{i}]"))
        return found
    return {} if a == b else {path: (a, b)}


def status_shape(cr: dict[str, Any]) -> dict[str, Any]:
    """The status a user reads, without times and without what differs between two clean runs."""
    status = cr.get("status") or {}
    conditions = sorted((c["type"], c["status"], c.get("reason")) for c in status.get("conditions", []))
    return {"conditions": conditions, "keys": sorted(status)}


@pytest.fixture
def two_namespaces(testbed: Testbed, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    stem = f"faults-{random.randrange(16**6):06x}"
    names = (f"{stem}-clean", f"{stem}-killed")
    for name in names:
        testbed.kubectl("create", "namespace", name)
    try:
        yield names
    finally:
        for name in names:
            testbed.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def test_operator_killed_at_random_moments_ends_as_a_clean_run(
    testbed: Testbed, crds: None, two_namespaces: tuple[str, str], tmp_path: Path, record_property: Any
) -> None:
    """SIGKILL the operator KILLS times, each at a random moment 0-3 s after it is healthy, while WORKFLOWS
    workflows reconcile a spec change applied just before it started; then start it once more. Compared with
    the same workflows under an operator never killed: the same children with the same content, one
    dbt-compile Job per workflow, statuses of the same shape, all Ready. `--standalone`: a killed replica's
    stale peering record would pause each successor for the peering lifetime (what peering is for;
    test_only_one_of_two_operator_replicas_acts covers it)."""
    clean_ns, killed_ns = two_namespaces
    docs = workflow_docs(WORKFLOWS, KILLS - 1)  # where the killed run ends
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "PhloWorkflow"}
    rng = random.Random(int(os.environ.get("PHLO_FAULT_SEED", "16")))

    started = time.monotonic()
    clean = Operator(testbed, [clean_ns], tmp_path / "clean.log", args=["--standalone"]).start()
    try:
        apply(testbed, clean_ns, docs)
        wait_for(
            "the clean run's workflows Ready",
            lambda: all_ready(testbed, clean_ns, names),
            timeout=600,
            every=2,
        )
    finally:
        clean.stop()
    clean_seconds = time.monotonic() - started

    ready_at_kill: list[int] = []
    for kill in range(KILLS):
        apply(testbed, killed_ns, workflow_docs(WORKFLOWS, kill))  # a change for the next operator to work on
        op = Operator(testbed, [killed_ns], tmp_path / f"killed-{kill}.log", args=["--standalone"]).start()
        time.sleep(rng.uniform(0, 3))  # the fault's moment, not a wait for anything
        assert op.proc is not None and op.proc.poll() is None, op.tail()
        op.proc.kill()
        op.proc.wait()
        op.log.close()
        found = workflows(testbed, killed_ns)
        ready_at_kill.append(sum(settled_ready(found[n]) for n in names if n in found))
    final = Operator(testbed, [killed_ns], tmp_path / "final.log", args=["--standalone"]).start()
    try:
        wait_for(
            "the killed run's workflows Ready",
            lambda: all_ready(testbed, killed_ns, names),
            timeout=600,
            every=2,
        )
        deadline = time.monotonic() + 120  # the last writes of the final operator may still be landing
        while differences(testbed, clean_ns, killed_ns) and time.monotonic() < deadline:
            time.sleep(2)
    finally:
        final.stop()

    assert differences(testbed, clean_ns, killed_ns) == {}
    got = children(testbed, killed_ns)
    jobs = [name for kind, name in got if kind == "Job"]
    kinds = sorted(n.rsplit("-", 2)[1] for n in jobs)  # <workflow>-dbt-<hash>, <workflow>-version-<hash>
    assert kinds == sorted(["dbt", "version"] * WORKFLOWS), (
        f"one dbt and one version Job per workflow: {sorted(jobs)}"
    )
    clean_status = {n: status_shape(cr) for n, cr in workflows(testbed, clean_ns).items()}
    killed_status = {n: status_shape(cr) for n, cr in workflows(testbed, killed_ns).items()}
    assert killed_status == clean_status
    record_property("faults", {"kills": KILLS, "workflows": WORKFLOWS, "ready_at_each_kill": ready_at_kill})
    sys.stderr.write(
        f"faults: {KILLS} SIGKILLs over {WORKFLOWS} workflows (Ready at each kill: {ready_at_kill}); "
        f"{len(got)} children equal to the clean run's (clean run {clean_seconds:.0f} s)\n"
    )


# -- restarts of the control plane under a running operator


def _argv(process: Process) -> list[str]:
    raw = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    return [a.decode() for a in raw.split(b"\0") if a]


def restart(bed: Testbed, name: str) -> None:
    """SIGKILL one control-plane process of bed and start it again with the same command line and log."""
    index = next(i for i, p in enumerate(bed.processes) if p.name == name)
    process = bed.processes[index]
    argv = _argv(process)
    os.kill(process.pid, 9)
    wait_for(f"{name} to exit", lambda: not alive(process), timeout=30)
    try:
        os.waitpid(process.pid, os.WNOHANG)
    except ChildProcessError:
        pass
    bed.processes[index] = spawn(name, argv, process.log, cwd=bed.directory, executable=process.executable)


def api_ready(bed: Testbed) -> bool:
    try:
        return bed._get("/readyz", 3) == "ok"
    except Exception:
        return False


def test_operator_recovers_from_api_server_and_etcd_restarts_without_a_restart(
    private_bed: Testbed, tmp_path: Path
) -> None:
    """RESTARTS times each: kill -9 kube-apiserver (then etcd) right after a batch of workflows is applied,
    start it again. The operator process lives through all of it and brings every workflow to Ready,
    including one applied after the last restart (its watches came back)."""
    bed = private_bed
    namespace = "faults"
    bed.kubectl("create", "namespace", namespace)
    op = Operator(bed, [namespace], tmp_path / "operator.log", args=["--standalone"]).start()
    try:
        pid = op.proc.pid if op.proc else 0
        expected: set[str] = set()
        batch = 0
        for component in ("kube-apiserver", "etcd"):
            for _ in range(RESTARTS):
                docs = [
                    {**d, "metadata": {"name": d["metadata"]["name"].replace("wf", f"b{batch}-")}}
                    for d in workflow_docs(2)
                ]
                for d in docs:
                    if d["kind"] == "PhloWorkflow":
                        d["spec"]["storage"]["postgres"]["secretName"] = d["metadata"]["name"] + "-pg"
                apply(bed, namespace, docs)
                expected |= {d["metadata"]["name"] for d in docs if d["kind"] == "PhloWorkflow"}
                batch += 1
                restart(bed, component)
                wait_for(
                    f"kube-apiserver ready after restarting {component}", lambda: api_ready(bed), timeout=180
                )
        last = workflow_docs(1)
        last[0]["metadata"]["name"] = "after-pg"
        last[1]["metadata"]["name"] = "after"
        last[1]["spec"]["storage"]["postgres"]["secretName"] = "after-pg"
        apply(bed, namespace, last)
        expected.add("after")
        wait_for(
            "every workflow Ready after the restarts",
            lambda: all_ready(bed, namespace, expected),
            timeout=600,
            every=2,
        )
        assert op.proc is not None and op.proc.poll() is None and op.proc.pid == pid, op.tail()
        # A kopf watcher that gave up on the API server ends for good ("Watcher for ... has failed"): its
        # resource is never watched again. None may have, however long the API server was away.
        log = op.log_path.read_text(errors="replace")
        retries = log.count("failed; will retry")
        assert "has failed" not in log and "escalating" not in log, [
            line for line in log.splitlines() if "has failed" in line or "escalating" in line
        ][:5]
        sys.stderr.write(
            f"faults: kube-apiserver and etcd restarted {RESTARTS} times each; the operator (pid {pid}) "
            f"brought {len(expected)} workflows to Ready without a restart; {retries} of kopf's requests "
            "retried, none given up\n"
        )
    finally:
        op.stop()
