"""The code location through real Dagster processes: `dagster asset materialize -m phlo_dagster.definitions`
on the quickstart (SQLite and PostgreSQL storage), dbt models joined to the ingestion spec, the gRPC code
server, and a broken workflow module stopping the load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"
BIN = Path(sys.executable).parent


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHLO_", "DAGSTER_", "WORKFLOWS_"))}
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "PHLO_DATA_DIR": str(tmp / "data"),
            "PHLO_DBT_ENABLED": "true",
            "PHLO_DBT_PROJECT_DIR": str(QUICKSTART / "dbt"),
            "PHLO_DBT_TARGET_PATH": str(tmp / "dbt-target"),
            "WORKFLOWS_PATH": str(QUICKSTART / "workflows"),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


def _dagster(
    env: dict[str, str], *args: str, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dagster"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _materialize(env: dict[str, str], select: str, cwd: Path, partition: str | None = None):
    args = ["asset", "materialize", "-m", "phlo_dagster.definitions", "--select", select]
    if partition:
        args += ["--partition", partition]
    return _dagster(env, *args, cwd=cwd)


def _instance(env: dict[str, str]):
    import dagster as dg

    old = os.environ.copy()
    os.environ.update({k: v for k, v in env.items() if k.startswith(("DAGSTER_", "PHLO_"))})
    try:
        return dg.DagsterInstance.get()
    finally:
        os.environ.clear()
        os.environ.update(old)


def _check_evaluations(instance, key) -> dict[str, object]:
    import dagster as dg
    from dagster._core.events import DagsterEventType

    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION), limit=100
    )
    out = {}
    for rec in records:
        data = rec.event_log_entry.dagster_event.event_specific_data
        if data.asset_key == key:
            out[data.check_name] = data
    return out


def test_quickstart_materialize_on_sqlite(tmp_path, quickstart_plugin):
    import dagster as dg
    import duckdb

    env = _env(tmp_path, PYTHONPATH=quickstart_plugin)  # the example plugin, as `make demo` runs it
    done = _materialize(env, "raw/orders", cwd=tmp_path, partition="2024-01-05")
    assert done.returncode == 0, done.stderr[-3000:]

    instance = _instance(env)
    key = dg.AssetKey(["raw", "orders"])
    event = instance.get_latest_materialization_event(key)
    assert event is not None
    mat = event.asset_materialization
    assert mat is not None and mat.partition == "2024-01-05"
    assert mat.metadata["rows"].value >= 3
    checks = _check_evaluations(instance, key)
    assert checks["has_rows"].passed is True
    assert checks["amounts_positive"].passed is True
    assert checks["amounts_positive"].severity == dg.AssetCheckSeverity.WARN
    runs = instance.get_runs()
    assert runs and runs[0].status == dg.DagsterRunStatus.SUCCESS

    # dbt models downstream of the spec, via the dbt source raw.orders.
    built = _materialize(env, "stg_orders,daily_revenue,reports/revenue_summary", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert instance.get_latest_materialization_event(dg.AssetKey(["daily_revenue"])) is not None
    # ...and a spec downstream of a dbt model, run after it in the same run.
    report = instance.get_latest_materialization_event(dg.AssetKey(["reports", "revenue_summary"]))
    assert report is not None and report.asset_materialization.metadata["days"].value == 1
    with duckdb.connect(str(tmp_path / "data" / "quickstart.duckdb"), read_only=True) as conn:
        rows = conn.execute("select order_date, orders from daily_revenue").fetchall()
    assert [str(r[0]) for r in rows] == ["2024-01-05"]
    assert rows[0][1] == mat.metadata["rows"].value

    # The plugin's static-partitioned asset (entry points) through the same code location.
    plugin = _materialize(env, "ref/regions", cwd=tmp_path, partition="eu")
    assert plugin.returncode == 0, plugin.stderr[-3000:]
    event = instance.get_latest_materialization_event(dg.AssetKey(["ref", "regions"]))
    assert event is not None and event.asset_materialization.metadata["name"].value == "Europe"


def test_dbt_lineage_and_schedule_in_defs(tmp_path):
    code = (
        "import dagster as dg\n"
        "from phlo_dagster.definitions import defs\n"
        "g = defs.resolve_asset_graph()\n"
        "print(sorted(k.to_user_string() for k in g.get(dg.AssetKey(['stg_orders'])).parent_keys))\n"
        "report = g.get(dg.AssetKey(['reports', 'revenue_summary']))\n"
        "print(sorted(k.to_user_string() for k in report.parent_keys))\n"
        "print(defs.get_schedule_def('raw__orders_schedule').cron_schedule)\n"
        "print(defs.metadata['phlo/definitions_build_seconds'].value > 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:4] == ["['raw/orders']", "['daily_revenue']", "0 2 * * *", "True"]


def test_broken_workflow_module_stops_the_load(tmp_path):
    workflows = tmp_path / "workflows"
    shutil.copytree(QUICKSTART / "workflows", workflows)
    broken = workflows / "zz_broken.py"
    broken.write_text("import os\n\nTOKEN = os.environ['MISSING_TOKEN_FOR_TEST']\n")
    env = _env(tmp_path, WORKFLOWS_PATH=str(workflows), PHLO_DBT_ENABLED="false")
    done = _materialize(env, "raw/orders", cwd=tmp_path, partition="2024-01-05")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert f"{broken}:3" in output
    assert "KeyError" in output and "MISSING_TOKEN_FOR_TEST" in output
    # Nothing ran: no partial graph was served.
    import dagster as dg

    assert _instance(env).get_latest_materialization_event(dg.AssetKey(["raw", "orders"])) is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_grpc_code_server_serves_the_location(tmp_path):
    env = _env(tmp_path, PHLO_DBT_ENABLED="false")
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "dagster"),
            "api",
            "grpc",
            "-m",
            "phlo_dagster.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            check = _dagster(
                env, "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1", cwd=tmp_path, timeout=60
            )
            if check.returncode == 0:
                healthy = True
                break
            time.sleep(2)
        assert healthy, (
            proc.stderr.read() if proc.poll() is not None and proc.stderr else "not healthy in time"
        )
        import dagster as dg
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        listing = dg.deserialize_value(client.list_repositories())
        assert listing.repository_symbols, f"code server lists no repository: {listing}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; dagster-postgres installs psycopg2, so name the driver.
DAGSTER_YAML_PG = """
storage:
  postgres:
    postgres_db:
      scheme: postgresql+psycopg2
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      username: {env: DAGSTER_PG_USER}
      password: {env: DAGSTER_PG_PASSWORD}
      db_name: {env: DAGSTER_PG_DB}
"""


def test_quickstart_materialize_on_postgres(tmp_path, postgres):
    import dagster as dg

    database = f"phlo_rt_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    params = postgres.params(database)
    env = _env(
        tmp_path,
        PHLO_DBT_ENABLED="false",
        DAGSTER_PG_HOST=str(params["host"]),
        DAGSTER_PG_PORT=str(params["port"]),
        DAGSTER_PG_USER=str(params["user"]),
        DAGSTER_PG_PASSWORD=str(params["password"]),
        DAGSTER_PG_DB=str(params["database"]),
    )
    (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text(DAGSTER_YAML_PG)
    done = _materialize(env, "raw/orders", cwd=tmp_path, partition="2024-02-01")
    assert done.returncode == 0, done.stderr[-3000:]
    instance = _instance(env)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "orders"]))
    assert event is not None and event.asset_materialization.partition == "2024-02-01"
    assert _check_evaluations(instance, dg.AssetKey(["raw", "orders"]))["has_rows"].passed is True
    assert instance.get_runs()[0].status == dg.DagsterRunStatus.SUCCESS


GATES = """
from phlo_dagster.capabilities import (
    AssetCheckSpec, AssetSpec, CheckResult, MaterializeResult, RunSpec, register_asset, register_check,
)


def empty(context):
    yield MaterializeResult(metadata={"rows": 0})
    yield CheckResult(check_name="has_rows", passed=False)


def ok(context):
    return MaterializeResult(metadata={"rows": 1})


register_asset(AssetSpec(key="raw.declared", run=RunSpec(fn=empty), checks=[
    AssetCheckSpec(name="has_rows", asset_key="raw.declared", blocking=True)]))
register_asset(AssetSpec(key="mart.after_declared", deps=["raw.declared"], run=RunSpec(fn=ok)))

register_asset(AssetSpec(key="raw.checked", run=RunSpec(fn=ok)))
register_check(AssetCheckSpec(name="never", asset_key="raw.checked", fn=lambda c: False, blocking=True))
register_asset(AssetSpec(key="mart.after_checked", deps=["raw.checked"], run=RunSpec(fn=ok)))

register_asset(AssetSpec(key="raw.warned", run=RunSpec(fn=ok)))
register_check(AssetCheckSpec(
    name="soft", asset_key="raw.warned", fn=lambda c: False, blocking=True, severity="WARN"))
register_asset(AssetSpec(key="mart.after_warned", deps=["raw.warned"], run=RunSpec(fn=ok)))
"""


def test_blocking_checks_stop_downstream_in_a_real_run(tmp_path):
    """Declarative and function checks, blocking with ERROR severity, keep downstream assets from
    materializing in a `dagster asset materialize` run; a failing WARN check lets them run."""
    import dagster as dg

    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "gates.py").write_text(GATES)
    env = _env(
        tmp_path,
        WORKFLOWS_PATH=str(tmp_path / "workflows"),
        PHLO_DBT_ENABLED="false",
        PHLO_PLUGINS_ENABLED="false",
    )
    instance = _instance(env)
    for upstream, check, downstream, blocked in (
        ("declared", "has_rows", "after_declared", True),
        ("checked", "never", "after_checked", True),
        ("warned", "soft", "after_warned", False),
    ):
        done = _materialize(env, f"raw/{upstream}+", cwd=tmp_path)
        assert (done.returncode != 0) is blocked, done.stderr[-3000:]
        raw_key, mart_key = dg.AssetKey(["raw", upstream]), dg.AssetKey(["mart", downstream])
        assert instance.get_latest_materialization_event(raw_key) is not None
        assert (instance.get_latest_materialization_event(mart_key) is None) is blocked, downstream
        evaluation = _check_evaluations(instance, raw_key)[check]
        assert evaluation.passed is False
        expected = dg.AssetCheckSeverity.ERROR if blocked else dg.AssetCheckSeverity.WARN
        assert evaluation.severity == expected


def test_dagster_dev_serves_the_location(tmp_path):
    """`dagster dev -m phlo_dagster.definitions` (webserver, daemon, code server) serves the specs."""
    import dagster as dg

    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "gates.py").write_text(GATES)
    env = _env(
        tmp_path,
        WORKFLOWS_PATH=str(tmp_path / "workflows"),
        PHLO_DBT_ENABLED="false",
        PHLO_PLUGINS_ENABLED="false",
    )
    port = _free_port()
    log_path = tmp_path / "dagster-dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "dagster"),
                "dev",
                "-m",
                "phlo_dagster.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        info = None
        while info is None:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "dagster dev did not serve within 180 s"
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as resp:
                    info = json.loads(resp.read())
            except OSError:
                time.sleep(1)
        assert info["dagster_version"] == dg.__version__
        query = {"query": "{ assetNodes { assetKey { path } } }"}
        request = urllib.request.Request(
            f"{base}/graphql", data=json.dumps(query).encode(), headers={"Content-Type": "application/json"}
        )
        keys: set[str] = set()
        while time.monotonic() < deadline and "raw/declared" not in keys:  # the location may still load
            with urllib.request.urlopen(request, timeout=60) as resp:
                nodes = json.loads(resp.read())["data"]["assetNodes"]
            keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
            time.sleep(0.5)
        assert {"raw/declared", "mart/after_declared", "raw/checked", "raw/warned"} <= keys, keys
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
