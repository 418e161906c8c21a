"""The images `make images` builds, run from their own root filesystems as a container would run them.

Built (or taken from the cache) once per module; each image then runs in fresh mount, network and PID
namespaces (tests/images/run.py): read-only root, tmpfs where the pod has emptyDirs, the image's user and Env.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.version import Version
from phlo_operator.render import instance

from tests.images import build, lock, run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.binaries,
    pytest.mark.node,  # containerd and ctr: the real node's binaries
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(shutil.which(t) for t in ("buildah", "mmdebstrap", "unshare", "gcc")),
        reason="needs root, buildah, mmdebstrap, unshare and gcc (.ci/run installs them)",
    ),
]


def _pins() -> dict[str, str]:
    """The lock's pins for the images' Python (3.12 on Linux)."""
    env = {"python_version": "3.12", "python_full_version": "3.12.1", "sys_platform": "linux"}
    return {name: v for name, v, marker in lock.pins() if not marker or Marker(marker).evaluate(env)}


@pytest.fixture(scope="module")
def images() -> dict[str, build.Built]:
    built = build.build_all()
    return {name: image for image in built for name in image.names}


def _version() -> str:
    return build.project_version()


def test_index_lists_every_archive_with_its_digest(images):
    entries = json.loads(build.INDEX.read_text())
    names = {n for e in entries for n in e["names"]}
    expected = {
        build.PYTHON_IMAGE,
        build.POSTGRES_IMAGE,
        *build.PAUSE_IMAGES,
        f"docker.io/library/phlo-dagster:{_version()}",
        f"docker.io/library/phlo-dagster-operator:{_version()}",
    }
    assert expected <= names
    for entry in entries:
        with tarfile.open(entry["archive"]) as tar:
            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        refs = {m["annotations"]["io.containerd.image.name"]: m["digest"] for m in index["manifests"]}
        assert set(entry["names"]) <= set(refs), (entry, refs)
        assert all(refs[n] == entry["digest"] for n in entry["names"])


def test_a_warm_build_takes_everything_from_the_cache(images):
    start = time.monotonic()
    again = build.build_all()
    assert time.monotonic() - start < 60
    assert {i.digest for i in again} == {i.digest for i in images.values()}


def test_no_mount_is_left_behind(images):
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(build.cache_root()) not in mounts


def _layers(archive: str) -> list[list[str]]:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(tar.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))  # type: ignore[arg-type]
        assert len([h for h in config["history"] if not h.get("empty_layer")]) == len(manifest["layers"])
        out = []
        for layer in manifest["layers"]:
            blob = tar.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}")
            with tarfile.open(fileobj=blob, mode="r:*") as inner:
                out.append(inner.getnames())
        return out


@pytest.mark.parametrize("name", ["phlo-dagster", "phlo-dagster-operator"])
def test_build_time_ca_bundle_and_pip_config_are_not_in_the_layers(images, name):
    base, *own = _layers(images[f"docker.io/library/{name}:{_version()}"].archive)
    assert "etc/pip.conf" in base, "the base's placeholder the build mounts over"
    for layer in own:
        assert not {"etc/pip.conf", "etc/ssl/certs/ca-certificates.crt"} & set(layer)


def test_operator_image_has_the_locked_kubernetes_and_runs_as_10001(images):
    pins = _pins()
    image = images[f"docker.io/library/phlo-dagster-operator:{_version()}"]
    body = """
in_image id -u
in_image python3 -c 'import kubernetes, kopf; print(kubernetes.__version__)'
in_image phlo-dagster-operator --help
if in_image python3 -c 'import dagster' 2>/dev/null; then echo "dagster is in the operator image"; exit 1; fi
"""
    done = run.run(image, body, writable={"/tmp": "10001:10001"})
    assert done.returncode == 0, done.stdout + done.stderr
    uid, kubernetes, *help_ = done.stdout.splitlines()
    assert uid == "10001"
    assert kubernetes == pins["kubernetes"] and Version(kubernetes) < Version("37")
    assert "--all-namespaces" in "\n".join(help_)


def test_runtime_image_has_the_locked_dagster_and_dbt(images):
    pins = _pins()
    image = images[f"docker.io/library/phlo-dagster:{_version()}"]
    check = (
        "import importlib.metadata as m; "
        "import dagster, dagster_k8s, dagster_dbt, dbt.version, kubernetes, phlo_dagster; "
        "print(' '.join(f'{d}=={m.version(d)}' for d in "
        "('dagster', 'dagster-k8s', 'dagster-dbt', 'dbt-core', 'dbt-duckdb', 'kubernetes')))"
    )
    body = f"""
in_image id -u
in_image python3 -c {shlex.quote(check)}
in_image phlo --help >/dev/null
echo phlo-ok
"""
    done = run.run(image, body, env={"HOME": "/tmp"}, writable={"/tmp": "10001:10001"})
    assert done.returncode == 0, done.stdout + done.stderr
    uid, versions, ok = done.stdout.splitlines()[-3:]
    assert uid == "10001" and ok == "phlo-ok"
    for pinned in versions.split():
        name, version = pinned.split("==")
        assert pins[name] == version, f"{name} {version} in the image, {pins[name]} in the lock"


def _dagster_and_head(image: build.Built) -> tuple[str, str]:
    """What the operator's version gate reads from the image (its own script, the termination message moved to
    /tmp): the Dagster version and the schema head its dagster-postgres expects."""
    gate = instance.VERSION_SCRIPT.replace(instance.TERMINATION_LOG, "/tmp/version-gate.json")
    body = f"in_image python3 -c {shlex.quote(gate)}\n"
    body += "in_image phlo daemon --help >/dev/null && echo phlo-ok"
    done = run.run(image, body, env={"HOME": "/tmp"}, writable={"/tmp": "10001:10001"})
    assert done.returncode == 0, done.stdout + done.stderr
    *_, reported, ok = done.stdout.splitlines()
    assert ok == "phlo-ok", done.stdout
    report = json.loads(reported)
    assert report.get("dagsterVersion") and report.get("schemaHead"), report
    return report["dagsterVersion"], report["schemaHead"]


def test_previous_image_is_one_dagster_family_back_with_an_older_schema(images):
    """The upgrade test's starting image: its lock's Dagster, our `phlo` on it, and a schema head the
    project's Dagster migrates from (the same head would make the upgrade test prove nothing)."""
    previous = images[build.normalize(build.previous_image())]
    version, head = _dagster_and_head(previous)
    assert version == build.previous_dagster()
    current_version, current_head = _dagster_and_head(images[f"docker.io/library/phlo-dagster:{_version()}"])
    assert current_version == _pins()["dagster"]
    assert Version(version).release[:2] < Version(current_version).release[:2], (version, current_version)
    assert head != current_head, f"both images expect schema {head}: nothing to migrate"


def test_previous_lock_holds_the_shared_packages_at_the_main_locks_versions():
    pins = _pins()
    previous = {name: version for name, version, _ in lock.pins(build.PREVIOUS_LOCK)}
    shared = {n for n in previous if n in pins and not n.startswith("dagster") and n != "kubernetes"}
    assert len(shared) > 40, shared
    assert {n: previous[n] for n in shared} == {n: pins[n] for n in shared}


def test_postgres_image_initialises_and_serves_as_uid_70(images):
    image = images[build.POSTGRES_IMAGE]
    # The StatefulSet's environment, volume paths and readiness command (phlo_operator/render/postgres.py).
    body = r"""
in_image id -u
in_image docker-entrypoint.sh postgres >/tmp/pg.log 2>&1 &
pid=$!
ready=""
for i in $(seq 1 240); do
  if in_image sh -c 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1' >/dev/null; then
    ready=1; break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
[ -n "$ready" ] || { cat /tmp/pg.log; exit 1; }
tcp='psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA'
in_image sh -c "PGPASSWORD=\"\$POSTGRES_PASSWORD\" $tcp -c 'select current_user, current_database()'"
if in_image sh -c "PGPASSWORD=wrong $tcp -c 'select 1'" 2>/dev/null; then
  echo "a wrong password was accepted"; exit 1
fi
grep -qE '^ *[0-9]+: 00000000:1538 00000000:0000 0A' /proc/net/tcp && echo listening-on-any
server="$(pgrep -o -x postgres)"
awk '/^Uid:/ {print "server-uid", $2}' "/proc/$server/status"
# SIGINT to the server itself (a background shell ignores it): fast shutdown, exit 0.
kill -INT "$server"; wait "$pid"; echo "stopped $?"
"""
    done = run.run(
        image,
        body,
        user="70:70",
        env={
            "POSTGRES_USER": "phlo",
            "POSTGRES_PASSWORD": "s3cret-pw",
            "POSTGRES_DB": "phlo_db",
            "PGDATA": "/var/lib/postgresql/data/pgdata",
        },
        writable={"/var/lib/postgresql/data": "70:70", "/var/run/postgresql": "70:70", "/tmp": "70:70"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "70"
    assert "phlo|phlo_db" in lines
    assert "listening-on-any" in lines
    assert "server-uid 70" in lines
    assert lines[-1] == "stopped 0"


def test_pause_image_waits_and_exits_0_on_sigterm(images):
    image = images[build.PAUSE_IMAGES[0]]
    assert set(build.PAUSE_IMAGES) <= set(image.names)
    body = """
"$root/pause" &
pid=$!
sleep 1
kill -0 "$pid" && echo still-running
kill -TERM "$pid"; wait "$pid"; echo "exit $?"
"""
    done = run.run(image, body)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["still-running", "exit", "0"]


def _containerd_binaries() -> tuple[str, str] | None:
    found = [
        shutil.which(b, path=f"{build.REPO / '.testbed' / 'bin'}:{os.environ.get('PATH', '')}")
        for b in ("containerd", "ctr")
    ]
    return (found[0], found[1]) if found[0] and found[1] else None


@pytest.mark.skipif(
    _containerd_binaries() is None, reason="containerd and ctr not built (make realnode-up builds them)"
)
def test_load_imports_every_image_into_containerd_under_the_kubelets_names(images, tmp_path):
    containerd, ctr = _containerd_binaries()  # type: ignore[misc]
    socket = tmp_path / "containerd.sock"
    (tmp_path / "config.toml").write_text(
        "version = 3\n"
        f'root = "{tmp_path / "root"}"\nstate = "{tmp_path / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", '
        '"io.containerd.cri.v1.runtime"]\n'
        f'[grpc]\n  address = "{socket}"\n'
    )
    # A containerd of its own, in a private mount namespace (its snapshot mounts die with it).
    script = f"""
{shlex.quote(containerd)} --config {tmp_path / "config.toml"} >{tmp_path / "containerd.log"} 2>&1 &
pid=$!
for i in $(seq 100); do [ -S {socket} ] && break; sleep 0.1; done
{shlex.quote(sys.executable)} -m tests.images load --ctr {shlex.quote(ctr)} --address {socket} || status=$?
{shlex.quote(sys.executable)} -m tests.images load --ctr {shlex.quote(ctr)} --address {socket} || status=$?
{shlex.quote(ctr)} --address {socket} --namespace k8s.io images ls
kill $pid; wait $pid
exit ${{status:-0}}
"""
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=build.REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line.split()[0]: line.split()[2] for line in done.stdout.splitlines()[1:] if line.strip()}
    for image in build.read_index():
        for name in image.names:
            assert listed.get(name) == image.digest, (name, listed)
    second = done.stderr.split("present:")
    assert len(second) - 1 == len(build.read_index()), "the second load imported again"
    shutil.rmtree(tmp_path / "root", ignore_errors=True)
