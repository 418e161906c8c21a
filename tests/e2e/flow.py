"""The end-to-end flow on a cluster with real pods, shared by the real-node suite and tests/kind/e2e.sh.

Every step talks to the cluster only through kubectl, helm and `kubectl port-forward` with the KUBECONFIG it
is given, as a user would. Cluster-specific work (starting the cluster, getting images onto its nodes)
stays with the caller. `python -m tests.e2e.flow --kubeconfig K` runs every step in order (the kind script).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "phlo-dagster"
QUICKSTART = REPO / "examples" / "quickstart" / "workflow.yaml"
RELEASE = "phlo-dagster"
WORKFLOW = "quickstart"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class FlowError(AssertionError):
    """A step of the flow saw the cluster disagree with what it claims; the message says what it saw."""


def version() -> str:
    match = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match, "pyproject.toml has no version"
    return match.group(1)


@dataclass
class Cluster:
    """kubectl and helm against one cluster (KUBECONFIG), artifacts of a run kept in one directory."""

    kubeconfig: Path
    namespace: str
    artifacts: Path
    bin_dir: Path | None = None
    env_extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), **self.env_extra)
        if self.bin_dir:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        helm_home = self.artifacts.parent / "helm"
        for key, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            env.setdefault(key, str(helm_home / sub))
        return env

    def run(
        self, *argv: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            check=False,
        )
        if check and result.returncode != 0:
            raise FlowError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
        return result

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def k(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """kubectl in the flow's namespace."""
        return self.run("kubectl", "-n", self.namespace, *args, **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("timeout", 600)
        return self.run("helm", *args, **kw)

    def get(self, *args: str, namespace: bool = True) -> Any:
        out = (self.k if namespace else self.kubectl)("get", *args, "-o", "json").stdout
        return json.loads(out)

    @contextlib.contextmanager
    def port_forward(self, target: str, port: int) -> Iterator[str]:
        """`kubectl port-forward target LOCAL:port` from this host; yields the local base URL."""
        local = _free_port()
        log = (self.artifacts / f"port-forward-{local}.log").open("w")
        proc = subprocess.Popen(
            [
                "kubectl",
                "-n",
                self.namespace,
                "port-forward",
                target,
                f"{local}:{port}",
                "--address=127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(),
        )
        try:
            wait("port-forward to listen", lambda: _port_open(local) or _exited(proc), 60)
            if proc.poll() is not None:
                raise FlowError(
                    f"kubectl port-forward {target} exited: {(self.artifacts / log.name).read_text()}"
                )
            yield f"http://127.0.0.1:{local}"
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            log.close()

    def collect(self, name: str = "objects") -> None:
        """What a failed run needs to be read: objects, events and every pod's logs."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        out = self.kubectl("get", "all,pwf,jobs,pvc,events", "-A", "-o", "wide", check=False).stdout
        (self.artifacts / f"{name}.txt").write_text(out)
        pods = self.kubectl("get", "pods", "-A", "-o", "json", check=False).stdout
        with contextlib.suppress(ValueError):
            for pod in json.loads(pods)["items"]:
                ns, pname = pod["metadata"]["namespace"], pod["metadata"]["name"]
                logs = self.kubectl("logs", "-n", ns, pname, "--all-containers", "--prefix", check=False)
                (self.artifacts / f"{ns}.{pname}.log").write_text(logs.stdout + logs.stderr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _exited(proc: subprocess.Popen[Any]) -> bool:
    return proc.poll() is not None


def wait(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Poll check() until it returns something truthy; FlowError naming what and the last error on timeout."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # the condition is not observable yet: keep polling
            last = error
        if time.monotonic() > deadline:
            raise FlowError(
                f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last}" if last else "")
            )
        time.sleep(interval)


# --- HTTP and GraphQL ------------------------------------------------------------------------------------


def build_workflow_image(
    tag: str, name: str, files: dict[str, str], with_quickstart: bool = True, timeout: float = 2400
) -> None:
    """`make images IMAGE=tag` with a workflows folder of its own: the quickstart's workflows (unless
    with_quickstart is False) plus `files` (file name -> source). The folder is build/e2e/<name>, inside the
    build context (not .testbed/, which .dockerignore drops) and out of git."""
    workflows = REPO / "build" / "e2e" / name
    shutil.rmtree(workflows, ignore_errors=True)
    if with_quickstart:
        quickstart = REPO / "examples" / "quickstart" / "workflows"
        shutil.copytree(quickstart, workflows, ignore=shutil.ignore_patterns("__pycache__"))
    workflows.mkdir(parents=True, exist_ok=True)
    for file, source in files.items():
        (workflows / file).write_text(source)
    build = subprocess.run(
        ["make", "images", f"IMAGE={tag}", f"WORKFLOWS_DIR={workflows.relative_to(REPO)}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]


def http_get(url: str, timeout: float = 30) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            payload: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as error:
        # Dagster answers 500 when a resolver caught an error (a PythonError in the data): say which
        detail = error.read().decode(errors="replace")[:2000]
        raise FlowError(f"GraphQL HTTP {error.code}: {detail}") from None
    if payload.get("errors"):
        raise FlowError(f"GraphQL errors: {payload['errors']}")
    data: dict[str, Any] = payload["data"]
    return data


ASSETS = """
query {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name location { name }
        assetNodes {
          assetKey { path } isMaterializable isPartitioned partitionKeys dependencyKeys { path }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""
LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
PLAN = """
query($pipeline: PipelineSelector!) {
  executionPlanOrError(pipeline: $pipeline, mode: "default") {
    __typename
    ... on PythonError { message }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN = """query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"""
EVENTS = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}
"""


def asset_nodes(base: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(location, repository, asset node) for every asset the webserver lists."""
    repos = graphql(base, ASSETS)["repositoriesOrError"]
    if repos["__typename"] != "RepositoryConnection":
        raise FlowError(f"cannot list repositories: {repos}")
    return [(r["location"]["name"], r["name"], n) for r in repos["nodes"] for n in r["assetNodes"]]


def asset_keys(base: str) -> set[str]:
    return {"/".join(node["assetKey"]["path"]) for _, _, node in asset_nodes(base)}


def asset_job(base: str, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The asset job selecting one asset (its location, repository and key) and the asset's node."""
    found = [entry for entry in asset_nodes(base) if "/".join(entry[2]["assetKey"]["path"]) == key]
    if not found:
        raise FlowError(f"no asset {key} in {base}")
    location, repository, node = found[0]
    selector = {
        "repositoryLocationName": location,
        "repositoryName": repository,
        "assetSelection": [{"path": node["assetKey"]["path"]}],
    }
    return selector, node


def execution_plan(base: str, selector: dict[str, Any]) -> None:
    """Ask the webserver for the asset job's execution plan, which it fetches from the code server over gRPC
    (as launchRun does); FlowError unless a plan comes back."""
    pipeline = {**selector, "pipelineName": "__ASSET_JOB"}
    answer = graphql(base, PLAN, {"pipeline": pipeline})["executionPlanOrError"]
    if answer["__typename"] != "ExecutionPlan":
        raise FlowError(f"no execution plan: {answer}")


def launch(base: str, key: str, tags: dict[str, str] | None = None) -> str:
    """Launch a materialization of one asset (its last partition when partitioned), with `tags` on the run;
    the run id."""
    selector, node = asset_job(base, key)
    run_tags = [{"key": k, "value": v} for k, v in (tags or {}).items()]
    if node["isPartitioned"]:
        run_tags.append({"key": "dagster/partition", "value": node["partitionKeys"][-1]})
    params = {
        "selector": {**selector, "jobName": "__ASSET_JOB"},
        "runConfigData": {},
        "executionMetadata": {"tags": run_tags},
    }
    launched = graphql(base, LAUNCH, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise FlowError(f"launchRun of {key} failed: {launched}")
    return str(launched["run"]["runId"])


def wait_run(base: str, run_id: str, timeout: float = 600) -> str:
    def finished() -> str | None:
        status = graphql(base, RUN, {"runId": run_id})["runOrError"].get("status")
        return status if status in FINISHED else None

    return str(wait(f"run {run_id} to finish", finished, timeout, interval=2))


def run_messages(base: str, run_id: str) -> list[str]:
    events = graphql(base, EVENTS, {"runId": run_id})["logsForRun"]
    return [e.get("message") or "" for e in events.get("events", [])]


# --- steps -----------------------------------------------------------------------------------------------


def create_namespace(c: Cluster) -> None:
    """The flow's namespace, enforcing Pod Security "restricted": every pod must be admitted under it."""
    doc = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": c.namespace,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
    c.kubectl("apply", "-f", "-", input=json.dumps(doc))


def install_operator(c: Cluster, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """helm install --wait; the operator pod Running, its readiness probe passing, and leader elected."""
    c.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        c.namespace,
        "--wait",
        "--timeout",
        "5m",
        "--set",
        "image.pullPolicy=IfNotPresent",
        *extra,
    )
    pods = c.get("pods", "-l", "app.kubernetes.io/name=phlo-dagster")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running" and pod_ready(p)]
    if not running:
        raise FlowError(f"no Running+Ready operator pod: {[p['status'] for p in pods]}")
    wait("the operator to take the peering lead", lambda: _peering_has(c, running[0]), 120, interval=2)
    return running[0]


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        cond["type"] == "Ready" and cond["status"] == "True" for cond in pod["status"].get("conditions", [])
    )


def _peering_has(c: Cluster, pod: dict[str, Any]) -> bool:
    """kopf records every live operator in its peering object; the one with top priority acts."""
    for kind, namespaced in (("kopfpeerings", True), ("clusterkopfpeerings", False)):
        out = (c.k if namespaced else c.kubectl)("get", kind, "-o", "json", check=False)
        if out.returncode != 0:
            continue
        for item in json.loads(out.stdout).get("items", []):
            if any(pod["metadata"]["name"] in key for key in (item.get("status") or {})):
                return True
    logs = c.k("logs", pod["metadata"]["name"], check=False).stdout
    return "peering" not in logs.lower() or "standalone" in logs.lower()


def apply_quickstart(
    c: Cluster,
    image: str,
    name: str = WORKFLOW,
    ready_timeout: str = "15m",
    spec: dict[str, Any] | None = None,
    ready: bool = True,
) -> None:
    """kubectl apply -f examples/quickstart/workflow.yaml with a locally built image (and `spec`'s top-level
    fields over the file's); wait for Ready unless `ready` is false."""
    out = c.k("create", "--dry-run=client", "-o", "json", "-f", str(QUICKSTART)).stdout
    doc = json.loads(out)
    doc["metadata"]["name"] = name
    doc["spec"].update(spec or {})
    doc["spec"]["image"] = image
    doc["spec"]["imagePullPolicy"] = "IfNotPresent"
    c.k("apply", "-f", "-", input=json.dumps(doc))
    if ready:
        c.k("wait", "--for=condition=Ready", f"pwf/{name}", f"--timeout={ready_timeout}", timeout=960)


def pods_of(c: Cluster, component: str, name: str = WORKFLOW) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component={component}"
    return list(c.get("pods", "-l", selector)["items"])


def check_components(c: Cluster, name: str = WORKFLOW) -> dict[str, list[dict[str, Any]]]:
    """Webserver, daemon, code server and managed PostgreSQL pods Running with their real probes passing."""
    found: dict[str, list[dict[str, Any]]] = {}
    for component in ("webserver", "daemon", "code-server", "postgres"):
        pods = [
            p for p in pods_of(c, component, name) if p["status"].get("phase") == "Running" and pod_ready(p)
        ]
        if not pods:
            raise FlowError(f"no Running and Ready {component} pod of {name}: {c.k('get', 'pods').stdout}")
        found[component] = pods
    return found


def dbt_compile_logs(c: Cluster, name: str = WORKFLOW) -> str:
    """Logs of the pod of the dbt-compile Job that gated the current code server."""
    wf = c.get("pwf", name)
    job = (wf.get("status", {}).get("dbt") or {}).get("jobName")
    if not job:
        raise FlowError(f"status.dbt.jobName is empty: {wf.get('status')}")
    pods = c.get("pods", "-l", f"job-name={job}")["items"]
    succeeded = [p for p in pods if p["status"].get("phase") == "Succeeded"]
    if not succeeded:
        raise FlowError(f"no Succeeded pod of Job {job}: {[p['status'].get('phase') for p in pods]}")
    return c.k("logs", succeeded[0]["metadata"]["name"], "--all-containers").stdout


def helm_test(c: Cluster) -> str:
    return c.helm("test", RELEASE, "--namespace", c.namespace, "--timeout", "5m").stdout


def run_pods(c: Cluster, run_id: str) -> list[dict[str, Any]]:
    """Pods of the K8sRunLauncher Job of one run (dagster-k8s labels them with the run id)."""
    return list(c.get("pods", "-l", f"dagster/run-id={run_id}")["items"])


def materialize(c: Cluster, base: str, key: str, timeout: float = 600) -> tuple[str, list[str]]:
    """Launch through GraphQL, wait for SUCCESS, return the run id and its event messages."""
    run_id = launch(base, key)
    status = wait_run(base, run_id, timeout)
    messages = run_messages(base, run_id)
    if status != "SUCCESS":
        raise FlowError(f"run {run_id} of {key} ended {status}: {messages[-15:]}")
    return run_id, messages


CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
    "    print('connected')\n"
    "except OSError as e:\n"
    "    print('refused', e)\n"
)


def connects(c: Cluster, pod: str, host: str, port: int, timeout: float = 5.0, container: str = "") -> bool:
    """Whether a TCP connection from inside pod to host:port succeeds (python in the pod's own image)."""
    extra = ("-c", container) if container else ()
    out = c.k("exec", pod, *extra, "--", "python", "-c", CONNECT, host, str(port), str(timeout), timeout=60)
    return out.stdout.strip().startswith("connected")


def restricted_pod(
    name: str, image: str, command: list[str], pull_policy: str = "IfNotPresent"
) -> dict[str, Any]:
    """A pod of no component, admitted under Pod Security "restricted", running command in image."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "e2e-probe"}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": pull_policy,
                    "command": command,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def probe_pod(c: Cluster, name: str, image: str) -> str:
    """A restricted pod that idles, for connecting from; its name once Ready."""
    pod = restricted_pod(name, image, ["python", "-c", "import time\nwhile True: time.sleep(60)"])
    c.k("apply", "-f", "-", input=json.dumps(pod))
    c.k("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=180s", timeout=200)
    return name


def screenshot(base: str, path: Path, chromium: str | None = None) -> Path:
    """A headless-browser screenshot of the asset graph (kept as a CI artifact)."""
    browser = (
        chromium
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if browser is None:
        raise FlowError("no chromium on PATH (Debian package chromium)")
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = path.parent / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    argv = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=20000",
        f"--screenshot={path}", f"{base}/asset-groups",
    ]  # fmt: skip
    subprocess.run(argv, capture_output=True, timeout=180, check=False)
    shutil.rmtree(profile, ignore_errors=True)
    if not path.exists() or path.stat().st_size < 5000:
        raise FlowError(f"chromium wrote no screenshot at {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    """Every step in order (tests/kind/e2e.sh): install, quickstart Ready, probes, helm test, a run."""
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.flow", description=main.__doc__)
    parser.add_argument(
        "--kubeconfig", type=Path, default=Path(os.environ.get("KUBECONFIG", "~/.kube/config"))
    )
    parser.add_argument("--namespace", default="phlo")
    parser.add_argument("--image", default=f"phlo-dagster:{version()}")
    parser.add_argument("--artifacts", type=Path, default=Path(os.environ.get("ARTIFACTS", "/tmp/phlo-e2e")))
    args = parser.parse_args(argv)
    c = Cluster(args.kubeconfig.expanduser(), args.namespace, args.artifacts)
    c.artifacts.mkdir(parents=True, exist_ok=True)
    try:
        create_namespace(c)
        install_operator(c)
        apply_quickstart(c, args.image)
        check_components(c)
        print(dbt_compile_logs(c)[-500:])
        helm_test(c)
        with c.port_forward(f"svc/{WORKFLOW}-webserver", 3000) as base:
            print(sorted(asset_keys(base)))
            run_id, _ = materialize(c, base, "raw/orders")
            print(f"run {run_id}: SUCCESS")
            screenshot(base, c.artifacts / "asset-graph.png")
    except FlowError as error:
        c.collect()
        print(f"e2e: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
