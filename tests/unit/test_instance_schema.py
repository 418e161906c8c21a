"""The operator's check of dagster.yaml (phlo_operator.instance_schema) against Dagster's own: the exported
schema is current, and for valid and broken configs the operator refuses what Dagster refuses, at the path
Dagster names."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from dagster._config import validate_config
from dagster._config.errors import EvaluationError
from dagster._config.stack import get_friendly_path_info
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config_schema, validate_concurrency_config
from dagster._serdes.config_class import ConfigurableClassData
from phlo_operator import generate, instance_schema
from phlo_operator.model import parse_spec
from phlo_operator.render import Workflow, shared

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def rendered(**spec: Any) -> dict[str, Any]:
    """The dagster.yaml the operator renders for a spec with every typed instance setting."""
    w = Workflow("demo", "team", "uid", parse_spec({"image": "img:1", "dbt": {"enabled": True}, **spec}))
    return copy.deepcopy(shared(w).instance)


def dagster_problems(config: dict[str, Any]) -> set[str]:
    """The paths Dagster itself reports for this dagster.yaml: instance rules, schema, class configs."""
    try:
        if "concurrency" in config:
            validate_concurrency_config(config)
    except DagsterInvalidConfigError:
        return {"<instance rule>"}
    result = validate_config(dagster_instance_config_schema(), config)
    paths = {_path(e) for e in result.errors or []}
    for key in ("run_coordinator", "run_launcher"):
        if result.success and key in config:
            data = ConfigurableClassData(config[key]["module"], config[key]["class"], "")
            from dagster._serdes import class_from_code_pointer

            klass: Any = class_from_code_pointer(data.module_name, data.class_name)
            checked = validate_config(klass.config_type(), config[key].get("config") or {})
            paths |= {_path(e, f"root:{key}:config") for e in checked.errors or []}
    return paths


def _path(error: EvaluationError, prefix: str = "root") -> str:
    path = get_friendly_path_info(error.stack)[1] or "root"
    return prefix + path.removeprefix("root")


def operator_problems(config: dict[str, Any]) -> set[str]:
    found = set()
    for problem in instance_schema.problems(config):
        path = problem.split(": ", 1)[0]
        found.add("<instance rule>" if "excluded by" in problem or "outside" in problem else path)
    return found


def test_the_exported_schema_is_dagsters_current_one() -> None:
    committed = (ROOT / generate.INSTANCE_SCHEMA).read_text()
    assert committed == generate.instance_schema_text(), "stale: run `make generate`"
    import dagster

    assert instance_schema.dagster_version() == dagster.__version__


def test_what_the_operator_renders_is_valid_for_dagster() -> None:
    config = rendered(
        runCoordinator={
            "maxConcurrentRuns": 2,
            "tagConcurrencyLimits": [{"key": "team", "value": "a", "limit": 1}],
        },
        runRetries={"maxRetries": 3, "retryOnAssetOrOpFailure": False},
        retention={"schedule": {"success": 30, "skipped": 1}, "sensor": {"skipped": 7, "failure": -1}},
    )
    assert dagster_problems(config) == set()
    assert instance_schema.problems(config) == []
    pools = rendered(runCoordinator={"maxConcurrentRuns": 4}, concurrency={"pools": {"defaultLimit": 3}})
    assert dagster_problems(pools) == set()
    assert instance_schema.problems(pools) == []


def _set(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


BROKEN: list[tuple[str, Any, str]] = [
    ("bogus", 1, "root"),
    ("telemetry.enabled", "yes", "root:telemetry:enabled"),
    ("run_monitoring.poll_interval_seconds", True, "root:run_monitoring:poll_interval_seconds"),
    ("run_coordinator.config.bogus", 1, "root:run_coordinator:config"),
    ("run_coordinator.config.max_concurrent_runs", "2", "root:run_coordinator:config:max_concurrent_runs"),
    (
        "run_coordinator.config.tag_concurrency_limits",
        [{"key": "a"}],
        "root:run_coordinator:config:tag_concurrency_limits[0]",
    ),
    ("run_launcher.config.job_namespace", 3, "root:run_launcher:config:job_namespace"),
    ("run_launcher.config.unknown_knob", 3, "root:run_launcher:config"),
    ("retention.schedule.purge_after_days", {"later": 1}, "root:retention:schedule:purge_after_days"),
    ("retention.sensor.purge_after_days", "x", "root:retention:sensor:purge_after_days"),
    ("storage", {"postgres": {}, "sqlite": {}}, "root:storage"),
    ("storage", {"nosuch": {}}, "root:storage"),
    ("python_logs.managed_python_loggers", "x", "root:python_logs:managed_python_loggers"),
    ("run_retries.max_retries", None, "root:run_retries:max_retries"),
    ("sensors.num_workers", 1.5, "root:sensors:num_workers"),
    ("concurrency.pools.default_limit", 5000, "<instance rule>"),
    ("concurrency.runs", {"max_concurrent_runs": 1}, "<instance rule>"),
]


@pytest.mark.parametrize(("path", "value", "where"), BROKEN, ids=[b[0] for b in BROKEN])
def test_the_operator_refuses_what_dagster_refuses_at_the_same_path(
    path: str, value: Any, where: str
) -> None:
    config = _set(rendered(runCoordinator={"maxConcurrentRuns": 2}), path, value)
    theirs, ours = dagster_problems(config), operator_problems(config)
    assert where in theirs, theirs
    assert ours == theirs


def test_a_public_dagster_module_name_finds_the_class_config() -> None:
    """dagster.core.x is read as dagster._core.x, as Dagster reads it: the class config is still checked."""
    config = {
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"max_concurrent_runs": -2},
        }
    }
    [problem] = instance_schema.problems(config)
    assert problem.startswith("root:run_coordinator:config:max_concurrent_runs: -2 is below -1")
