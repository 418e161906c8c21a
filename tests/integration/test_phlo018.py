"""Side by side with PyPI's phlo-dagster 0.18.0, in Python 3.12 environments with phlo 0.18.0 and its plugins.

The environments (tests/fixtures/phlo018/envs.py) are plain `pip install`s cached under
~/.cache/phlo-dagster/envs; the project (tests/fixtures/phlo018/project) is written the way Phlo's docs show.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.phlo018 import envs

pytestmark = pytest.mark.integration

FIXTURE = envs.REPO / "tests" / "fixtures" / "phlo018"
PROBE = FIXTURE / "probe.py"
MODULES = {"ours": "phlo_dagster.definitions", "original": "phlo_dagster.framework.definitions"}
PARTITION = "2025-01-02"
OUR_COMMANDS = ("dev", "materialize", "webserver", "daemon", "dbt", "backfill", "status", "logs")
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def ours() -> envs.Env:
    return envs.ours()


@pytest.fixture(scope="module")
def original() -> envs.Env:
    return envs.original()


@pytest.fixture(scope="module")
def oldest() -> envs.Env:
    """phlo 0.16.2 (the oldest Phlo this package is a plugin of) and this package."""
    return envs.oldest_phlo()


def make_project(tmp_path: Path, name: str = "project") -> Path:
    project = tmp_path / name
    shutil.copytree(FIXTURE / "project", project)
    return project


def env_vars(env: envs.Env, project: Path, *, resources: bool = True, **extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PHLO", "DAGSTER_", "WORKFLOWS_", "DBT_", "VIRTUAL_ENV", "PYTHON"))
    }
    home = project / ".dagster_home"
    home.mkdir(exist_ok=True)
    base.update(
        {
            "PATH": f"{env.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(env.root),
            "PHLO018_DUCKDB": str(project / "events.duckdb"),
            "PHLO018_RESOURCES": "1" if resources else "0",
            "WORKFLOWS_PATH": "workflows",
            "DAGSTER_HOME": str(home),
            "PHLO_LOG_LEVEL": "WARNING",
        }
    )
    base.update(extra)
    return base


def run(env: envs.Env, project: Path, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    vars_ = env_vars(env, project, **kw)
    return subprocess.run(argv, cwd=project, env=vars_, capture_output=True, text=True, timeout=TIMEOUT_S)


def probe(env: envs.Env, project: Path, which: str, *flags: str, **kw: Any) -> Any:
    done = run(env, project, [env.python, str(PROBE), MODULES[which], *flags], **kw)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def instance_query(env: envs.Env, project: Path, code: str) -> Any:
    """Run code against the project's DAGSTER_HOME instance in env; it prints one JSON line."""
    script = "import json, dagster as dg\ninstance = dg.DagsterInstance.get()\n" + textwrap.dedent(code)
    done = run(env, project, [env.python, "-c", script])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- what each builds ---


def test_builds_at_least_what_the_original_builds(ours, original, tmp_path):
    """Asset keys, deps, partitions, checks and schedules: ours is a superset of the original's."""
    theirs = probe(original, make_project(tmp_path, "theirs"), "original", resources=False)
    mine = probe(ours, make_project(tmp_path, "mine"), "ours", resources=False)
    assert set(theirs["assets"]) <= set(mine["assets"])
    for key, asset in theirs["assets"].items():
        got = mine["assets"][key]
        assert set(asset["deps"]) <= set(got["deps"]), key
        assert got["partitions"] == asset["partitions"], key
        assert got["materializable"] == asset["materializable"], key
        assert set(asset["crons"]) <= set(got["crons"]), key  # theirs: on_cron conditions; ours: schedules
    assert {tuple(c) for c in theirs["checks"]} <= {tuple(c) for c in mine["checks"]}
    assert set(theirs["schedules"]) <= set(mine["schedules"])
    # Every place Phlo puts specs, Phlo-style imports and plain Dagster objects: not an empty location.
    assert {"events", "events_summary", "dlt_users", "event_totals"} <= set(mine["assets"])
    assert mine["assets"]["events_summary"]["deps"] == ["events"]  # `from workflows.core.events import ...`
    assert ["events", "events_quality"] in mine["checks"]  # @phlo_pandera -> Phlo's registry
    assert ["events", "events_have_rows"] in mine["checks"]  # register_capability("check", ...)
    assert mine["schedules"]["events_daily"]["assets"] == ["events"]  # a plain Dagster schedule
    assert "0 6 * * *" in mine["assets"]["events"]["crons"]  # its RunSpec cron, as a schedule
    print("ours adds schedules:", sorted(set(mine["schedules"]) - set(theirs["schedules"])))


def test_the_full_project_loads_with_ours_not_with_the_original(ours, original, tmp_path):
    """With a ResourceSpec the original refuses the project; ours builds it (the resource reaches runs)."""
    project = make_project(tmp_path)
    done = run(original, project, [original.python, str(PROBE), MODULES["original"]])
    assert done.returncode != 0 and "conflicting resource definitions" in done.stderr
    mine = probe(ours, project, "ours")
    assert {"events", "events_summary", "dlt_users", "event_totals"} <= set(mine["assets"])


def test_every_reload_gives_the_first_result(ours, tmp_path):
    """Providers are asked after the workflow imports: dlt's asset is there at once, and never twice."""
    first, second, third = probe(ours, make_project(tmp_path), "ours", "--reload")
    assert "dlt_users" in first["assets"]
    assert first == second == third


def test_a_spec_registered_twice_names_both_sources(ours, tmp_path):
    project = make_project(tmp_path)
    (project / "workflows" / "core" / "again.py").write_text(
        textwrap.dedent(
            """
            from phlo_dagster.capabilities import AssetSpec, RunSpec, register_asset
            register_asset(AssetSpec(key="events", run=RunSpec(fn=lambda c: None)))
            """
        )
    )
    done = run(ours, project, [ours.python, str(PROBE), MODULES["ours"]])
    assert done.returncode != 0
    line = done.stderr.strip().splitlines()[-1]  # the exception's one line
    assert "DuplicateSpecError" in line and "defined twice" in line
    assert "again.py" in line and "Phlo capability registry" in line and "events.py" in line


def test_register_asset_accepts_phlo_specs(ours, tmp_path):
    code = """
        from phlo.capabilities.specs import AssetSpec, RunSpec
        from phlo_dagster.capabilities import register_asset, registry
        register_asset(AssetSpec(key="x.y", group=None, description="d", capability_overrides={"a": "b"},
                                 run=RunSpec(fn=lambda c: None)))
        (spec,) = registry().assets
        print(spec.key, dict(spec.metadata))
    """
    done = run(ours, tmp_path, [ours.python, "-c", textwrap.dedent(code)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x.y {'phlo/capability_overrides': {'a': 'b'}}" in done.stdout


# --- what each runs ---


ASSETS_TO_RUN = ("events", "events_summary", "event_totals", "dlt_users")


def test_materializes_what_the_original_can(ours, original, tmp_path):
    """Each asset the original materializes, ours does too; the asset's capability_overrides reach the run."""
    results = {
        which: probe(
            env,
            make_project(tmp_path, which),
            which,
            "--materialize",
            PARTITION,
            *ASSETS_TO_RUN,
            resources=False,
        )
        for which, env in (("original", original), ("ours", ours))
    }
    shown = {w: {k: (v["materialized"], v["error"][:160]) for k, v in r.items()} for w, r in results.items()}
    print("materialized:", shown)
    for key in ASSETS_TO_RUN:
        assert results["ours"][key]["materialized"] or not results["original"][key]["materialized"], key
    for key in ("events", "events_summary", "event_totals"):
        assert results["ours"][key]["materialized"], (key, results["ours"][key]["error"])
    for which in ("original", "ours"):
        if results[which]["events"]["materialized"]:
            assert results[which]["events"]["metadata"].get("table_store") == "duckdb", which


def test_pandera_checks_run_and_pass_under_phlo_materialize(ours, tmp_path):
    """`phlo materialize` with Phlo core installed: phlo-pandera's duckdb checks log fields and pass."""
    project = make_project(tmp_path)
    done = run(ours, project, ["phlo", "materialize", "events", "events_summary", "--partition", PARTITION])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "materialized events_summary [2025-01-02]" in done.stdout
    assert "rows=3" in done.stderr  # the workflow's own structured log line
    evaluations = instance_query(
        ours,
        project,
        """
        from pathlib import Path
        from phlo_dagster.services import PhloHome
        with PhloHome(Path.cwd()).open_instance() as local:
            records = local.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey(["events"]), "events_quality"), limit=1)
            print(json.dumps([r.status.value for r in records]))
        """,
    )
    assert evaluations == ["SUCCEEDED"]
    backfill = run(
        ours, project, ["phlo", "backfill", "events", "--start", "2025-01-03", "--end", "2025-01-04"]
    )
    assert backfill.returncode == 0, backfill.stderr[-3000:]
    assert "backfilled 2 partitions of events" in backfill.stdout
    status = run(ours, project, ["phlo", "status"])
    assert status.returncode == 0, status.stderr[-3000:]
    row = next(ln.split() for ln in status.stdout.splitlines() if ln.startswith("events "))
    assert row[-2:] == ["3", "partitions"], status.stdout


# --- Phlo core and its CLI ---


CORE_SCRIPT = "import sys; from phlo.cli.main import cli; sys.exit(cli())"  # Phlo core's bin/phlo


def listed_commands(help_text: str) -> set[str]:
    return {ln.split()[0] for ln in help_text.splitlines() if ln.startswith("  ") and ln.strip()}


@pytest.mark.parametrize("phlo_env", ["ours", "oldest"], ids=["phlo-0.18.0", "phlo-0.16.2"])
def test_phlo_core_discovers_a_valid_plugin(phlo_env, request, tmp_path):
    env: envs.Env = request.getfixturevalue(phlo_env)
    code = "from phlo.orchestrators import get_active_orchestrator as get; print(type(get()).__name__)"
    done = run(env, tmp_path, [env.python, "-c", code])
    assert done.stdout.strip().splitlines()[-1] == "DagsterOrchestratorAdapter", done.stderr[-2000:]
    check = run(env, tmp_path, ["phlo", "plugin", "check"])
    assert check.returncode == 0, check.stderr[-2000:]
    for entry in ("service:dagster", "service:dagster-daemon", "orchestrator:dagster", "cli_command:dagster"):
        assert f"✓ {entry}\n" in check.stdout, entry
    assert "All plugins are valid" in check.stdout
    listed = run(env, tmp_path, ["phlo", "plugin", "list", "--type", "all", "--json"])
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = {(p["type"], p["name"]) for p in json.loads(listed.stdout)["data"]["installed"]}
    assert {("service", "dagster"), ("service", "dagster-daemon"), ("cli", "dagster")} <= rows, rows
    assert any(name == "dagster" and "orchestrator" in kind for kind, name in rows), rows
    for argv in (["phlo"], [env.python, "-c", CORE_SCRIPT]):  # ours and Phlo core's script
        services = run(env, tmp_path, [*argv, "services", "list"])
        # Phlo lists the services, then exits 1 here only because no container runtime (Docker) answers.
        assert services.returncode == 0 or "Runtime status unavailable" in services.stderr, services.stderr[
            -2000:
        ]
        names = {line.split()[0] for line in services.stdout.splitlines() if line.startswith("    ")}
        assert {"dagster", "dagster-daemon"} <= names, (argv[0], services.stdout)


CORE_COMMANDS = ("doctor", "workflow", "services", "plugin", "commands")


def test_one_phlo_command_whichever_was_installed_last(ours, tmp_path):
    script = Path(ours.bin("phlo")).read_text()
    assert "phlo_dagster.cli" in script  # this package was installed last, so bin/phlo is its
    ours_help = run(ours, tmp_path, ["phlo", "--help"])
    assert ours_help.returncode == 0, ours_help.stderr[-2000:]
    assert {*CORE_COMMANDS, *OUR_COMMANDS} <= listed_commands(ours_help.stdout)
    # Phlo core's own script (what `pip install phlo` last would leave in bin/phlo):
    core = [ours.python, "-c", CORE_SCRIPT]
    core_help = run(ours, tmp_path, [*core, "--help"])
    assert core_help.returncode == 0, core_help.stderr[-2000:]
    # Phlo 0.18's root help is a fixed table keyed by entry-point target (phlo/cli/_plugin_help.py): for
    # phlo_dagster.cli_plugin:DagsterCliPlugin it has dev, materialize, backfill and status, not webserver or
    # daemon; logs is core's, dbt here phlo-dbt's. Nothing of this package runs before that help is printed.
    assert {
        *CORE_COMMANDS,
        *(c for c in OUR_COMMANDS if c not in ("webserver", "daemon")),
    } <= listed_commands(core_help.stdout)
    catalogue = run(ours, tmp_path, [*core, "commands"])  # Phlo's full command list loads every plugin
    assert catalogue.returncode == 0, catalogue.stderr[-2000:]
    entries = [ln.strip() for ln in catalogue.stdout.splitlines() if ln.startswith("phlo ")]
    for name in OUR_COMMANDS:  # a command, or a group's subcommands (phlo dbt compile)
        assert any(e == f"phlo {name}" or e.startswith(f"phlo {name} ") for e in entries), name
    webserver = run(ours, tmp_path, [*core, "webserver", "--help"])
    assert webserver.returncode == 0 and "--path-prefix" in webserver.stdout, webserver.stderr[-2000:]
    daemon = run(ours, tmp_path, [*core, "daemon", "--help"])
    assert daemon.returncode == 0 and "--workspace" in daemon.stdout, daemon.stderr[-2000:]


def test_phlo_0162_help_lists_every_command_from_either_script(oldest, tmp_path):
    """Phlo 0.16/0.17 load plugin commands before help: both scripts list all of ours, webserver too."""
    assert "phlo_dagster.cli" in Path(oldest.bin("phlo")).read_text()
    for argv in (["phlo"], [oldest.python, "-c", CORE_SCRIPT]):
        helped = run(oldest, tmp_path, [*argv, "--help"])
        assert helped.returncode == 0, helped.stderr[-2000:]
        assert {*CORE_COMMANDS, *OUR_COMMANDS} <= listed_commands(helped.stdout), (argv[0], helped.stdout)
        webserver = run(oldest, tmp_path, [*argv, "webserver", "--help"])
        assert webserver.returncode == 0 and "--path-prefix" in webserver.stdout, webserver.stderr[-2000:]


BAD_PLUGINS = {
    "bad_import.py": "raise ImportError('no such backend')\n",
    "bad_cli.py": textwrap.dedent(
        """
        import click
        from phlo.plugins.base import PluginMetadata
        from phlo.plugins.base.cli import CliCommandPlugin

        class Failing(CliCommandPlugin):
            metadata = PluginMetadata(name="failing", version="1")
            def get_cli_commands(self):
                raise RuntimeError("commands unavailable")

        class Good(CliCommandPlugin):
            metadata = PluginMetadata(name="good", version="1")
            def get_cli_commands(self):
                return [click.Command("hello-good", callback=lambda: print("good"))]
        """
    ),
}


def bad_plugin_site(tmp_path: Path) -> Path:
    """A directory for PYTHONPATH holding a distribution with broken and good Phlo plugins."""
    site = tmp_path / "site"
    dist = site / "phlo_bad_plugins-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: phlo-bad-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[phlo.plugins.cli]\nbroken = bad_import:Thing\nfailing = bad_cli:Failing\ngood = bad_cli:Good\n\n"
        "[phlo.plugins.assets]\nbroken_assets = bad_import:Assets\n"
    )
    for name, text in BAD_PLUGINS.items():
        (site / name).write_text(text)
    return site


def assert_cli_survives_bad_plugins(env: envs.Env, cwd: Path, extra: dict[str, str]) -> None:
    """`phlo --help` works, lists Phlo's, ours and the good plugin's commands; one warning per bad plugin."""
    helped = run(env, cwd, ["phlo", "--help"], **extra)
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert {*CORE_COMMANDS, *OUR_COMMANDS, "hello-good"} <= listed_commands(helped.stdout), helped.stderr
    warnings = [ln for ln in helped.stderr.splitlines() if ln.startswith("phlo: warning: CLI plugin")]
    assert len([w for w in warnings if "broken (bad_import:Thing)" in w and "no such backend" in w]) == 1
    assert len([w for w in warnings if "failing" in w and "commands unavailable" in w]) == 1
    assert len(warnings) == 2, warnings
    good = run(env, cwd, ["phlo", "hello-good"], **extra)
    assert good.returncode == 0 and good.stdout.strip() == "good", good.stderr[-2000:]


def test_third_party_plugins_cannot_break_phlo_0162s_cli(oldest, tmp_path):
    """Phlo 0.16/0.17 collect plugin commands while their CLI imports: a raising plugin must not stop that."""
    assert_cli_survives_bad_plugins(oldest, tmp_path, {"PYTHONPATH": str(bad_plugin_site(tmp_path))})


def test_third_party_plugins_cannot_break_the_cli_or_code_location(ours, tmp_path):
    project = make_project(tmp_path)
    extra = {"PYTHONPATH": str(bad_plugin_site(tmp_path))}
    assert_cli_survives_bad_plugins(ours, project, extra)
    built = run(ours, project, [ours.python, str(PROBE), MODULES["ours"]], **extra)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "events" in json.loads(built.stdout.strip().splitlines()[-1])["assets"]
    skipped = [ln for ln in built.stderr.splitlines() if "plugin skipped" in ln and "broken_assets" in ln]
    assert len(skipped) == 1 and "no such backend" in skipped[0]


def test_pip_install_phlo_defaults_keeps_this_package(tmp_path):
    """`pip install phlo`, then `pip install 'phlo[defaults]'`, next to this package: it stays; pip check."""
    env = envs.with_defaults()  # built by exactly those plain pip installs, in that order
    shown = env.pip("show", "phlo-dagster").stdout
    assert f"Version: {our_version()}" in shown
    assert f"Editable project location: {envs.REPO}" in shown
    assert "Version: 0.18.0" in env.pip("show", "phlo").stdout
    assert "phlo-iceberg" in env.pip("list").stdout  # the defaults extra was installed
    checked = env.run("-m", "pip", "check")
    assert checked.returncode == 0, checked.stdout[-2000:]
    # Each install on its own: after `pip install phlo` too, this package is in place and pip check is clean.
    steps = env.steps()
    assert [s["install"] for s in steps] == [
        ["-e", f"{envs.REPO}[dbt]"],
        [envs.PHLO],
        ["phlo[defaults]==0.18.0"],
    ]
    for step in steps:
        assert step["pip_check_rc"] == 0, step
        assert f"Version: {our_version()}" in step["phlo_dagster"], step
        assert f"Editable project location: {envs.REPO}" in step["phlo_dagster"], step


def our_version() -> str:
    import tomllib

    return str(tomllib.loads((envs.REPO / "pyproject.toml").read_text())["project"]["version"])


ASSET_KEYS_QUERY = "query { assetNodes { assetKey { path } } }"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _asset_keys(base: str) -> set[str]:
    import urllib.request

    body = json.dumps({"query": ASSET_KEYS_QUERY}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        data = json.loads(resp.read())
    assert "errors" not in data, data
    return {"/".join(node["assetKey"]["path"]) for node in data["data"]["assetNodes"]}


def test_phlo_dev_code_server_and_dagster_cli_load_phlo_style_imports(ours, tmp_path):
    """`from workflows.core.events import ...` works under `dagster -m` and under `phlo dev`'s code server."""
    import signal
    import time
    import urllib.request

    project = make_project(tmp_path)
    validated = run(ours, project, [ours.bin("dagster"), "definitions", "validate", "-m", MODULES["ours"]])
    assert validated.returncode == 0, validated.stderr[-3000:]
    port = _free_port()
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["phlo", "dev", "--port", str(port), "--workflows-path", "workflows"],
            cwd=project,
            env=env_vars(ours, project),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while "Dagster UI:" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "phlo dev not ready after 300s"
            time.sleep(1)
        urllib.request.urlopen(f"{base}/server_info", timeout=10).close()
        keys = _asset_keys(base)
        assert {"events", "events_summary", "dlt_users", "event_totals"} <= keys, keys
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
