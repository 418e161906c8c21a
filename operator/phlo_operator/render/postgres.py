"""Managed PostgreSQL: StatefulSet with a PVC template, a headless Service and a generated Secret."""

from __future__ import annotations

from typing import Any

from phlo_operator.render import pods
from phlo_operator.render.workflow import RUN_SECRET_SUFFIX, Workflow
from phlo_operator.vocabulary import POSTGRES

COMPONENT = POSTGRES
SECRET_KEYS = ("host", "port", "user", "password", "database")
PORT = 5432
USER = "dagster"
DATABASE = "dagster"
# The official alpine image's postgres user.
POSTGRES_UID = 70


def claim_name(wf: Workflow) -> str:
    """The PVC the StatefulSet controller creates from the volumeClaimTemplate "data" for pod 0."""
    return f"data-{wf.postgres_service}-0"


def secret(wf: Workflow, password: str) -> dict[str, Any]:
    """Created once and never overwritten. Owned by the CR only with deletionPolicy Delete."""
    delete = wf.spec.storage.postgres.deletion_policy == "Delete"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": wf.metadata(COMPONENT, COMPONENT, owned=delete),
        "type": "Opaque",
        "stringData": {
            "host": f"{wf.postgres_service}.{wf.namespace}.svc",
            "port": str(PORT),
            "user": USER,
            "password": password,
            "database": DATABASE,
        },
    }


def run_secret_copy(wf: Workflow, data: dict[str, str]) -> dict[str, Any]:
    """The storage Secret's keys copied into another run namespace, where run pods read them. Not owned
    (owner references cannot cross namespaces): the operator deletes it when the CR is deleted."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": wf.metadata(RUN_SECRET_SUFFIX, COMPONENT, namespace=wf.run_namespace),
        "type": "Opaque",
        "data": {key: data[key] for key in SECRET_KEYS},
    }


def service_account(wf: Workflow) -> dict[str, Any]:
    """PostgreSQL's own ServiceAccount: bound to no Role and without a token, not the namespace's default."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": wf.metadata(COMPONENT, COMPONENT),
        "automountServiceAccountToken": False,
    }


def service(wf: Workflow) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": wf.metadata(COMPONENT, COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": wf.selector(COMPONENT),
            "ports": [{"name": "postgres", "port": PORT, "targetPort": "postgres", "protocol": "TCP"}],
        },
    }


def statefulset(wf: Workflow) -> dict[str, Any]:
    """PVC kept or deleted with the StatefulSet per deletionPolicy (persistentVolumeClaimRetentionPolicy)."""
    pg = wf.spec.storage.postgres
    secret_name = wf.postgres_secret

    def from_secret(env: str, key: str) -> dict[str, Any]:
        return {"name": env, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}

    container: dict[str, Any] = {
        "name": "postgres",
        "image": pg.image,
        "imagePullPolicy": wf.spec.image_pull_policy,
        "env": [
            from_secret("POSTGRES_USER", "user"),
            from_secret("POSTGRES_PASSWORD", "password"),
            from_secret("POSTGRES_DB", "database"),
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "postgres", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {
                "command": ["sh", "-c", 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1']
            },
            # pg_isready is a process of its own: the 1 s default timed out on a loaded node, each failure
            # took the only database out of its Service and the daemons lost it (bench, 5 workflows).
            "periodSeconds": 10,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": pods.container_security_context(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    res = pods.resources(pg.resources)
    if res:
        container["resources"] = res
    pvc_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": pg.storage_size}},
    }
    if pg.storage_class_name:
        pvc_spec["storageClassName"] = pg.storage_class_name
    pod: dict[str, Any] = {
        "serviceAccountName": wf.postgres_service_account,
        "automountServiceAccountToken": False,
        **pods.pull_secrets(wf),
        "securityContext": pods.pod_security_context(POSTGRES_UID),
        "containers": [container],
        "volumes": [{"name": "run", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
        **pods.scheduling(wf),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": wf.metadata(COMPONENT, COMPONENT),
        "spec": {
            "replicas": 1,
            "serviceName": wf.postgres_service,
            "selector": {"matchLabels": wf.selector(COMPONENT)},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": pg.deletion_policy,
                "whenScaled": "Retain",
            },
            "template": {"metadata": {"labels": wf.labels(COMPONENT)}, "spec": pod},
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "labels": wf.labels(COMPONENT)},
                    "spec": pvc_spec,
                }
            ],
        },
    }
