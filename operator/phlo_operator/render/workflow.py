"""The inputs every renderer shares: the parsed CR and its identity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from phlo_operator import model as m
from phlo_operator import names

CHECKSUM_ANNOTATION = "phlo.dev/config-checksum"
REFERENCED_ANNOTATION = "phlo.dev/referenced-checksum"  # ConfigMaps and Secrets the pods read env from
DBT_HASH_ANNOTATION = "phlo.dev/dbt-spec-hash"
DAGSTER_HOME = "/opt/dagster/dagster_home"
WORKSPACE_DIR = "/opt/dagster/workspace"
WORKSPACE_FILE = f"{WORKSPACE_DIR}/workspace.yaml"
DBT_TARGET_PATH = "/opt/phlo/dbt-target"
RUN_SECRET_SUFFIX = "postgres-runs"


@dataclasses.dataclass(frozen=True)
class Workflow:
    """One PhloWorkflow: identity plus the validated spec."""

    name: str
    namespace: str
    uid: str
    spec: m.PhloWorkflowSpec
    generation: int = 1

    @property
    def code_image(self) -> str:
        """The image of the code location: code server, dbt compile, run pods."""
        return self.spec.code_server.image or self.spec.image

    @property
    def run_namespace(self) -> str:
        return self.spec.run_launcher.namespace or self.namespace

    def child(self, suffix: str) -> str:
        return names.child(self.name, suffix)

    def labels(self, component: str) -> dict[str, str]:
        return names.labels(self.name, component)

    def selector(self, component: str) -> dict[str, str]:
        return names.selector(self.name, component)

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": m.API_VERSION,
            "kind": m.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(
        self, suffix: str, component: str, *, owned: bool = True, namespace: str | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.child(suffix),
            "namespace": namespace or self.namespace,
            "labels": self.labels(component),
        }
        if owned and (namespace is None or namespace == self.namespace):
            meta["ownerReferences"] = [self.owner_reference()]
        return meta

    # Names shared between renderers.
    @property
    def instance_configmap(self) -> str:
        return self.child("instance")

    @property
    def workspace_configmap(self) -> str:
        return self.child("workspace")

    @property
    def code_server_service(self) -> str:
        return self.child("code-server")

    @property
    def webserver_service(self) -> str:
        return self.child("webserver")

    @property
    def postgres_service(self) -> str:
        return self.child("postgres")

    @property
    def postgres_secret(self) -> str:
        return self.spec.storage.postgres.secret_name or self.child("postgres")

    @property
    def run_postgres_secret(self) -> str:
        """The Secret run pods read: a copy in another runLauncher.namespace (secretKeyRef cannot cross)."""
        if self.run_namespace == self.namespace:
            return self.postgres_secret
        return self.child(RUN_SECRET_SUFFIX)

    @property
    def service_account(self) -> str:
        return self.spec.service_account_name or self.child("dagster")

    @property
    def postgres_service_account(self) -> str:
        return self.child("postgres")

    @property
    def webserver_url(self) -> str:
        base = f"http://{self.webserver_service}.{self.namespace}.svc:{self.spec.webserver.port}"
        return base + (self.spec.webserver.path_prefix or "")


def digest(value: Any, length: int = 16) -> str:
    """Stable hash of any JSON-able value (used for checksums and the dbt Job name)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]
