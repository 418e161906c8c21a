"""The operator on a real node: workflows to Ready vs. applying the same objects directly; a spec change.

    .venv/bin/python bench/bench_realnode.py [--sizes 1,5] [--repeats 3] [--large-repeats 2]
                                             [--changes 2] [--fresh] [--markdown PATH]

On the real node of tests/testbed/realnode.py (kubelet, containerd, runc: the one `make realnode-up` left
running, else one of its own, stopped at the end), with the images of `make images` loaded. Every workflow is
the quickstart's image with managed PostgreSQL (a StatefulSet on a volume of the bed's provisioner, deleted
with the workflow) and dbt off (its compile Job would gate the operator's code server on a Job the direct side
has no reason to wait for). Per size and repeat, interleaved (the side that goes first alternates):

- operator: the chart's operator (`helm install`, in-cluster, one release for the whole run) watches its
  namespace; N PhloWorkflows are applied in one `kubectl apply`; timed until every one is Ready at its
  generation (the operator's Ready: every component's pods Running with their probes passing and the
  webserver serving the code location), and until every pod of theirs is Running and Ready.
- direct: what the operator's own pure renderers produce for the same N specs (owner references dropped,
  plus the PostgreSQL Secret the operator generates once), applied in one `kubectl apply --server-side` to a
  fresh namespace; timed until every Deployment is available and every StatefulSet's pod Ready (pods Running,
  probes passing).

Each side's objects are deleted, and gone, before the next one starts. Then the spec change: one workflow
Ready, a run of raw/orders succeeds; its `spec.codeServer.image` is changed to a new tag of the same image
(what `kubectl set image` does to a Deployment: a new image, same code); timed until the new code-server pod
is Ready, until the webserver has reloaded the code location, and until the first run launched after that
succeeds in a pod of the new image.

The results are kept in bench/results/realnode.json (committed with BENCHMARKS.md): a size measured now
replaces that size there, the spec changes are replaced only when measured (`--changes 0` keeps them), and
each part names the command and date that measured it (`--fresh` starts over). What a run showed besides
the figures is in bench/realnode_notes.md, appended to the section.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from phlo_operator import model as m  # noqa: E402
from phlo_operator.render import Workflow, postgres, render_all  # noqa: E402

from tests.e2e import flow  # noqa: E402
from tests.e2e.flow import Cluster  # noqa: E402
from tests.testbed import cluster, realnode  # noqa: E402
from tests.testbed.realnode import RealNode  # noqa: E402

WORK = ROOT / ".bench" / "realnode"
VERSION = flow.version()
IMAGE = f"phlo-dagster:{VERSION}"
OPERATOR_NAMESPACE = "bench-operator"
ASSET = "raw/orders"
WORKSPACE = """
query {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus updatedTimestamp } }
  }
}
"""


def say(message: str) -> None:
    sys.stderr.write(f"bench-realnode {time.strftime('%H:%M:%S')}: {message}\n")
    sys.stderr.flush()


# -- pure parts -----------------------------------------------------------------------------------------
def workflow_spec(image: str = IMAGE) -> dict[str, Any]:
    """The quickstart (examples/quickstart/workflow.yaml) with dbt off and its PostgreSQL deleted with it."""
    return {
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "workflows": {"path": "/app/workflows"},
        "storage": {"postgres": {"managed": True, "deletionPolicy": "Delete"}},
        "runLauncher": {"jobTTLSeconds": 3600},
        "env": [
            {"name": "PHLO_LOG_LEVEL", "value": "INFO"},
            {"name": "PHLO_DATA_DIR", "value": "/tmp"},
        ],
    }


def direct_objects(name: str, namespace: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator would apply for this workflow, by its own pure renderers, without owner (the owner
    does not exist on the direct side), with the PostgreSQL Secret it would generate once."""
    wf = Workflow(name, namespace, "00000000-0000-0000-0000-000000000000", m.parse_spec(spec), 1)
    out = [postgres.secret(wf, f"bench-{name}")]
    out += render_all(wf).all_objects()
    objects = []
    for obj in out:
        obj = json.loads(json.dumps(obj))
        obj["metadata"].pop("ownerReferences", None)
        objects.append(obj)
    return objects


def workloads_ready(items: list[dict[str, Any]], expected: int) -> bool:
    """Every Deployment available and every StatefulSet's replicas Ready, at their generation (at least
    `expected` of them)."""
    ready = 0
    for obj in items:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        want = spec.get("replicas", 1)
        if status.get("observedGeneration") != obj["metadata"].get("generation"):
            return False
        if obj["kind"] == "Deployment":
            ok = status.get("availableReplicas", 0) >= want and status.get("updatedReplicas", 0) >= want
        else:
            ok = status.get("readyReplicas", 0) >= want and status.get("updatedReplicas", 0) >= want
        if not ok:
            return False
        ready += 1
    return ready >= expected


def ready_workflows(items: list[dict[str, Any]]) -> set[str]:
    ready = set()
    for cr in items:
        generation = cr["metadata"].get("generation")
        status = cr.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                if (
                    cond.get("observedGeneration", generation)
                    == generation
                    == status.get("observedGeneration")
                ):
                    ready.add(cr["metadata"]["name"])
    return ready


def med(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# -- the node side --------------------------------------------------------------------------------------
def wait_until(what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = probe()
        except Exception as error:  # not observable yet (a kubectl under load, a port-forward): poll again
            value, last = None, error
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench-realnode: timed out after {timeout:.0f}s waiting for {what} ({last})")
        time.sleep(every)


def workloads(c: Cluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", "deployments,statefulsets", "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    return list(json.loads(c.kubectl(*args, timeout=60).stdout)["items"])


def pods_gone(c: Cluster, namespace: str, selector: str) -> bool:
    out = c.kubectl("get", "pods,pvc", "-n", namespace, "-l", selector, "-o", "name", timeout=60).stdout
    return not out.strip()


def run_operator(c: Cluster, n: int, tag: str) -> dict[str, Any]:
    names = [f"wf{i}-{tag}" for i in range(n)]
    docs = [
        {"apiVersion": m.API_VERSION, "kind": m.KIND, "metadata": {"name": name}, "spec": workflow_spec()}
        for name in names
    ]
    selector = f"app.kubernetes.io/instance in ({','.join(names)})"
    started = time.monotonic()
    c.k("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    marks: dict[str, float] = {}

    def done() -> bool:
        now = time.monotonic()
        if "pods" not in marks and workloads_ready(workloads(c, c.namespace, selector), 4 * n):
            marks["pods"] = now
        if "ready" not in marks:
            items = c.get(m.PLURAL)["items"]
            if ready_workflows([i for i in items if i["metadata"]["name"] in names]) >= set(names):
                marks["ready"] = now
        return len(marks) == 2

    wait_until(f"{n} PhloWorkflows Ready", done, 1800)
    result = {"seconds": marks["ready"] - started, "pods_s": marks["pods"] - started}
    say(f"{tag}: operator {n} Ready in {result['seconds']:.1f}s (pods Ready at {result['pods_s']:.1f}s)")
    c.k("delete", m.PLURAL, *names, "--wait=true", "--timeout=600s", timeout=660)
    wait_until("the workflows' pods and claims gone", lambda: pods_gone(c, c.namespace, selector), 600, 2)
    return result


def run_direct(c: Cluster, n: int, tag: str) -> dict[str, Any]:
    namespace = f"bench-direct-{tag}"
    c.kubectl("create", "namespace", namespace)
    objects = [o for i in range(n) for o in direct_objects(f"wf{i}-{tag}", namespace, workflow_spec())]
    expected = sum(1 for o in objects if o["kind"] in ("Deployment", "StatefulSet"))
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    started = time.monotonic()
    c.kubectl("apply", "--server-side", "--field-manager=phlo-bench", "-f", "-", input=doc, timeout=300)
    wait_until(
        f"{expected} workloads Ready",
        lambda: workloads_ready(workloads(c, namespace), expected),
        1800,
    )
    took = time.monotonic() - started
    say(f"{tag}: direct {n} ({len(objects)} objects) Ready in {took:.1f}s")
    c.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=600s", timeout=660)
    return {"seconds": took, "objects": len(objects)}


def location_reloaded(base: str, since: float) -> bool:
    found = flow.graphql(base, WORKSPACE)["workspaceOrError"]
    entries = found.get("locationEntries") or []
    return bool(entries) and all(
        e["loadStatus"] == "LOADED" and e["updatedTimestamp"] > since for e in entries
    )


def run_image(c: Cluster, run_id: str) -> str:
    pods = flow.run_pods(c, run_id)
    return str(pods[0]["spec"]["containers"][0]["image"]) if pods else ""


def one_change(node: RealNode, c: Cluster, base: str, name: str, image: str) -> dict[str, Any]:
    """spec.codeServer.image of workflow `name` set to `image` (a new tag of the same image); the times from
    the patch until the new code-server pod is Ready, the location reloaded, a run on it succeeded."""
    source, target = f"docker.io/library/{IMAGE}", f"docker.io/library/{image}"
    tagged = node.ctr("images", "tag", "--force", source, target)
    if tagged.returncode != 0:
        raise SystemExit(f"bench-realnode: ctr images tag: {tagged.stderr}")
    since, started = time.time(), time.monotonic()
    c.k("patch", m.PLURAL, name, "--type=merge", "-p", json.dumps({"spec": {"codeServer": {"image": image}}}))

    def rolled() -> bool:
        pods = flow.pods_of(c, "code-server", name)
        new = [p for p in pods if p["spec"]["containers"][0]["image"] == image]
        return len(new) == len(pods) == 1 and flow.pod_ready(new[0])

    wait_until("the new code-server pod Ready", rolled, 900)
    rolled_s = time.monotonic() - started
    wait_until("the webserver to reload the location", lambda: location_reloaded(base, since), 600, 1)
    reloaded_s = time.monotonic() - started
    for attempt in range(1, 4):
        run = flow.launch(base, ASSET)
        status = flow.wait_run(base, run, 900)
        ran_on = run_image(c, run)
        if status == "SUCCESS" and ran_on.endswith(image):
            return {
                "rolled_s": rolled_s,
                "reloaded_s": reloaded_s,
                "run_s": time.monotonic() - started,
                "attempts": attempt,
            }
        say(f"run {run} {status} on {ran_on}, not the new image {image}")
    raise SystemExit(f"bench-realnode: no run on {image} after 3 attempts")


def spec_changes(node: RealNode, c: Cluster, changes: int) -> list[dict[str, Any]]:
    """One workflow; its code server's image changed `changes` times, each to a new tag of the same image."""
    name = "change"
    doc = {"apiVersion": m.API_VERSION, "kind": m.KIND, "metadata": {"name": name}, "spec": workflow_spec()}
    c.k("apply", "-f", "-", input=json.dumps(doc))
    c.k("wait", "--for=condition=Ready", f"pwf/{name}", "--timeout=20m", timeout=1260)
    results = []
    with c.port_forward(f"svc/{name}-webserver", 3000) as base:
        wait_until("the code location", lambda: ASSET in flow.asset_keys(base), 600, 2)
        first = flow.launch(base, ASSET)
        if flow.wait_run(base, first, 900) != "SUCCESS":
            raise SystemExit(f"bench-realnode: the first run failed: {flow.run_messages(base, first)[-10:]}")
        for i in range(changes):
            result = one_change(node, c, base, name, f"phlo-dagster:bench-change-{os.getpid()}-{i}")
            say(f"change {i}: {result}")
            results.append(result)
    c.k("delete", m.PLURAL, name, "--wait=true", "--timeout=600s", timeout=660)
    return results


def bench(args: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    argv = sys.argv[1:]
    if "--markdown" in argv:  # bench/run.py's temporary file says nothing about the run
        at = argv.index("--markdown")
        argv = argv[:at] + argv[at + 2 :]
    command = shlex.join(["bench/bench_realnode.py", *argv])
    results: dict[str, Any] = {"sizes": {}, "changes": []}
    if not args.fresh and args.json.exists():  # what an earlier run measured is kept unless measured again
        results = {**results, **json.loads(args.json.read_text())}
    measured = f"{when}, `{command}` (load average {load} at its start)"
    node = realnode.attach()
    own = node is None
    if node is None:
        say("no running real node (make realnode-up): starting one for this run")
        node = realnode.start()
    try:
        realnode.load_images(node)
        c = Cluster(node.bed.kubeconfig, OPERATOR_NAMESPACE, WORK, cluster.BIN_DIR)
        c.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
        flow.install_operator(c)
        for n in args.sizes:
            runs: list[dict[str, Any]] = []
            for r in range(args.repeats if n == 1 else args.large_repeats):
                tag = f"{n}x{r}"
                order = ("operator", "direct") if r % 2 == 0 else ("direct", "operator")
                pair: dict[str, Any] = {}
                for side in order:
                    pair[side] = run_operator(c, n, tag) if side == "operator" else run_direct(c, n, tag)
                pair["ratio"] = pair["operator"]["seconds"] / pair["direct"]["seconds"]
                pair["pods_ratio"] = pair["operator"]["pods_s"] / pair["direct"]["seconds"]
                runs.append(pair)
                results["sizes"][str(n)] = {"runs": runs, "measured": measured}
                save(args.json, results)
            results["sizes"][str(n)]["load_after"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
            save(args.json, results)
        if args.changes:
            results["changes"] = spec_changes(node, c, args.changes)
            results["changes_measured"] = measured
            results["changes_load_after"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
            save(args.json, results)
    finally:
        if own:
            realnode.stop_recorded()
    return results


def save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def measured_by(results: dict[str, Any]) -> list[str]:
    """The runs behind what is shown, each once (sizes first, then the spec changes), with the load average
    at their end."""
    seen: list[str] = []
    parts = [(e.get("measured"), e.get("load_after")) for _, e in sorted_sizes(results)]
    if results.get("changes"):
        parts.append((results.get("changes_measured"), results.get("changes_load_after")))
    for what, after in parts:
        if not what:
            continue
        text = what + (f", load average {after} at its end" if after else "")
        if text not in seen:
            seen.append(text)
    return seen


def sorted_sizes(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return sorted(results.get("sizes", {}).items(), key=lambda kv: int(kv[0]))


def size_row(size: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Medians of a size's pairs, or the published row of one whose raw results were not kept."""
    if "runs" not in entry:
        return dict(entry["row"])
    runs = entry["runs"]
    return {
        "repeats": len(runs),
        "operator_s": med(r["operator"]["seconds"] for r in runs),
        "pods_s": med(r["operator"]["pods_s"] for r in runs),
        "direct_s": med(r["direct"]["seconds"] for r in runs),
        "ratio": med(r["ratio"] for r in runs),
        "ratios": [r["ratio"] for r in runs],
        "pods_ratio": med(r["pods_ratio"] for r in runs),
    }


def markdown(results: dict[str, Any], notes: str = "") -> str:
    lines = [
        "## The operator on a real node",
        "",
        (__doc__ or "").split("\n\n", 2)[2].strip(),
        "",
        "Measured by: " + "; ".join(measured_by(results)) + ".",
        "",
        "| workflows (pods) | operator to Ready | operator, pods Ready | direct, pods Ready "
        "| ratio Ready / direct (per pair) | ratio pods / direct |",
        "|---:|---:|---:|---:|---|---:|",
    ]
    rows = [(size, size_row(size, entry)) for size, entry in sorted_sizes(results)]
    for size, row in rows:
        per_pair = ", ".join(f"{x:.2f}" for x in row["ratios"])
        lines.append(
            f"| {size} ({4 * int(size)}) | {row['operator_s']:.1f} s | {row['pods_s']:.1f} s "
            f"| {row['direct_s']:.1f} s | **{row['ratio']:.2f}x** ({per_pair}) | {row['pods_ratio']:.2f}x |"
        )
    repeats = ", ".join(f"{row['repeats']} at {size}" for size, row in rows)
    lines += ["", f"Medians of the pairs ({repeats}); the ratios are per pair, side by side in the same run."]
    carried = [(size, e["source"]) for size, e in sorted_sizes(results) if e.get("source")]
    if carried:
        lines += [
            "",
            f"Carried over (workflows: {', '.join(s for s, _ in carried)}) from "
            + "; ".join(sorted({src for _, src in carried}))
            + ".",
        ]
    changes = results.get("changes") or []
    if changes:
        lines += [
            "",
            "| spec change (`spec.codeServer.image`) | new code-server pod Ready | location reloaded "
            "| first run on the new image SUCCESS | runs launched |",
            "|---|---:|---:|---:|---:|",
        ]
        for i, ch in enumerate(changes):
            lines.append(
                f"| change {i + 1} | {ch['rolled_s']:.1f} s | {ch['reloaded_s']:.1f} s "
                f"| **{ch['run_s']:.1f} s** | {ch['attempts']} |"
            )
        median = med(ch["run_s"] for ch in changes)
        lines += [
            "",
            f"Median from the patch to the first run on the new code: {median:.1f} s (the run itself "
            "included: launched once the webserver had reloaded the location, its pod's image checked).",
        ]
    if notes.strip():
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


NOTES = Path(__file__).with_name("realnode_notes.md")
RESULTS = Path(__file__).with_name("results") / "realnode.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1,5", type=lambda s: [int(x) for x in s.split(",") if x])
    parser.add_argument("--repeats", type=int, default=3, help="pairs with 1 workflow (default 3)")
    parser.add_argument("--large-repeats", type=int, default=2, help="pairs per larger size (default 2)")
    parser.add_argument("--changes", type=int, default=2, help="spec changes timed (default 2)")
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file (default %(default)s)")
    parser.add_argument("--markdown", type=Path, help="write this benchmark's BENCHMARKS.md section here")
    parser.add_argument("--from-json", action="store_true", help="only render --json's results again")
    parser.add_argument(
        "--fresh", action="store_true", help="drop --json's earlier results (kept by default)"
    )
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text()) if args.from_json else bench(args)
    text = markdown(results, NOTES.read_text() if NOTES.exists() else "")
    if args.markdown:
        args.markdown.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
