"""Pod-level pieces every Dagster pod shares: hardened security contexts, env, volumes, scheduling."""

from __future__ import annotations

from typing import Any

from phlo_dagster import constants as c
from phlo_operator import model as m
from phlo_operator.model import PodSettings, ResourceRequirements
from phlo_operator.render import overrides
from phlo_operator.render.workflow import (
    CHECKSUM_ANNOTATION,
    DAGSTER_HOME,
    DBT_TARGET_PATH,
    REFERENCED_ANNOTATION,
    WORKSPACE_DIR,
    Location,
    Workflow,
)

RUN_AS_USER = 10001  # the phlo user of the project image (Dockerfile)

# Seconds a webserver or code server keeps answering after its pod starts terminating. The Service routes to
# a deleted pod until kube-proxy on each node has synced its rules: a run launched at once after Ready was
# seen reaching a code server that had already exited (HTTP 500 from launchRun on the real node).
DRAIN_SECONDS = 10


def pod_security_context(uid: int = RUN_AS_USER) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(res: ResourceRequirements | None) -> dict[str, Any]:
    if res is None:
        return {}
    out: dict[str, Any] = {}
    if res.limits:
        out["limits"] = {k: str(v) for k, v in res.limits.items()}
    if res.requests:
        out["requests"] = {k: str(v) for k, v in res.requests.items()}
    return out


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def postgres_env(wf: Workflow, secret: str | None = None) -> list[dict[str, Any]]:
    """DAGSTER_PG_* from the Secret's keys host, port, user, password, database (never literal values)."""
    secret = secret or wf.postgres_secret
    return [
        _secret_env(c.ENV_PG_HOST, secret, "host"),
        _secret_env(c.ENV_PG_PORT, secret, "port"),
        _secret_env(c.ENV_PG_USER, secret, "user"),
        _secret_env(c.ENV_PG_PASSWORD, secret, "password"),
        _secret_env(c.ENV_PG_DB, secret, "database"),
    ]


def runtime_env(wf: Workflow, loc: Location | None = None) -> list[dict[str, Any]]:
    """Env the runtime reads (constants shared with phlo_dagster), before the user's env: of a code location's
    pods with `loc`, else of the webserver, the daemon and run pods (spec.workflows, spec.dbt)."""
    spec = wf.spec
    workflows, dbt = (loc.workflows, loc.dbt) if loc else (spec.workflows, spec.dbt)
    name = loc.name if loc else c.DEFAULT_CODE_LOCATION_NAME
    env = [
        {"name": c.ENV_DAGSTER_HOME, "value": DAGSTER_HOME},
        {"name": c.ENV_WORKFLOWS_PATH, "value": workflows.path},
        {"name": c.ENV_CODE_LOCATION_NAME, "value": name},
        {"name": c.ENV_DBT_ENABLED, "value": "true" if dbt.enabled else "false"},
    ]
    if dbt.enabled:
        env.append({"name": c.ENV_DBT_PROJECT_DIR, "value": dbt.project_dir})
        env.append({"name": c.ENV_DBT_PROFILES_DIR, "value": dbt.profiles_dir or dbt.project_dir})
        if dbt.target:
            env.append({"name": c.ENV_DBT_TARGET, "value": dbt.target})
        env.append({"name": c.ENV_DBT_TARGET_PATH, "value": DBT_TARGET_PATH})
        # The manifest comes from the init container (same inputs as the dbt Job), not from loading.
        env.append({"name": c.ENV_DBT_COMPILE_ON_LOAD, "value": "false"})
    return env


def location_env_delta(wf: Workflow, loc: Location) -> list[dict[str, Any]]:
    """The location's runtime env that differs from the spec-level one run pods get from dagster.yaml: its run
    pods need it (appended later, so it wins); empty for the location of a spec without codeLocations."""
    base = {var["name"]: var for var in runtime_env(wf)}
    return [var for var in runtime_env(wf, loc) if base.get(var["name"]) != var]


def user_env(wf: Workflow) -> list[dict[str, Any]]:
    return [v.model_dump(by_alias=True, exclude_none=True) for v in wf.spec.env]


def user_env_from(wf: Workflow) -> list[dict[str, Any]]:
    return [v.model_dump(by_alias=True, exclude_none=True) for v in wf.spec.env_from]


def component_env(env: list[dict[str, Any]], settings: PodSettings | None) -> list[dict[str, Any]]:
    """`env` with the component's entries: one named like an entry of `env` takes its place (so references
    to it keep their order), the others follow."""
    if settings is None or not settings.env:
        return env
    mine = {v.name: v.model_dump(by_alias=True, exclude_none=True) for v in settings.env}
    out = [mine.pop(var["name"], var) for var in env]
    return [*out, *mine.values()]


def env_from(wf: Workflow, settings: PodSettings | None) -> list[dict[str, Any]]:
    """spec.envFrom, then the component's (Kubernetes: a later source wins a duplicate key)."""
    own = [v.model_dump(by_alias=True, exclude_none=True) for v in settings.env_from] if settings else []
    return [*user_env_from(wf), *own]


def s3_env(wf: Workflow) -> list[dict[str, Any]]:
    """The S3 compute log manager's credentials, from spec.computeLogs.s3.secretName (never literal)."""
    s3 = wf.spec.s3_logs
    if s3 is None or not s3.secret_name:
        return []
    return [_secret_env(var, s3.secret_name, key) for key, var in m.S3_SECRET_KEYS.items()]


def dagster_env(wf: Workflow, secret: str | None = None, loc: Location | None = None) -> list[dict[str, Any]]:
    return [*runtime_env(wf, loc), *postgres_env(wf, secret), *s3_env(wf), *user_env(wf)]


def base_volumes() -> list[dict[str, Any]]:
    return [{"name": "tmp", "emptyDir": {}}, {"name": "dagster-home", "emptyDir": {}}]


def instance_volume(wf: Workflow) -> dict[str, Any]:
    return {"name": "instance", "configMap": {"name": wf.instance_configmap}}


def workspace_volume(wf: Workflow) -> dict[str, Any]:
    return {"name": "workspace", "configMap": {"name": wf.workspace_configmap}}


def base_mounts() -> list[dict[str, Any]]:
    return [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dagster-home", "mountPath": DAGSTER_HOME},
        {
            "name": "instance",
            "mountPath": f"{DAGSTER_HOME}/dagster.yaml",
            "subPath": "dagster.yaml",
            "readOnly": True,
        },
    ]


def workspace_mount() -> dict[str, Any]:
    return {"name": "workspace", "mountPath": WORKSPACE_DIR, "readOnly": True}


def dbt_target_volume() -> dict[str, Any]:
    return {"name": "dbt-target", "emptyDir": {}}


def dbt_target_mount() -> dict[str, Any]:
    return {"name": "dbt-target", "mountPath": DBT_TARGET_PATH}


def drain_on_stop() -> dict[str, Any]:
    """A container lifecycle that keeps serving DRAIN_SECONDS before SIGTERM (the kubelet's own sleep action,
    Kubernetes >= 1.30: no shell or sleep binary in the image)."""
    return {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}}


def container(
    wf: Workflow,
    name: str,
    command: list[str],
    env: list[dict[str, Any]],
    settings: PodSettings | None = None,
    image: str | None = None,
    pull_policy: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Dagster container with spec.image (or the image given), envFrom (spec-level, then the component's)
    and the security settings; `env` already holds the component's env (component_env)."""
    body: dict[str, Any] = {
        "name": name,
        "image": image or wf.spec.image,
        "imagePullPolicy": pull_policy or wf.spec.image_pull_policy,
        "command": command,
        "env": env,
        "securityContext": container_security_context(),
    }
    sources = env_from(wf, settings)
    if sources:
        body["envFrom"] = sources
    body.update({k: v for k, v in extra.items() if v not in (None, {}, [])})
    return body


def pod_spec(
    wf: Workflow,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    settings: PodSettings | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Pod spec with scheduling constraints, the service account and the hardened pod security context."""
    spec: dict[str, Any] = {
        "serviceAccountName": wf.service_account,
        "automountServiceAccountToken": extra.pop("automount", False),
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": volumes,
    }
    spec.update(pull_secrets(wf))
    spec.update(scheduling(wf, settings))
    spec.update(extra)
    return spec


def pull_secrets(wf: Workflow) -> dict[str, Any]:
    """imagePullSecrets of every pod the workflow runs (none: the key is left out)."""
    if not wf.spec.image_pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": ref.name} for ref in wf.spec.image_pull_secrets]}


def scheduling(wf: Workflow, settings: PodSettings | None = None) -> dict[str, Any]:
    """nodeSelector, tolerations, affinity (spec-level, every pod of the workflow) with the component's on
    top: nodeSelector merged (the component's value wins), tolerations appended, affinity merged per kind
    (the component's nodeAffinity, podAffinity or podAntiAffinity replaces the spec-level one); and the
    component's priorityClassName."""
    node_selector = {**wf.spec.node_selector, **(settings.node_selector if settings else {})}
    tolerations = [*wf.spec.tolerations, *(settings.tolerations if settings else [])]
    affinity = {**(wf.spec.affinity or {}), **((settings.affinity if settings else None) or {})}
    out: dict[str, Any] = {}
    if node_selector:
        out["nodeSelector"] = node_selector
    if tolerations:
        out["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in tolerations]
    if affinity:
        out["affinity"] = affinity
    if settings is not None and settings.priority_class_name:
        out["priorityClassName"] = settings.priority_class_name
    return out


def labels(wf: Workflow, component: str, settings: PodSettings | None = None) -> dict[str, str]:
    """The component's extra labels under the operator's (which the model keeps them from naming)."""
    return {**(settings.labels if settings else {}), **wf.labels(component)}


def template_metadata(
    wf: Workflow,
    component: str,
    annotations: dict[str, str],
    checksum: str,
    settings: PodSettings | None = None,
    referenced: str = "",
) -> dict[str, Any]:
    """Labels, the user's annotations, and the checksums whose change rolls the pods."""
    rolls = {CHECKSUM_ANNOTATION: checksum, **({REFERENCED_ANNOTATION: referenced} if referenced else {})}
    return {"labels": labels(wf, component, settings), "annotations": {**annotations, **rolls}}


def with_overrides(template: dict[str, Any], settings: PodSettings, where: str) -> dict[str, Any]:
    """The pod template with the component's podOverrides merged last; a new container starts hardened."""
    return overrides.apply(
        template, settings.pod_overrides, where, {"securityContext": container_security_context()}
    )
