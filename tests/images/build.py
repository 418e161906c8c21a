"""Builds the images a real node runs, without a Docker engine or a registry, cached by content hash.

Base images (made from Debian packages with mmdebstrap, written as OCI archives by this module):
  docker.io/library/python:3.12-slim     Debian bookworm + this machine's CPython 3.12 build in /usr/local
  docker.io/library/postgres:17-alpine   Debian's PostgreSQL 15 under the CRD's default image name
  registry.k8s.io/pause:3.10.2 (+ 3.10.1, 3.10)  a static binary that waits for SIGTERM and reaps children
The project's images (buildah, from the project's Dockerfiles, FROM the local python:3.12-slim):
  docker.io/library/phlo-dagster:<version>, docker.io/library/phlo-dagster-operator:<version>

Every image is one OCI archive under the cache (<cache>/archives/<slug>-<key>/image.tar), keyed by a hash of
everything it is made from; .testbed/images/index.json lists the current ones. buildah's storage lives in the
cache too, and every buildah call runs in a private mount namespace, so no mount outlives the command.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.dockerfile_steps import parse
from tests.images import lock

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
INDEX = REPO / ".testbed" / "images" / "index.json"
KEEP_OLDER = 3  # archives of earlier keys kept per image
SUITE = "bookworm"
# Bumped when a base recipe below changes in a way its inputs do not show.
RECIPE = "3"

PYTHON_IMAGE = "docker.io/library/python:3.12-slim"
POSTGRES_IMAGE = (
    "docker.io/library/postgres:17-alpine"  # phlo_operator/model.py's default; Debian's 15 inside
)
# containerd v2.4.2's default sandbox image is pause:3.10.2; kubeadm-era configs name 3.10.1 or 3.10.
PAUSE_IMAGES = ("registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.1", "registry.k8s.io/pause:3.10")
POSTGRES_UID = 70
PAUSE_UID = 65535

# What CPython's extension modules and the wheels of dbt, duckdb and psycopg need at run time, plus the basics
# of a slim image (CA certificates, tzdata, netbase, passwd for useradd in the Dockerfiles).
PYTHON_PACKAGES = (
    "ca-certificates",
    "netbase",
    "tzdata",
    "passwd",
    "libssl3",
    "libsqlite3-0",
    "libffi8",
    "libuuid1",
    "libgdbm6",
    "libbz2-1.0",
    "liblzma5",
    "libreadline8",
    "libncursesw6",
    "zlib1g",
    "libexpat1",
    "libtirpc3",
    "libnsl2",
    "libcrypt1",
    "libstdc++6",
    "libgcc-s1",
)
POSTGRES_PACKAGES = ("postgresql-15", "tzdata", "netbase")
DPKG_EXCLUDES = (
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-include=/usr/share/locale/locale.alias",
)
# .dockerignore's patterns (as tests/dockerfile_steps.py has them): what a COPY leaves out, so not hashed.
CONTEXT_IGNORED = (
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "target",
    "dbt_packages",
    "logs",
    "*.duckdb",
)
PIP_CONF_PLACEHOLDER = "# pip's site-wide configuration: none. A build may mount its own here.\n"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(message: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S', time.gmtime())}] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """PHLO_IMAGES_CACHE, else images/ beside the test bed's binary cache (PHLO_TESTBED_CACHE's parent)."""
    if os.environ.get("PHLO_IMAGES_CACHE"):
        return Path(os.environ["PHLO_IMAGES_CACHE"])
    testbed = os.environ.get("PHLO_TESTBED_CACHE")
    base = Path(testbed).parent if testbed else Path.home() / ".cache" / "phlo-dagster"
    return base / "images"


def python_prefix() -> Path:
    """The CPython 3.12 build copied into the image's /usr/local (a pyenv build: shared libpython)."""
    if os.environ.get("PHLO_IMAGES_PYTHON_PREFIX"):
        return Path(os.environ["PHLO_IMAGES_PYTHON_PREFIX"])
    versions = sorted(
        Path.home().glob(".pyenv/versions/3.12.*"), key=lambda p: [int(x) for x in p.name.split(".")]
    )
    found = [v for v in versions if (v / "lib" / "libpython3.12.so.1.0").exists()]
    if not found:
        raise SystemExit("images: no CPython 3.12 build with a shared libpython under ~/.pyenv/versions")
    return found[-1]


def normalize(reference: str) -> str:
    """A Docker-style reference in full, as the kubelet asks containerd for it (python:3.12 ->
    docker.io/library/python:3.12)."""
    name, tag = reference, "latest"
    if ":" in reference.rsplit("/", 1)[-1]:
        name, tag = reference.rsplit(":", 1)
    parts = name.split("/")
    if len(parts) == 1:
        name = f"docker.io/library/{name}"
    elif not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# -- buildah, always in a private mount namespace and its own storage under the cache


def storage_args() -> list[str]:
    root = cache_root()
    driver = os.environ.get("PHLO_IMAGES_STORAGE_DRIVER", "overlay")
    return ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", driver]


def buildah_command(*args: str) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "buildah", *storage_args(), *args]


def buildah(*args: str, out: io.TextIOBase | None = None, capture: bool = False) -> str:
    command = buildah_command(*args)
    if capture:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-4000:]}")
        return done.stdout
    if out is None:
        subprocess.run(command, check=True)
        return ""
    out.write(f"$ {shlex.join(command)}\n")
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out.write(done.stdout)
    out.flush()
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stdout[-4000:]}")
    return ""


#: What buildah's chroot isolation sometimes fails a RUN step with while another process holds the file it
#: seals (seen once in `make test`, 2026-12-06: "Close_Fd sealing memfd copy: Device or resource busy").
TRANSIENT_BUILD_ERRORS = ("sealing memfd", "Device or resource busy")
BUILD_ATTEMPTS = 3


def build_retrying(args: list[str], out: io.TextIOBase) -> None:
    """`buildah build`, again (its --layers cache keeps the steps done) when it failed for a transient
    reason; any other failure is raised at once."""
    for attempt in range(1, BUILD_ATTEMPTS + 1):
        try:
            buildah(*args, out=out)
            return
        except RuntimeError as exc:
            if attempt == BUILD_ATTEMPTS or not any(e in str(exc) for e in TRANSIENT_BUILD_ERRORS):
                raise
            out.write(f"images: transient build failure (attempt {attempt}), building again\n")


def storage_images() -> dict[str, str]:
    """name -> image id of buildah's storage."""
    listed = json.loads(buildah("images", "--json", "--no-trunc", capture=True) or "[]")
    out = {}
    for image in listed:
        for name in image.get("names") or []:
            out[name] = image["id"].removeprefix("sha256:")
    return out


def _size(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for file in files:
            try:
                total += os.lstat(os.path.join(directory, file)).st_size
            except OSError:
                pass
    return total


def trim_storage(out: io.TextIOBase) -> None:
    """Keeps buildah's layer cache (what makes a code change rebuild only the top layers) under
    PHLO_IMAGES_STORAGE_LIMIT_GB (default 8): past it, every image goes, the bases are pulled again from their
    archives on the next build, and the next build of each Dockerfile starts from its base."""
    limit = float(os.environ.get("PHLO_IMAGES_STORAGE_LIMIT_GB", "8")) * 2**30
    if _size(cache_root() / "storage") > limit:
        log(f"images: buildah storage is over {limit / 2**30:g} GB; clearing its layer cache")
        buildah("rmi", "--all", "--force", out=out)


# -- OCI archives


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Built:
    names: list[str]
    archive: str
    digest: str  # the manifest's, what `ctr images ls` shows
    id: str  # the config's (the image id)
    key: str

    @property
    def name(self) -> str:
        return self.names[0]


def _index_entries(manifest: dict[str, object], names: Iterable[str]) -> list[dict[str, object]]:
    # Full names in both annotations: containerd keeps them as they are (a bare tag gets an import- prefix).
    return [
        {
            **manifest,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
        }
        for name in names
    ]


def _write_archive(archive: Path, blobs: dict[str, Path | bytes], index: dict[str, object]) -> None:
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:

        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes("index.json", json.dumps(index, indent=1).encode())
        for digest, blob in blobs.items():
            name = f"blobs/sha256/{digest}"
            if isinstance(blob, bytes):
                add_bytes(name, blob)
            else:
                info = tar.gettarinfo(str(blob), arcname=name)
                info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
                with blob.open("rb") as f:
                    tar.addfile(info, f)


def oci_archive(
    archive: Path, layer: Path, names: list[str], config: dict[str, object], created_by: str, key: str
) -> Built:
    """One-layer OCI image archive; its config lists one history entry for its one layer (FROM needs that)."""
    layer_digest = _sha256_file(layer)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    image_config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created": created, "created_by": created_by, "comment": "phlo-dagster tests/images"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config_digest}",
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": f"sha256:{layer_digest}",
                "size": layer.stat().st_size,
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    descriptor = {
        "mediaType": manifest["mediaType"],
        "digest": f"sha256:{manifest_digest}",
        "size": len(manifest_bytes),
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    index = {"schemaVersion": 2, "manifests": _index_entries(descriptor, names)}
    blobs: dict[str, Path | bytes] = {
        layer_digest: layer,
        config_digest: config_bytes,
        manifest_digest: manifest_bytes,
    }
    _write_archive(archive, blobs, index)
    return Built(names, str(archive), f"sha256:{manifest_digest}", f"sha256:{config_digest}", key)


def layer_from_tree(root: Path, layer: Path, skip: Callable[[str], bool] = lambda _: False) -> None:
    """The directory as one layer tar: numeric owners only, device nodes and /dev contents left out."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if skip(info.name) or info.ischr() or info.isblk() or info.name.startswith("dev/"):
            return None
        info.uname = info.gname = ""
        return info

    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(root)):
            tar.add(root / entry, arcname=entry, filter=keep)


# -- the cache


def _entry_dir(slug: str, key: str) -> Path:
    return cache_root() / "archives" / f"{slug}-{key}"


def cached(slug: str, key: str, build: Callable[[Path], Built]) -> Built:
    """The cache entry for (slug, key), built into a temporary directory and moved in place when complete."""
    entry = _entry_dir(slug, key)
    meta = entry / "meta.json"
    if meta.exists():
        log(f"cached: {slug} ({key})")
        return Built(**json.loads(meta.read_text()))
    (cache_root() / "archives").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{slug}-", dir=cache_root() / "archives"))
    start = time.monotonic()
    log(f"building {slug} ({key}); log: {tmp / 'build.log'}")
    try:
        built = build(tmp)
    except BaseException:
        log(f"error: building {slug} failed; the log is kept at {cache_root() / 'failed' / (slug + '.log')}")
        (cache_root() / "failed").mkdir(exist_ok=True)
        if (tmp / "build.log").exists():
            shutil.copy(tmp / "build.log", cache_root() / "failed" / f"{slug}.log")
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Older keys of the same image: keep a few (another checkout or a running node may still index them).
    older = [
        p for p in (cache_root() / "archives").glob(f"{slug}-*") if p.name.count("-") == slug.count("-") + 1
    ]
    for stale in sorted(older, key=lambda p: p.stat().st_mtime, reverse=True)[KEEP_OLDER:]:
        shutil.rmtree(stale, ignore_errors=True)
    for leftover in tmp.iterdir():  # root filesystems, loose layers, layouts: only the archive and log stay
        if leftover.name not in ("image.tar", "build.log"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    archive = entry / "image.tar"
    built = Built(built.names, str(archive), built.digest, built.id, key)
    (tmp / "meta.json").write_text(json.dumps(asdict(built), indent=1))
    try:
        tmp.rename(entry)
    except OSError:
        if not (entry / "meta.json").exists():
            raise
        # Another build of the same key (a second checkout, a test) finished first: same inputs, keep it.
        shutil.rmtree(tmp, ignore_errors=True)
        return Built(**json.loads((entry / "meta.json").read_text()))
    log(f"built {slug} in {time.monotonic() - start:.0f}s: {built.digest}")
    return built


def hash_of(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(
            part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode()
        )
        digest.update(b"\0")
    return digest.hexdigest()[:16]


# -- Debian root filesystems


def apt_sources() -> list[str]:
    """The host's own apt source files (mmdebstrap reads them; no mirror is named here)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    return [str(f) for f in files if f.is_file() and f.suffix in (".list", ".sources") and f.stat().st_size]


def _sources_digest() -> list[str]:
    return [Path(f).read_text() for f in apt_sources()]


def debian_rootfs(root: Path, packages: Iterable[str], out: io.TextIOBase) -> None:
    # In a private mount namespace: mmdebstrap's /proc, /sys and /dev mounts in the new root die with it.
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        *DPKG_EXCLUDES,
        SUITE,
        str(root),
        *apt_sources(),
    ]
    out.write(f"$ {shlex.join(command)}\n")
    out.flush()
    subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT)


def inside(root: Path, path: str) -> Path:
    """`path` of the image under `root`, its symlinks resolved inside the image (var/run -> /run must not
    lead to the host's /run)."""
    current = root
    parts = [p for p in path.split("/") if p]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            assert hops < 40, f"symlink loop at {candidate}"
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                current = root
            continue
        current = candidate
    return current


def chroot(root: Path, *argv: str, user: str | None = None, out: io.TextIOBase | None = None) -> str:
    command = ["chroot", *([f"--userspec={user}"] if user else []), str(root), *argv]
    done = subprocess.run(
        command, capture_output=True, text=True, env={"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "HOME": "/"}
    )
    if out is not None:
        out.write(f"$ {shlex.join(command)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def _python_key() -> str:
    prefix = python_prefix()
    binary = prefix / "lib" / "libpython3.12.so.1.0"
    return hash_of(
        RECIPE, SUITE, PYTHON_PACKAGES, DPKG_EXCLUDES, _sources_digest(), str(prefix), _sha256_file(binary)
    )


def install_python(root: Path, prefix: Path) -> None:
    """The CPython build into /usr/local like the official image: shebangs and recorded paths moved, only pip
    in site-packages (nothing this machine added), the test suite left out."""
    stdlib = prefix / "lib" / "python3.12"

    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        if here == stdlib:
            return {"test"} & set(names)
        if here == stdlib / "site-packages":
            return {n for n in names if not (n == "pip" or n.startswith("pip-") or n == "README.txt")}
        if here.name in ("idlelib", "tkinter"):
            return {n for n in names if n in ("idle_test", "test")}
        return set()

    local = inside(root, "usr/local")
    shutil.copytree(prefix, local, symlinks=True, ignore=ignore, dirs_exist_ok=True)
    old = str(prefix).encode()
    candidates = [p for p in (local / "bin").iterdir() if p.is_file() and not p.is_symlink()]
    candidates += list((local / "lib" / "python3.12").glob("_sysconfigdata_*.py"))
    candidates += list((local / "lib" / "python3.12").glob("config-3.12*/Makefile"))
    candidates += list((local / "lib" / "pkgconfig").glob("*.pc"))
    for path in candidates:
        data = path.read_bytes()
        if b"\0" in data[:1024] or old not in data:
            continue
        path.write_bytes(data.replace(old, b"/usr/local"))
    for cached_pyc in (local / "lib" / "python3.12" / "__pycache__").glob("_sysconfigdata_*"):
        cached_pyc.unlink()
    bin_ = local / "bin"
    for link, target in (
        ("python3", "python3.12"),
        ("python", "python3.12"),
        ("pip3", "pip3.12"),
        ("pip", "pip3.12"),
    ):
        if (bin_ / target).exists() and not (bin_ / link).exists():
            (bin_ / link).symlink_to(target)
    chroot(root, "/sbin/ldconfig")
    # A site-wide pip config that says nothing: a build behind a proxy mounts its own over it (make images
    # does, with the host's CA bundle), and a mount over an existing file leaves nothing in the new layer.
    inside(root, "etc/pip.conf").write_text(PIP_CONF_PLACEHOLDER)


def build_python(tmp: Path) -> Built:
    root = tmp / "rootfs"
    with (tmp / "build.log").open("a") as out:
        debian_rootfs(root, PYTHON_PACKAGES, out)
        prefix = python_prefix()
        install_python(root, prefix)
        check = "import ssl, sqlite3, ctypes, zlib, bz2, lzma, uuid, readline; print(ssl.OPENSSL_VERSION)"
        chroot(root, "/usr/local/bin/python3", "-c", check, out=out)
        chroot(root, "/usr/local/bin/pip", "--version", out=out)
        version = chroot(
            root, "/usr/local/bin/python3", "-c", "import platform; print(platform.python_version())"
        )
        layer_from_tree(root, tmp / "layer.tar")
    shutil.rmtree(root)
    config = {
        "Env": [f"PATH={DEFAULT_PATH}", "LANG=C.UTF-8", f"PYTHON_VERSION={version.strip()}"],
        "Cmd": ["python3"],
    }
    built = oci_archive(
        tmp / "image.tar", tmp / "layer.tar", [PYTHON_IMAGE], config, f"mmdebstrap {SUITE} + CPython", ""
    )
    (tmp / "layer.tar").unlink()
    return built


def _postgres_key() -> str:
    entrypoint = (HERE / "postgres-entrypoint.sh").read_bytes()
    return hash_of(
        RECIPE, SUITE, POSTGRES_PACKAGES, DPKG_EXCLUDES, _sources_digest(), entrypoint, POSTGRES_UID
    )


def build_postgres(tmp: Path) -> Built:
    root = tmp / "rootfs"
    with (tmp / "build.log").open("a") as out:
        debian_rootfs(root, POSTGRES_PACKAGES, out)
        bindirs = sorted((root / "usr" / "lib" / "postgresql").glob("*/bin"))
        assert bindirs, "postgresql server binaries missing"
        bindir = "/" + str(bindirs[-1].relative_to(root))
        major = bindirs[-1].parent.name
        # No Debian cluster: the entry point makes one in PGDATA. The postgres user gets alpine's uid.
        for leftover in (f"var/lib/postgresql/{major}", f"etc/postgresql/{major}"):
            shutil.rmtree(inside(root, leftover), ignore_errors=True)
        chroot(root, "groupmod", "-g", str(POSTGRES_UID), "postgres", out=out)
        chroot(root, "usermod", "-u", str(POSTGRES_UID), "-g", str(POSTGRES_UID), "postgres", out=out)
        for directory, mode in (
            ("var/lib/postgresql", 0o755),
            ("var/lib/postgresql/data", 0o700),
            ("var/run/postgresql", 0o2775),
            ("var/log/postgresql", 0o755),
            ("docker-entrypoint-initdb.d", 0o755),
        ):
            path = inside(root, directory)
            path.mkdir(parents=True, exist_ok=True)
            for sub in [path, *path.rglob("*")]:
                os.lchown(sub, POSTGRES_UID, POSTGRES_UID)
            path.chmod(mode)
        entrypoint = inside(root, "usr/local/bin/docker-entrypoint.sh")
        shutil.copy(HERE / "postgres-entrypoint.sh", entrypoint)
        entrypoint.chmod(0o755)
        chroot(root, f"{bindir}/postgres", "--version", user=f"{POSTGRES_UID}:{POSTGRES_UID}", out=out)
        layer_from_tree(root, tmp / "layer.tar")
    shutil.rmtree(root)
    config = {
        "Env": [
            f"PATH={bindir}:{DEFAULT_PATH}",
            "LANG=C.UTF-8",
            "PGDATA=/var/lib/postgresql/data",
            f"PG_MAJOR={major}",
        ],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["postgres"],
        "User": f"{POSTGRES_UID}:{POSTGRES_UID}",
        "ExposedPorts": {"5432/tcp": {}},
        "StopSignal": "SIGINT",
        "Labels": {
            "phlo-dagster.content": f"Debian {SUITE} postgresql-{major} (the name is the CRD's default)"
        },
    }
    return oci_archive(
        tmp / "image.tar", tmp / "layer.tar", [POSTGRES_IMAGE], config, f"mmdebstrap {SUITE} postgresql", ""
    )


def _pause_key() -> str:
    return hash_of(RECIPE, (HERE / "pause.c").read_bytes(), PAUSE_IMAGES, _gcc_version())


# -- images of one static Go binary the test bed built (tests/testbed/build.sh): oauth2-proxy and skipper run
# in pods on the real node. Made when a test needs them, since `make images` runs before the bed is built.

STATIC_UID = 65532  # the nonroot user of the distroless images these stand in for


def _testbed_version(variable: str) -> str:
    """A version pinned in tests/testbed/build.sh (VARIABLE=vX.Y.Z), the one its binary was built at."""
    script = (REPO / "tests" / "testbed" / "build.sh").read_text()
    found = re.search(rf"^{variable}=(\S+)", script, re.MULTILINE)
    if not found:
        raise RuntimeError(f"tests/testbed/build.sh pins no {variable}")
    return found.group(1)


def static_image(binary: Path, name: str, path: str) -> Built:
    """An image holding BINARY at PATH (its entry point) and the host's CA bundle, run as STATIC_UID, under
    NAME; cached by the binary's content."""
    key = hash_of(RECIPE, _sha256_file(binary), name, path, _sha256_file(host_ca_bundle()), STATIC_UID)
    slug = name.rsplit("/", 1)[-1].split(":")[0]

    def build(tmp: Path) -> Built:
        root = tmp / "rootfs"
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True)
        shutil.copy(binary, target)
        target.chmod(0o755)
        (root / "etc" / "ssl" / "certs").mkdir(parents=True)
        shutil.copy(host_ca_bundle(), root / "etc" / "ssl" / "certs" / "ca-certificates.crt")
        (root / "tmp").mkdir(mode=0o1777)
        layer_from_tree(root, tmp / "layer.tar")
        config = {"Entrypoint": [path], "User": f"{STATIC_UID}:{STATIC_UID}"}
        return oci_archive(tmp / "image.tar", tmp / "layer.tar", [name], config, f"static {path}", "")

    return cached(slug, key, build)


def _gcc_version() -> str:
    return subprocess.run(
        ["gcc", "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]


def build_pause(tmp: Path) -> Built:
    root = tmp / "rootfs"
    root.mkdir()
    with (tmp / "build.log").open("a") as out:
        command = ["gcc", "-static", "-Os", "-s", "-o", str(root / "pause"), str(HERE / "pause.c")]
        out.write(f"$ {shlex.join(command)}\n")
        subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT)
    layer_from_tree(root, tmp / "layer.tar")
    config = {"Entrypoint": ["/pause"], "User": f"{PAUSE_UID}:{PAUSE_UID}"}
    return oci_archive(tmp / "image.tar", tmp / "layer.tar", list(PAUSE_IMAGES), config, "static pause", "")


# -- the project's images, from its Dockerfiles


def _ignored(path: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in path.parts for pattern in CONTEXT_IGNORED)


def context_files(dockerfile: Path, build_args: dict[str, str]) -> list[Path]:
    """Every file the Dockerfile's COPY steps take from the context (what .dockerignore leaves)."""
    parsed = parse(dockerfile)
    args = {**parsed.build_args(), **build_args}
    files: set[Path] = set()
    for copy in parsed.all("COPY"):
        words = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), copy).split()
        for source in [w for w in words[:-1] if not w.startswith("--")]:
            path = REPO / source
            if path.is_dir():
                files |= {p for p in path.rglob("*") if p.is_file() and not _ignored(p.relative_to(REPO))}
            elif path.exists():
                files.add(path)
    return sorted(files)


def host_pip_config() -> str:
    """pip's configuration as the host has it (files only, not this process's PIP_* variables), with the CA
    bundle at the path the build mounts it on. Given to the build as a mount, never copied into a layer."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, env=_no_pip_env()
    ).stdout
    sections: dict[str, dict[str, str]] = {}
    for line in listed.splitlines():
        key, sep, value = line.partition("=")
        if not sep or key.startswith(":env:") or "." not in key:
            continue
        section, option = key.split(".", 1)
        sections.setdefault(section, {})[option] = value.strip().strip("'\"")
    sections.setdefault("global", {})["cert"] = "/etc/ssl/certs/ca-certificates.crt"
    return "".join(
        f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
        for section, options in sections.items()
    )


def _no_pip_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}


def host_ca_bundle() -> Path:
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SystemExit("images: no CA bundle on the host (/etc/ssl/certs/ca-certificates.crt)")


def ensure_in_storage(base: Built, out: io.TextIOBase) -> None:
    """The base image in buildah's storage under its name, at the cached archive's id."""
    want = base.id.removeprefix("sha256:")
    have = storage_images()
    if all(have.get(name) == want for name in base.names):
        return
    buildah("pull", "--quiet", f"oci-archive:{base.archive}:{base.name}", out=out)
    for name in base.names:
        buildah("tag", want, name, out=out)


def dockerfile_key(dockerfile: Path, base: Built, build_args: dict[str, str]) -> str:
    """What the image is made of: the Dockerfile, the files its COPY steps take, the build args, the base. Not
    its name: the same content under a new tag is a renamed copy, not a rebuild."""
    files = context_files(dockerfile, build_args)
    return hash_of(
        RECIPE,
        dockerfile.read_bytes(),
        [(str(f.relative_to(REPO)), _sha256_file(f)) for f in files],
        base.id,
        build_args,
    )


def build_dockerfile(
    slug: str, dockerfile: Path, name: str, base: Built, build_args: dict[str, str], key: str
) -> Built:

    def build(tmp: Path) -> Built:
        same = sorted((cache_root() / "archives").glob(f"*-{key}/image.tar"))
        if same:  # the same content under another name (a new tag): rename it, do not rebuild
            log(f"{name}: same content as {same[0].parent.name}, renamed")
            return renamed(Path(same[0]), tmp / "image.tar", [name])
        with (tmp / "build.log").open("a") as out:
            ensure_in_storage(base, out)
            pip_conf = tmp / "pip.conf"
            pip_conf.write_text(host_pip_config())
            args = [
                "build",
                "--pull=never",
                "--isolation=chroot",
                "--layers",  # the dependency layers are reused across code changes and workflow images
                "--volume",
                f"{host_ca_bundle()}:/etc/ssl/certs/ca-certificates.crt:ro",
                "--volume",
                f"{pip_conf}:/etc/pip.conf:ro",
                "--file",
                str(dockerfile),
                "--tag",
                name,
                *[a for k, v in sorted(build_args.items()) for a in ("--build-arg", f"{k}={v}")],
                str(REPO),
            ]
            build_retrying(args, out)
            layout = tmp / "layout"
            buildah("push", "--quiet", name, f"oci:{layout}:image", out=out)
            # The image stays in storage under its name: removing it would take its intermediate layers
            # (the dependency install) with it. trim_storage bounds what accumulates.
            trim_storage(out)
        return _layout_to_archive(layout, tmp / "image.tar", [name])

    return cached(slug, key, build)


def renamed(source: Path, archive: Path, names: list[str]) -> Built:
    """A copy of an archive under other names (its blobs, so its digests, unchanged)."""
    with tarfile.open(source) as src, tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name == "index.json" and data is not None:
                index = json.load(data)
                (descriptor, *_) = index["manifests"]
                descriptor = {k: v for k, v in descriptor.items() if k != "annotations"}
                index["manifests"] = _index_entries(descriptor, names)
                raw = json.dumps(index, indent=1).encode()
                member.size = len(raw)
                dst.addfile(member, io.BytesIO(raw))
            else:
                dst.addfile(member, data)
    meta = json.loads((source.parent / "meta.json").read_text())
    return Built(names, str(archive), meta["digest"], meta["id"], "")


def _layout_to_archive(layout: Path, archive: Path, names: list[str]) -> Built:
    index = json.loads((layout / "index.json").read_text())
    (descriptor,) = index["manifests"]
    descriptor = {k: v for k, v in descriptor.items() if k != "annotations"}
    manifest = json.loads((layout / "blobs" / "sha256" / descriptor["digest"].split(":")[1]).read_text())
    blobs: dict[str, Path | bytes] = {p.name: p for p in sorted((layout / "blobs" / "sha256").iterdir())}
    _write_archive(archive, blobs, {"schemaVersion": 2, "manifests": _index_entries(descriptor, names)})
    shutil.rmtree(layout)
    return Built(names, str(archive), descriptor["digest"], manifest["config"]["digest"], "")


# -- what `make images` builds


def inside_repo(directory: str) -> str:
    path = (REPO / directory).resolve()
    if not path.is_dir() or not path.is_relative_to(REPO):
        raise SystemExit(f"images: {directory!r} is not a directory inside the repository")
    return str(path.relative_to(REPO))


PREVIOUS_DOCKERFILE = HERE / "previous" / "Dockerfile"
PREVIOUS_LOCK = HERE / "previous" / "requirements.lock"


def previous_dagster() -> str:
    """The Dagster version of tests/images/previous/requirements.lock (the upgrade test's starting point)."""
    found = [version for name, version, _ in lock.pins(PREVIOUS_LOCK) if name == "dagster"]
    if not found:
        raise SystemExit(f"images: {PREVIOUS_LOCK.relative_to(REPO)} pins no dagster version")
    return found[0]


def previous_image() -> str:
    """The runtime one Dagster family back, tagged with that version: phlo-dagster:0.4.0-dagster-1.12.8."""
    return f"phlo-dagster:{project_version()}-dagster-{previous_dagster()}"


def build_all(workflow_image: str | None = None, build_args: dict[str, str] | None = None) -> list[Built]:
    start = time.monotonic()
    version = project_version()
    python = cached("python-3.12-slim", _python_key(), build_python)
    postgres = cached("postgres", _postgres_key(), build_postgres)
    pause = cached("pause", _pause_key(), build_pause)
    # Every key from one look at the tree, before the first build: edits made meanwhile wait for the next run.
    runtime, operator = REPO / "Dockerfile", REPO / "operator" / "Dockerfile"
    plan: list[tuple[str, Path, str, dict[str, str]]] = [
        ("phlo-dagster", runtime, normalize(f"phlo-dagster:{version}"), {}),
        ("phlo-dagster-operator", operator, normalize(f"phlo-dagster-operator:{version}"), {}),
        ("phlo-dagster-previous", PREVIOUS_DOCKERFILE, normalize(previous_image()), {}),
    ]
    if workflow_image:
        args = {k: inside_repo(v) for k, v in (build_args or {}).items() if v}
        name = normalize(workflow_image)
        plan.append(("workflow-" + re.sub(r"[^A-Za-z0-9_.]+", "_", name), runtime, name, args))
    keys = [dockerfile_key(dockerfile, python, args) for _, dockerfile, _, args in plan]
    built = [python, postgres, pause]
    for (slug, dockerfile, name, args), key in zip(plan, keys, strict=True):
        built.append(build_dockerfile(slug, dockerfile, name, python, args, key))
    write_index(built)
    log(f"images ready after {time.monotonic() - start:.0f}s; index: {INDEX.relative_to(REPO)}")
    for image in built:
        log(f"  {' '.join(image.names)}  {image.digest[:19]}")
    return built


def read_index(path: Path = INDEX) -> list[Built]:
    if not path.exists():
        return []
    known = set(Built.__dataclass_fields__)
    return [Built(**{k: v for k, v in entry.items() if k in known}) for entry in json.loads(path.read_text())]


def write_index(built: list[Built], path: Path = INDEX) -> None:
    """Index of this run's images, plus earlier entries (say, a workflow image) whose archives still exist."""
    names = {n for b in built for n in b.names}
    kept = [b for b in read_index(path) if not set(b.names) & names and Path(b.archive).exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"name": b.name, **asdict(b)} for b in [*built, *kept]]
    path.write_text(json.dumps(entries, indent=1) + "\n")


# -- into containerd


def present_images(ctr: str, address: str, namespace: str) -> dict[str, str]:
    listed = subprocess.run(
        [ctr, "--address", address, "--namespace", namespace, "images", "ls"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out = {}
    for line in listed.splitlines()[1:]:
        words = line.split()
        if len(words) >= 3:
            out[words[0]] = words[2]
    return out


def load(
    ctr: str,
    address: str,
    namespace: str = "k8s.io",
    snapshotter: str | None = None,
    index: Path = INDEX,
    images: list[Built] | None = None,
) -> list[str]:
    """Imports every indexed archive (or each of `images`) that containerd does not already have under all its
    names at its digest; returns the names imported."""
    wanted = read_index(index) if images is None else images
    present = present_images(ctr, address, namespace)
    imported = []
    for image in wanted:
        if all(present.get(name) == image.digest for name in image.names):
            log(f"present: {image.name}")
            continue
        command = [ctr, "--address", address, "--namespace", namespace, "images", "import"]
        command += [f"--snapshotter={snapshotter}"] if snapshotter else []
        log(f"importing {image.name} from {image.archive}")
        subprocess.run([*command, image.archive], check=True, stdout=subprocess.DEVNULL)
        imported += image.names
    present = present_images(ctr, address, namespace)
    missing = [n for image in wanted for n in image.names if present.get(n) != image.digest]
    if missing:
        raise RuntimeError(f"not in containerd after import: {missing}")
    return imported
