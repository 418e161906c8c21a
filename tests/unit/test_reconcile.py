"""Each reconcile decision against the in-memory API server (tests/unit/fake_kube.py), in milliseconds.

The integration tests in tests/integration/test_operator.py prove the same decisions on a real API server;
they are what keeps the fake honest."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from phlo_operator import model as m
from phlo_operator.apply import ApiError
from phlo_operator.controller import Controller, Options
from phlo_operator.reconcile import Reconciler, Result
from phlo_operator.reload import LocationState, ReloadFailed
from phlo_operator.render import Workflow

from tests.unit.fake_kube import FakeKube

pytestmark = pytest.mark.unit
NS, NAME = "team", "demo"
CR_REF = (m.API_VERSION, m.KIND, NS, NAME)
SPEC: dict[str, Any] = {
    "image": "phlo-dagster:0.1.0",
    "workflows": {"path": "/app/workflows"},
    "dbt": {"enabled": True, "projectDir": "/app/dbt"},
    "storage": {"postgres": {"managed": True, "deletionPolicy": "Retain"}},
}
CODE_SERVER = ("apps/v1", "Deployment", NS, f"{NAME}-code-server")
WEBSERVER = ("apps/v1", "Deployment", NS, f"{NAME}-webserver")
SECRET = ("v1", "Secret", NS, f"{NAME}-postgres")
PVC = ("v1", "PersistentVolumeClaim", NS, f"data-{NAME}-postgres-0")


class Bed:
    """One PhloWorkflow on a fake API server, with a recording reloader and a fixed clock."""

    def __init__(self, apis: frozenset[str] = frozenset(), **spec: Any) -> None:
        self.kube = FakeKube(apis)
        self.reloads: list[tuple[str, str]] = []
        self.reload_error: str | None = None
        # What the fake webserver says of the code location when the operator asks.
        self.location = LocationState(True, "Loaded", "code location phlo loaded (3 jobs)")
        self.probes: list[tuple[str, str]] = []
        self.server_ids: list[str | None] = []
        self.reconciler = Reconciler(
            self.kube, clock=lambda: "2026-01-01T00:00:00Z", reloader=self._reload, prober=self._probe
        )
        self.kube.add(
            {
                "apiVersion": m.API_VERSION,
                "kind": m.KIND,
                "metadata": {"name": NAME, "namespace": NS, "uid": "cr-uid", "generation": 1},
                "spec": {**copy.deepcopy(SPEC), **spec},
            }
        )

    def _reload(self, base: str, location: str) -> str:
        self.reloads.append((base, location))
        if self.reload_error:
            raise ReloadFailed(self.reload_error)
        return "ok"

    def _probe(self, base: str, location: str, server_id: str | None = None) -> LocationState:
        self.probes.append((base, location))
        self.server_ids.append(server_id)
        return self.location

    def run(self) -> Result:
        return self.reconciler.reconcile(NS, NAME)

    def cr(self) -> dict[str, Any]:
        return self.kube.objects[CR_REF]

    def status(self) -> dict[str, Any]:
        return dict(self.cr().get("status") or {})

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status()["conditions"] if c["type"] == type_)

    def wf(self) -> Workflow:
        """The parsed workflow as the operator sees it now."""
        cr = self.cr()
        return Workflow(NAME, NS, "cr-uid", m.parse_spec(cr["spec"]), cr["metadata"]["generation"])

    def patch_spec(self, **changes: Any) -> None:
        cr = self.cr()
        for key, value in changes.items():
            if value is None:
                cr["spec"].pop(key, None)
            else:
                cr["spec"][key] = value
        cr["metadata"]["generation"] += 1

    def ready_pods(self) -> None:
        """First pass, the compile succeeds, pods roll out (Ready then depends on the code location)."""
        self.run()
        if self.cr()["spec"]["dbt"]["enabled"]:
            self.kube.finish_job()
        self.run()
        self.kube.settle()
        self.run()
        self.kube.settle()

    def ready(self) -> None:
        """First pass, the compile succeeds, pods roll out, the location is loaded: Ready=True."""
        self.ready_pods()
        self.run()
        assert self.condition("Ready")["status"] == "True", self.status()["conditions"]


# -- dbt gating
def test_the_code_server_waits_for_the_first_compile() -> None:
    bed = Bed()
    bed.run()
    assert bed.kube.get(CODE_SERVER) is None
    (job,) = bed.kube.dbt_jobs()
    assert bed.condition("DbtCompiled")["status"] == "False"
    assert bed.condition("Progressing")["reason"] == "DbtCompiling"
    assert bed.condition("Ready")["reason"] == "DbtCompiling"
    assert bed.kube.reasons() == ["DbtCompileStarted"]
    assert bed.status()["dbt"] == {"jobName": job["metadata"]["name"]}
    bed.run()  # still compiling: no second Job, no second Event
    assert len(bed.kube.dbt_jobs()) == 1 and bed.kube.reasons() == ["DbtCompileStarted"]
    bed.kube.finish_job()
    bed.run()
    code_server = bed.kube.get(CODE_SERVER)
    assert code_server is not None
    spec_hash = job["metadata"]["annotations"]["phlo.dev/dbt-spec-hash"]
    assert code_server["spec"]["template"]["metadata"]["annotations"]["phlo.dev/dbt-spec-hash"] == spec_hash
    assert bed.status()["dbt"]["specHash"] == spec_hash
    assert bed.condition("DbtCompiled")["status"] == "True"


def test_new_inputs_compile_first_then_roll_the_code_server_and_reload_once() -> None:
    bed = Bed()
    bed.ready()
    old = bed.kube.get(CODE_SERVER)
    old_job = bed.status()["dbt"]["jobName"]
    bed.patch_spec(env=[{"name": "PHLO_LOG_LEVEL", "value": "DEBUG"}])
    bed.run()
    assert bed.kube.get(CODE_SERVER) == old  # gated: the old code server keeps serving
    bed.kube.finish_job()
    bed.run()
    assert bed.kube.get(("batch/v1", "Job", NS, old_job)) is None  # superseded compiles are deleted
    assert "CodeServerRollout" in bed.kube.reasons()
    assert bed.reloads == []  # not before the rollout completed
    bed.kube.settle()
    bed.run()
    assert bed.reloads == [(f"http://{NAME}-webserver.{NS}.svc:3000", "phlo")]
    assert "CodeLocationReloaded" in bed.kube.reasons()
    bed.run()
    assert len(bed.reloads) == 1  # once per template


def test_a_failed_reload_is_a_warning_not_an_error() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.ready()
    bed.patch_spec(env=[{"name": "X", "value": "1"}])
    bed.reload_error = "connection refused"
    bed.run()
    bed.kube.settle()
    result = bed.run()
    assert result.outcome == "ok"
    assert ("Warning", "ReloadFailed") in [(e.type, e.reason) for e in bed.kube.events]


def test_a_failed_compile_degrades_and_keeps_the_previous_code_server() -> None:
    bed = Bed()
    bed.ready()
    old = bed.kube.get(CODE_SERVER)
    bed.patch_spec(dbt={"enabled": True, "projectDir": "/app/dbt", "target": "broken"})
    bed.run()
    job = bed.kube.finish_job(ok=False)
    bed.run()
    assert bed.condition("Degraded")["reason"] == "DbtCompileFailed"
    assert bed.condition("DbtCompiled")["status"] == "False"
    assert bed.condition("CodeServerReady")["status"] == "True"
    assert bed.kube.get(CODE_SERVER) == old
    assert ("Warning", "DbtCompileFailed") in [(e.type, e.reason) for e in bed.kube.events]
    # Deleting the failed Job retries the same inputs.
    bed.kube.remove(("batch/v1", "Job", NS, job["metadata"]["name"]))
    bed.run()
    assert bed.kube.get(("batch/v1", "Job", NS, job["metadata"]["name"])) is not None


def test_an_unchanged_workflow_costs_zero_writes() -> None:
    bed = Bed()
    bed.ready()
    before = len(bed.kube.writes)
    result = bed.run()
    assert result.writes == 0 and len(bed.kube.writes) == before


def test_dbt_disabled_rolls_the_code_server_at_once() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.run()
    assert bed.kube.get(CODE_SERVER) is not None and bed.kube.dbt_jobs() == []
    assert bed.condition("DbtCompiled") == {
        **bed.condition("DbtCompiled"),
        "status": "True",
        "reason": "Disabled",
    }


# -- storage
def test_the_managed_secret_is_created_once_with_every_key() -> None:
    bed = Bed()
    bed.run()
    secret = bed.kube.get(SECRET)
    assert secret is not None and set(secret["data"]) == {"host", "port", "user", "password", "database"}
    assert "ownerReferences" not in secret["metadata"]  # Retain: not garbage-collected with the CR
    bed.run()
    assert bed.kube.get(SECRET) == secret


def test_deletion_policy_delete_hands_the_secret_to_the_cr() -> None:
    bed = Bed()
    bed.run()
    bed.patch_spec(storage={"postgres": {"managed": True, "deletionPolicy": "Delete"}})
    bed.run()
    secret = bed.kube.get(SECRET)
    assert secret is not None and secret["metadata"]["ownerReferences"][0]["uid"] == "cr-uid"


def test_a_lost_secret_is_not_regenerated_over_existing_data() -> None:
    bed = Bed()
    bed.ready()
    original = bed.kube.get(SECRET)
    bed.kube.add(
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": PVC[3], "namespace": NS}}
    )
    bed.kube.remove(SECRET)
    bed.run()
    bed.run()
    assert bed.kube.get(SECRET) is None
    degraded = bed.condition("Degraded")
    assert degraded["reason"] == "StorageSecretLost" and PVC[3] in degraded["message"]
    assert "Restore the Secret" in degraded["message"]
    assert bed.condition("StorageReady")["status"] == "False"
    assert ("Warning", "StorageSecretLost") in [(e.type, e.reason) for e in bed.kube.events]
    assert original is not None
    bed.kube.add(original)
    bed.run()
    assert bed.condition("Degraded")["status"] == "False"
    assert bed.condition("Ready")["status"] == "True"


def test_an_external_secret_must_exist_with_every_key() -> None:
    bed = Bed(storage={"postgres": {"secretName": "team-pg"}})
    bed.run()
    assert bed.condition("Degraded")["reason"] == "StorageSecretInvalid"
    assert "team-pg" in bed.condition("Degraded")["message"]
    assert bed.kube.kind("StatefulSet") == []
    bed.kube.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "team-pg", "namespace": NS},
            "data": {"host": "aA=="},
        }
    )
    bed.run()
    assert "lacks keys: port, user, password, database" in bed.condition("Degraded")["message"]


# -- suspend
def test_suspend_scales_dagster_to_zero_and_keeps_postgres() -> None:
    bed = Bed()
    bed.ready()
    bed.patch_spec(suspend=True)
    bed.run()
    for component in ("webserver", "daemon", "code-server"):
        dep = bed.kube.get(("apps/v1", "Deployment", NS, f"{NAME}-{component}"))
        assert dep is not None and dep["spec"]["replicas"] == 0
    (sts,) = bed.kube.kind("StatefulSet")
    assert sts["spec"]["replicas"] == 1
    assert bed.condition("Ready")["reason"] == "Suspended"
    bed.patch_spec(suspend=None)
    bed.run()
    bed.kube.settle()
    bed.run()
    assert bed.condition("Ready")["status"] == "True"


def test_a_suspended_workflow_does_not_start_a_compile() -> None:
    bed = Bed(suspend=True)
    bed.run()
    assert bed.kube.kind("Job") == []
    assert bed.condition("DbtCompiled")["reason"] == "Suspended"
    assert bed.kube.get(CODE_SERVER) is not None  # at 0 replicas: nothing to gate


# -- replicas owned by an HPA
def test_an_hpa_owns_replicas_of_its_target() -> None:
    bed = Bed(dbt={"enabled": False}, webserver={"replicas": 1})
    bed.ready()
    bed.kube.add(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": WEBSERVER[3]}},
        }
    )
    bed.kube.objects[WEBSERVER]["spec"]["replicas"] = 3  # what the autoscaler does
    bed.patch_spec(webserver={"replicas": 2, "podAnnotations": {"step": "2"}})
    bed.run()
    web = bed.kube.get(WEBSERVER)
    assert web is not None and web["spec"]["replicas"] == 3
    assert web["spec"]["template"]["metadata"]["annotations"]["step"] == "2"


def test_without_an_hpa_the_spec_sets_replicas() -> None:
    bed = Bed(dbt={"enabled": False}, webserver={"replicas": 2})
    bed.run()
    web = bed.kube.get(WEBSERVER)
    assert web is not None and web["spec"]["replicas"] == 2


# -- API failures and retries
def test_an_api_failure_on_a_new_workflow_says_not_ready_and_is_raised_for_a_retry() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.kube.fail("patch", "Deployment", 422, "affinity: invalid")
    with pytest.raises(ApiError) as raised:
        bed.run()
    # what the status now says rides on the error, for the controller's workflow gauge
    assert {(c["type"], c["status"]) for c in raised.value.conditions or []} >= {("Degraded", "True")}
    assert bed.condition("Degraded") == {
        **bed.condition("Degraded"),
        "status": "True",
        "reason": "ApplyFailed",
    }
    assert "affinity" in bed.condition("Degraded")["message"]
    assert bed.condition("Ready")["reason"] == "ApplyFailed"
    writes = len(bed.kube.writes)
    with pytest.raises(ApiError):
        bed.run()
    assert len(bed.kube.writes) == writes  # the same failure again: no status churn
    bed.kube.heal()
    bed.run()
    bed.kube.settle()
    bed.run()
    assert bed.condition("Ready")["status"] == "True"
    assert bed.condition("Degraded")["status"] == "False"


def test_an_api_failure_keeps_what_was_observed_and_only_marks_degraded() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.ready()
    ready = bed.condition("Ready")
    bed.kube.fail("patch", "ConfigMap", 404, "namespace not found")
    bed.patch_spec(env=[{"name": "X", "value": "1"}])
    with pytest.raises(ApiError):
        bed.run()
    assert bed.condition("Ready") == ready
    assert bed.condition("Degraded")["reason"] == "ApplyFailed"
    assert ("Warning", "ApplyFailed") in [(e.type, e.reason) for e in bed.kube.events]


def test_a_status_write_that_fails_too_is_raised() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.kube.fail("patch", "Deployment")
    bed.kube.fail("patch", "status")
    with pytest.raises(ApiError):
        bed.run()
    assert "status" not in bed.cr()


def test_the_controller_retries_a_failed_pass_until_the_api_heals() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.kube.fail("patch", "Deployment")
    ctl = Controller(bed.reconciler, Options())
    ctl.trigger(NS, NAME)
    state = ctl._state[(NS, NAME)]
    assert state.failures == 1 and state.retry is not None
    state.retry.cancel()
    bed.kube.heal()
    ctl.trigger(NS, NAME)
    assert state.failures == 0 and state.retry is None
    assert bed.kube.get(WEBSERVER) is not None


# -- spec the operator refuses, metrics, run namespaces, deletion
def test_an_invalid_spec_touches_nothing() -> None:
    bed = Bed(env=[{"name": "DAGSTER_PG_PASSWORD", "value": "nope"}])
    result = bed.run()
    assert result.outcome == "invalid"
    assert [k for (_, k, _, _) in bed.kube.objects] == [m.KIND]
    assert bed.condition("Degraded")["reason"] == "InvalidSpec"
    assert ("Warning", "InvalidSpec") in [(e.type, e.reason) for e in bed.kube.events]


def test_an_instance_config_dagster_refuses_touches_nothing_and_says_which_key() -> None:
    bed = Bed(instanceConfig={"run_coordinator": {"config": {"max_concurent_runs": 3}}})
    result = bed.run()
    assert result.outcome == "invalid"
    assert [k for (_, k, _, _) in bed.kube.objects] == [m.KIND]  # not even the managed Secret
    degraded = bed.condition("Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.instanceConfig" in degraded["message"]
    assert "root:run_coordinator:config: unexpected key 'max_concurent_runs'" in degraded["message"]


def test_a_refused_instance_config_on_a_running_workflow_rolls_nothing() -> None:
    bed = Bed(dbt={"enabled": False})
    bed.ready()
    before = copy.deepcopy(bed.kube.objects)
    bed.patch_spec(instanceConfig={"telemetry": {"enabled": "no"}})
    assert bed.run().outcome == "invalid"
    children = {ref: obj for ref, obj in bed.kube.objects.items() if ref != CR_REF}
    assert children == {ref: obj for ref, obj in before.items() if ref != CR_REF}
    assert bed.condition("Degraded")["reason"] == "InvalidSpec"


def test_under_a_path_prefix_the_operator_asks_the_prefixed_graphql_and_reports_that_url() -> None:
    bed = Bed(webserver={"pathPrefix": "/dagster"})
    bed.ready()
    url = f"http://{NAME}-webserver.{NS}.svc:3000/dagster"
    assert bed.status()["webserverUrl"] == url
    assert bed.probes and {base for base, _ in bed.probes} == {url}


def test_pod_overrides_the_merge_refuses_touch_nothing_and_name_the_field() -> None:
    """Judged on the merged pod (the model cannot see the webserver's volumes): still nothing applied."""
    mount = {"name": "webserver", "volumeMounts": [{"name": "certs", "mountPath": "/certs"}]}
    bed = Bed(webserver={"podOverrides": {"spec": {"containers": [mount]}}})
    result = bed.run()
    assert result.outcome == "invalid"
    assert [k for (_, k, _, _) in bed.kube.objects] == [m.KIND]
    degraded = bed.condition("Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert degraded["message"].startswith(
        "spec.webserver.podOverrides.spec.containers[0].volumeMounts[0].name: no volume 'certs'"
    )


@pytest.mark.parametrize(
    ("field", "verb", "kind"),
    [("webserver", "patch", "Deployment"), ("codeServer", "patch", "Deployment"), ("dbt", "post", "Job")],
)
def test_a_pod_template_the_api_server_refuses_names_its_pod_overrides(
    field: str, verb: str, kind: str
) -> None:
    """What the operator cannot judge (a bad value deep in a container) the API server refuses; the message
    names the podOverrides merged into that template. Without podOverrides, the server's message alone."""
    bed = Bed(dbt={"enabled": True})
    bed.ready()
    overrides = {"metadata": {"annotations": {"example.com/x": "y"}}}
    bed.patch_spec(**{field: {**bed.cr()["spec"].get(field, {}), "podOverrides": overrides}})
    bed.kube.fail(verb, kind, 422, "spec.template.spec.containers[1].image: Required value")
    with pytest.raises(ApiError):
        bed.run()
    message = bed.condition("Degraded")["message"]
    assert bed.condition("Degraded")["reason"] == "ApplyFailed"
    assert f"spec.{field}.podOverrides (merged into the pod template): spec.template" in message, message
    plain = Bed(dbt={"enabled": False})
    plain.kube.fail("patch", "Deployment", 422, "spec.template.spec.containers[1].image: Required value")
    with pytest.raises(ApiError):
        plain.run()
    assert "podOverrides" not in plain.condition("Degraded")["message"]


def test_a_missing_service_monitor_api_is_one_warning_and_recorded_in_status() -> None:
    bed = Bed(dbt={"enabled": False}, metrics={"enabled": True, "serviceMonitor": {"enabled": True}})
    bed.run()
    bed.run()
    assert bed.kube.reasons().count("ServiceMonitorUnavailable") == 1
    assert bed.status()["metrics"] == {"serviceMonitor": "CRDMissing"}
    assert bed.kube.kind("ServiceMonitor") == []
    bed.kube.apis.add("monitoring.coreos.com/v1/servicemonitors")
    bed.run()
    assert bed.status()["metrics"] == {"serviceMonitor": "Applied"}
    assert len(bed.kube.kind("ServiceMonitor")) == 1


def test_a_run_namespace_gets_config_and_a_secret_copy_and_is_left_cleanly() -> None:
    bed = Bed(dbt={"enabled": False}, runLauncher={"namespace": "runs"})
    bed.run()
    in_runs = {(k, name) for (_, k, ns, name) in bed.kube.objects if ns == "runs"}
    assert in_runs == {
        ("ConfigMap", f"{NAME}-instance"),
        ("Secret", f"{NAME}-postgres-runs"),
        ("Role", f"{NAME}-run-launcher"),
        ("RoleBinding", f"{NAME}-run-launcher"),
    }
    assert bed.status()["runLauncher"] == {"namespace": "runs"}
    bed.patch_spec(runLauncher=None)
    bed.run()
    assert not [ns for (_, _, ns, _) in bed.kube.objects if ns == "runs"]
    assert bed.status()["runLauncher"] == {"namespace": NS}


def test_cleanup_deletes_what_another_run_namespace_holds() -> None:
    bed = Bed(dbt={"enabled": False}, runLauncher={"namespace": "runs"})
    bed.run()
    bed.reconciler.cleanup(NS, NAME, bed.cr()["spec"], bed.status())
    assert not [ns for (_, _, ns, _) in bed.kube.objects if ns == "runs"]


def test_a_deleted_workflow_is_gone() -> None:
    bed = Bed()
    bed.kube.remove(CR_REF)
    assert bed.run().outcome == "gone"


def test_a_failed_pass_still_posts_its_events_and_records_what_it_found() -> None:
    bed = Bed(dbt={"enabled": False}, metrics={"enabled": True, "serviceMonitor": {"enabled": True}})
    bed.kube.fail("patch", "Deployment")
    with pytest.raises(ApiError):
        bed.run()
    assert bed.kube.reasons() == ["ServiceMonitorUnavailable", "ApplyFailed"]
    assert bed.status()["metrics"] == {"serviceMonitor": "CRDMissing"}
    with pytest.raises(ApiError):
        bed.run()
    assert bed.kube.reasons() == ["ServiceMonitorUnavailable", "ApplyFailed"]  # once, not once per retry


# -- Ready means usable: the webserver must report the code location loaded


def test_ready_waits_for_the_webserver_to_load_the_code_location() -> None:
    bed = Bed()
    bed.location = LocationState(False, "Loading", "the webserver is loading code location phlo")
    bed.ready_pods()
    result = bed.run()
    ready = bed.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CodeLocationNotLoaded")
    assert bed.condition("CodeLocationLoaded")["reason"] == "Loading"
    assert result.requeue_after is not None and result.requeue_after > 0
    bed.location = LocationState(True, "Loaded", "code location phlo loaded (3 jobs)")
    result = bed.run()
    assert bed.condition("Ready")["status"] == "True" and result.requeue_after is None
    assert bed.condition("CodeLocationLoaded")["status"] == "True"


def test_a_location_that_failed_to_load_is_reloaded_and_not_ready() -> None:
    bed = Bed()
    bed.location = LocationState(False, "LoadError", "code location phlo failed to load: connection refused")
    bed.ready_pods()
    bed.run()
    assert bed.condition("Ready")["reason"] == "CodeLocationNotLoaded"
    assert "phlo" in {loc for _, loc in bed.reloads}, bed.reloads


def test_pods_not_available_means_the_webserver_is_not_asked() -> None:
    bed = Bed()
    bed.run()
    assert bed.probes == []
    assert bed.condition("CodeLocationLoaded")["reason"] == "WaitingForPods"


def test_without_the_check_ready_follows_the_pods() -> None:
    bed = Bed()
    bed.reconciler = Reconciler(
        bed.kube, clock=lambda: "2026-01-01T00:00:00Z", reloader=bed._reload, prober=None
    )
    bed.location = LocationState(False, "Loading", "never asked")
    bed.ready_pods()
    bed.run()
    assert bed.condition("Ready")["status"] == "True"
    assert all(c["type"] != "CodeLocationLoaded" for c in bed.status()["conditions"])


def test_deleting_the_workflow_deletes_the_run_jobs_it_launched() -> None:
    bed = Bed()
    bed.ready()
    run_labels = {
        "app.kubernetes.io/name": "phlo-dagster",
        "app.kubernetes.io/instance": NAME,
        "app.kubernetes.io/component": "run",
    }
    for name, labels in (("dagster-run-1", run_labels), ("someone-elses", {"app": "other"})):
        bed.kube.add(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name, "namespace": NS, "labels": labels},
            }
        )
    bed.reconciler.cleanup(NS, NAME, bed.cr()["spec"], bed.status())
    assert ("batch/v1", "Job", NS, "dagster-run-1") not in bed.kube.objects
    assert ("batch/v1", "Job", NS, "someone-elses") in bed.kube.objects


def test_a_webserver_serving_earlier_code_is_reloaded_and_not_ready() -> None:
    bed = Bed()
    bed.location = LocationState(
        False, "Outdated", "the webserver still serves an earlier code server for phlo"
    )
    bed.ready_pods()
    bed.run()
    assert bed.condition("Ready")["reason"] == "CodeLocationNotLoaded"
    assert bed.condition("CodeLocationLoaded")["reason"] == "Outdated"
    assert "phlo" in {loc for _, loc in bed.reloads}
    assert bed.server_ids and bed.server_ids[-1], "the probe is not told which code server to expect"
