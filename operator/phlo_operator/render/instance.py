"""The instance upgrade's two Jobs, both in the image the webserver and the daemon run (spec.image):
the version gate reads the Dagster version (and the schema revision it expects) from a new image; the migrate
Job runs `dagster instance migrate` against the instance database and reports the revision it left. Each
writes one JSON object to its termination message, which the reconciler reads from the pod."""

from __future__ import annotations

import json
import re
from typing import Any

from phlo_operator.render import pods
from phlo_operator.render.shared import Shared
from phlo_operator.render.workflow import Workflow, digest
from phlo_operator.vocabulary import DAGSTER_VERSION, INSTANCE_MIGRATE

VERSION_ANNOTATION = "phlo.dev/dagster-version"  # on the migrate Job and its pod: the version it migrates to
IMAGE_ANNOTATION = "phlo.dev/image"
TERMINATION_LOG = "/dev/termination-log"

# Run by the image's own Python: needs only dagster (the head revision also dagster-postgres and alembic).
VERSION_SCRIPT = f"""
import json
out = {{}}
try:
    import dagster
    out["dagsterVersion"] = dagster.__version__
    try:
        from alembic.script import ScriptDirectory
        from dagster_postgres.run_storage import run_storage
        from dagster_postgres.utils import pg_alembic_config
        head = ScriptDirectory.from_config(pg_alembic_config(run_storage.__file__)).as_revision_number("head")
        out["schemaHead"] = str(head)
    except Exception:
        pass
finally:
    with open({TERMINATION_LOG!r}, "w") as log:
        log.write(json.dumps(out))
print(json.dumps(out))
"""

# Only the storage sections of DAGSTER_HOME's dagster.yaml go to the migration: `dagster instance migrate`
# builds every configured part of the instance, and the run launcher (K8sRunLauncher) would need the
# Kubernetes API (an in-cluster token) that a pod migrating a database has no business holding.
MIGRATE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
MIGRATE_HOME = "/tmp/phlo-migrate"

# `dagster instance migrate` with those sections, then the alembic revision the database is at.
# A failure reports the last line of the command's output (Dagster's error, never the environment).
MIGRATE_SCRIPT = f"""
import json, os, subprocess, sys
import yaml
def say(out):
    with open({TERMINATION_LOG!r}, "w") as log:
        log.write(json.dumps(out)[:3500])
with open(os.path.join(os.environ["DAGSTER_HOME"], "dagster.yaml")) as f:
    config = yaml.safe_load(f) or {{}}
os.makedirs({MIGRATE_HOME!r}, exist_ok=True)
with open(os.path.join({MIGRATE_HOME!r}, "dagster.yaml"), "w") as f:
    yaml.safe_dump({{k: v for k, v in config.items() if k in {MIGRATE_KEYS!r}}}, f)
os.environ["DAGSTER_HOME"] = {MIGRATE_HOME!r}
command = [sys.executable, "-m", "dagster", "instance", "migrate"]
done = subprocess.run(command, capture_output=True, text=True)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
if done.returncode:
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    say({{"error": (lines[-1] if lines else "exit code %d" % done.returncode)[:1000]}})
    sys.exit(1)
import dagster
from dagster import DagsterInstance
with DagsterInstance.get() as instance:
    revision, head = instance.run_storage.alembic_version()
say({{"dagsterVersion": dagster.__version__, "schemaVersion": str(revision), "schemaHead": str(head)}})
"""

_CREDENTIALS = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def gate_name(wf: Workflow, image: str) -> str:
    """One version gate per image: a restart finds the same Job."""
    return wf.child(f"version-{digest(image, length=8)}")


def migrate_name(wf: Workflow, image: str, version: str) -> str:
    """One migration per (image, Dagster version): a restart finds the same Job, a fixed image another."""
    return wf.child(f"migrate-{digest([image, version], length=8)}")


def _job(
    wf: Workflow,
    component: str,
    name: str,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    annotations: dict[str, str],
    backoff: int,
) -> dict[str, Any]:
    """A Job in spec.image with the daemon's pod settings (scheduling, annotations, pod security)."""
    daemon = wf.spec.daemon
    pod = pods.pod_spec(wf, [container], volumes, daemon, restartPolicy="Never")
    labels = pods.labels(wf, component, daemon)
    meta = wf.metadata("x", component)
    meta.update(name=name, labels=labels, annotations=dict(annotations))
    template = {
        "metadata": {"labels": dict(labels), "annotations": {**daemon.pod_annotations, **annotations}},
        "spec": pod,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {"backoffLimit": backoff, "template": template},
    }


def version_gate_job(wf: Workflow, image: str) -> dict[str, Any]:
    """Reads the Dagster version from `image`; needs neither the database nor the instance config."""
    main = pods.container(
        wf,
        DAGSTER_VERSION,
        ["python", "-c", VERSION_SCRIPT],
        [{"name": "HOME", "value": "/tmp"}],
        None,
        image=image,
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
        resources=pods.resources(wf.spec.daemon.resources),
    )
    volumes = [{"name": "tmp", "emptyDir": {}}]
    return _job(wf, DAGSTER_VERSION, gate_name(wf, image), main, volumes, {IMAGE_ANNOTATION: image}, 1)


def migrate_job(wf: Workflow, shared: Shared, image: str, version: str) -> dict[str, Any]:
    """`dagster instance migrate` in the new image with the rendered dagster.yaml and the storage Secret by
    reference (the daemon's env and mounts)."""
    main = pods.container(
        wf,
        INSTANCE_MIGRATE,
        ["python", "-c", MIGRATE_SCRIPT],
        pods.component_env(shared.env, wf.spec.daemon),
        wf.spec.daemon,
        image=image,
        volumeMounts=pods.base_mounts(),
        resources=pods.resources(wf.spec.daemon.resources),
    )
    volumes = [*pods.base_volumes(), pods.instance_volume(wf)]
    annotations = {VERSION_ANNOTATION: version, IMAGE_ANNOTATION: image}
    # Retried twice (a database restarting); a migration that fails three times waits for a new image.
    return _job(wf, INSTANCE_MIGRATE, migrate_name(wf, image, version), main, volumes, annotations, 2)


def report(message: str | None) -> dict[str, str]:
    """The JSON object a gate or migrate Job wrote to its termination message ({} when unreadable); string
    values only, credentials in a URL masked."""
    try:
        data = json.loads(message or "")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): _CREDENTIALS.sub(r"\1***@", str(val)) for k, val in data.items() if val is not None}
