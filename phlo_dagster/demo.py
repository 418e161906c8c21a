"""`make demo`: `phlo dev` on examples/quickstart plus one ingestion run for the UI, served until Ctrl-C.

PHLO_DEMO_EXIT=1 stops after the first successful run (used by the tests); DAGSTER_PORT picks the port;
PHLO_DEMO_PROJECT runs it on another copy of the quickstart. Ctrl-C or SIGTERM (`make` passes its SIGTERM on)
stops `phlo dev` and with it the webserver, the daemon and the code servers.

The quickstart's example plugin (plugin/) is never installed into the environment, where every project would
gain its assets: `plugin_pythonpath` makes it a distribution on PYTHONPATH for the demo's processes only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from phlo_dagster.cli import default_port, signals_ignored
from phlo_dagster.console import CliError, error_block, fail, out, progress
from phlo_dagster.constants import (
    ENV_DBT_ENABLED,
    ENV_DBT_PROJECT_DIR,
    ENV_WORKFLOWS_PATH,
)
from phlo_dagster.services import http_ok
from phlo_dagster.text import last_line

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
INGESTION_ASSET = "raw/orders"
START_TIMEOUT_S = 240.0
CTRL_C_GRACE_S = 30.0
STOP_TIMEOUT_S = 60.0
PLUGIN_DIR = "plugin"
PLUGIN_SITE = Path(".phlo") / "quickstart-plugin"  # in the demo's project


def plugin_pythonpath(plugin: Path, site: Path) -> list[Path]:
    """PYTHONPATH entries that make the plugin distribution at `plugin` importable and its entry points found.

    Writes `site/<name>-<version>.dist-info` (METADATA, entry_points.txt) from the plugin's pyproject.toml, as
    an install would, but into `site` instead of the environment: only processes given these entries see the
    plugin (importlib.metadata reads distributions from every sys.path entry). Returns [site, plugin].
    """
    import tomllib

    pyproject = plugin / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
        name, version = str(project["name"]), str(project["version"])
        groups = dict(project.get("entry-points", {}))
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise CliError(f"{pyproject}: not a plugin distribution ({type(exc).__name__}: {exc})") from None
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    for old in site.glob("*.dist-info"):
        shutil.rmtree(old)
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines: list[str] = []
    for group, entries in sorted(groups.items()):
        lines += [f"[{group}]", *(f"{k} = {v}" for k, v in sorted(entries.items())), ""]
    (dist / "entry_points.txt").write_text("\n".join(lines))
    return [site.resolve(), plugin.resolve()]


def demo_env(port: int, pythonpath: list[Path] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_WORKFLOWS_PATH] = "workflows"
    env.setdefault(ENV_DBT_ENABLED, "true")
    env.setdefault(ENV_DBT_PROJECT_DIR, "dbt")
    env["DAGSTER_PORT"] = str(port)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_demo(project: Path = QUICKSTART) -> None:
    if not (project / "workflows").is_dir():
        raise CliError(f"{project}: no workflows/ directory (is this a phlo-dagster checkout?)")
    port = default_port()
    plugin = project / PLUGIN_DIR
    pythonpath = plugin_pythonpath(plugin, project / PLUGIN_SITE) if plugin.is_dir() else []
    env = demo_env(port, pythonpath)
    url = f"http://127.0.0.1:{port}"
    terminated: list[int] = []

    def on_sigterm(signum: int, _frame: FrameType | None) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    progress(f"starting `phlo dev` in {project}")
    dev: subprocess.Popen[bytes] | None = None
    grace = 0.0
    try:
        dev = subprocess.Popen(
            [sys.executable, "-m", "phlo_dagster.cli", "dev", "--port", str(port)], cwd=project, env=env
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not http_ok(f"{url}/server_info"):
            if dev.poll() is not None:
                raise CliError(
                    f"`phlo dev` exited with code {dev.returncode} before serving (see output above)"
                )
            if time.monotonic() > deadline:
                raise CliError(f"`phlo dev` not answering at {url} after {START_TIMEOUT_S:.0f}s")
            time.sleep(1)
        out(f"Phlo quickstart on Dagster: {url}")
        partition = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        progress(f"materializing {INGESTION_ASSET} for {partition}")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "phlo_dagster.cli",
                "materialize",
                INGESTION_ASSET,
                "--partition",
                partition,
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise CliError(error_block(run.stderr) or "materialization failed")
        out(last_line(run.stdout))
        out(f"open {url} (runs, assets, checks); metrics at {url}/metrics")
        if os.environ.get("PHLO_DEMO_EXIT") == "1":
            return
        out("press Ctrl-C to stop")
        while dev.poll() is None:
            time.sleep(1)
        raise CliError(f"`phlo dev` exited with code {dev.returncode}")
    except KeyboardInterrupt:
        progress("stopping")
        # Ctrl-C reached `phlo dev` too (same process group); a SIGTERM was sent to the demo alone.
        grace = 0.0 if terminated else CTRL_C_GRACE_S
    finally:
        signal.signal(signal.SIGTERM, previous)
        if dev is not None:
            stop_dev(dev, grace=grace)


def stop_dev(dev: subprocess.Popen[bytes], *, grace: float) -> None:
    """Let `phlo dev` stop its services: wait `grace` for it to exit by itself, then SIGTERM, then SIGKILL."""
    with signals_ignored():  # a second Ctrl-C or SIGTERM must not cut the shutdown short
        if grace > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                dev.wait(timeout=grace)
        if dev.poll() is None:
            dev.send_signal(signal.SIGTERM)
            try:
                dev.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait()


def main() -> None:
    try:
        run_demo(Path(os.environ.get("PHLO_DEMO_PROJECT") or QUICKSTART))
    except CliError as exc:
        fail(str(exc), exc.exit_code)


if __name__ == "__main__":
    main()
