"""The inputs every renderer shares: the parsed CR and its identity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from phlo_dagster import constants as c
from phlo_operator import model as m
from phlo_operator import names
from phlo_operator.vocabulary import CODE_LOCATION, CODE_SERVER

CHECKSUM_ANNOTATION = "phlo.dev/config-checksum"
REFERENCED_ANNOTATION = "phlo.dev/referenced-checksum"  # ConfigMaps and Secrets the pods read env from
DBT_HASH_ANNOTATION = "phlo.dev/dbt-spec-hash"
DAGSTER_HOME = "/opt/dagster/dagster_home"
WORKSPACE_DIR = "/opt/dagster/workspace"
WORKSPACE_FILE = f"{WORKSPACE_DIR}/workspace.yaml"
DBT_TARGET_PATH = "/opt/phlo/dbt-target"
RUN_SECRET_SUFFIX = "postgres-runs"


@dataclasses.dataclass(frozen=True)
class Location:
    """One code location as the renderers see it: its settings resolved against the spec. Without
    spec.codeLocations the one location phlo comes from spec.image/codeServer.image, spec.workflows, spec.dbt
    and spec.codeServer, and its objects keep the names and labels they had before locations existed."""

    name: str
    image: str
    image_pull_policy: str
    workflows: m.Workflows
    dbt: m.Dbt
    server: m.CodeServer  # its code-server settings (a CodeLocation is a CodeServer)
    field: str  # where the settings are: spec.codeServer or spec.codeLocations[i]
    dbt_field: str  # spec.dbt or spec.codeLocations[i].dbt
    suffix: str  # child-name suffix: code-server for phlo

    @property
    def is_default(self) -> bool:
        """The location named phlo: today's names, component code-server, no location label."""
        return self.suffix == names.CODE_SERVER_SUFFIX

    @property
    def component(self) -> str:
        return CODE_SERVER if self.is_default else CODE_LOCATION

    @property
    def extra_labels(self) -> dict[str, str]:
        return {} if self.is_default else {names.LOCATION_LABEL: self.name}

    @property
    def key(self) -> str:
        """Its key in per-component maps (referenced checksums): code-server for phlo."""
        return CODE_SERVER if self.is_default else f"{CODE_LOCATION}/{self.name}"


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
    def locations(self) -> list[Location]:
        """The code locations, in spec order (one, phlo, without spec.codeLocations)."""
        spec = self.spec
        if not spec.code_locations:
            return [
                Location(
                    name=c.DEFAULT_CODE_LOCATION_NAME,
                    image=self.code_image,
                    image_pull_policy=spec.image_pull_policy,
                    workflows=spec.workflows,
                    dbt=spec.dbt,
                    server=spec.code_server,
                    field="spec.codeServer",
                    dbt_field="spec.dbt",
                    suffix=names.CODE_SERVER_SUFFIX,
                )
            ]
        return [
            Location(
                name=loc.name,
                image=loc.image or self.code_image,
                image_pull_policy=loc.image_pull_policy or spec.image_pull_policy,
                workflows=loc.workflows,
                dbt=loc.dbt,
                server=loc,
                field=f"spec.codeLocations[{i}]",
                dbt_field=f"spec.codeLocations[{i}].dbt",
                suffix=names.location_suffix(loc.name),
            )
            for i, loc in enumerate(spec.code_locations)
        ]

    def location_labels(self, loc: Location) -> dict[str, str]:
        return {**self.labels(loc.component), **loc.extra_labels}

    def location_selector(self, loc: Location) -> dict[str, str]:
        return {**self.selector(loc.component), **loc.extra_labels}

    def location_metadata(self, loc: Location, suffix: str | None = None) -> dict[str, Any]:
        meta = self.metadata(suffix or loc.suffix, loc.component)
        meta["labels"] = self.location_labels(loc)
        return meta

    def location_service(self, loc: Location) -> str:
        return self.child(loc.suffix)

    @staticmethod
    def location_service_port(loc: Location) -> int:
        """The port of a location's Service, in workspace.yaml: phlo's is its gRPC port (as before
        codeLocations existed); another's is fixed, so changing its port leaves workspace.yaml (and with it
        the webserver and the daemon) alone."""
        return loc.server.port if loc.is_default else c.DEFAULT_CODE_SERVER_PORT

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
        """The Service's http port: through the auth proxy when spec.auth is enabled."""
        base = f"http://{self.webserver_service}.{self.namespace}.svc:{self.spec.webserver.port}"
        return base + (self.spec.webserver.path_prefix or "")

    @property
    def operator_url(self) -> str:
        """Where the operator's GraphQL calls go: with spec.auth, the Service's `direct` port (the webserver
        without the proxy, which the webserver's NetworkPolicy admits from the operator only)."""
        if not self.spec.auth.enabled:
            return self.webserver_url
        base = f"http://{self.webserver_service}.{self.namespace}.svc:{self.spec.auth.port}"
        return base + (self.spec.webserver.path_prefix or "")


def digest(value: Any, length: int = 16) -> str:
    """Stable hash of any JSON-able value (used for checksums and the dbt Job name)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]
