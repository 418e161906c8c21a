"""The migrate Job's script (phlo_operator/render/instance.py) run as the Job runs it: `python -c` with
DAGSTER_HOME holding the operator's rendered dagster.yaml, in a process with no Kubernetes credentials.

The real node found why this test exists (tests/e2e/test_realnode_dagster_upgrade.py, 2026-12-07):
`dagster instance migrate` builds every configured part of the instance, so with the full dagster.yaml it
constructed the K8sRunLauncher, which asked for an in-cluster token the migrate pod does not have ("Service
token file does not exist"), three times, and the upgrade stopped at MigrationFailed. The script now hands
the migration only the storage sections. Mutation (run once, red): with the full dagster.yaml passed through,
this test failed on the K8sRunLauncher's in-cluster config ("ConfigException: Service host/port is not set").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance
from phlo_operator.model import parse_spec
from phlo_operator.render import config, instance
from phlo_operator.render.workflow import Workflow

pytestmark = pytest.mark.integration


def _rendered_with_sqlite(base_dir: Path) -> dict[str, object]:
    """Every section the operator renders (K8sRunLauncher, run monitoring, run queue, retention), with the
    storage pointed at SQLite: the test has no PostgreSQL, and the e2e test covers the PostgreSQL one."""
    spec = parse_spec(
        {
            "image": "img:1",
            "runCoordinator": {"maxConcurrentRuns": 3},
            "retention": {"schedule": {"skipped": 7}},
        }
    )
    rendered = config.dagster_yaml(Workflow(name="demo", namespace="team", uid="uid-1", spec=spec))
    assert rendered["run_launcher"]["class"] == "K8sRunLauncher"
    rendered["storage"] = {"sqlite": {"base_dir": str(base_dir)}}
    return rendered


def test_the_migrate_script_needs_only_the_storage(tmp_path: Path) -> None:
    home, storage, log = tmp_path / "home", tmp_path / "storage", tmp_path / "termination-log"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(_rendered_with_sqlite(storage)))
    script = instance.MIGRATE_SCRIPT.replace(instance.TERMINATION_LOG, str(log)).replace(
        instance.MIGRATE_HOME, str(tmp_path / "migrate-home")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG"))}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(log.read_text()) if log.exists() else {}
    assert done.returncode == 0, (report, done.stderr[-2000:])
    with DagsterInstance.from_config(str(tmp_path / "migrate-home")) as migrated:
        revision, head = migrated.run_storage.alembic_version()
    assert report["schemaVersion"] == str(revision) == str(head), report
    assert report["dagsterVersion"], report
    # The migration read the workflow's storage, not a copy of it: the database is where dagster.yaml said.
    assert any(storage.iterdir())
