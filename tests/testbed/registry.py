"""A private image registry on the real node: distribution's registry (tests/testbed/registry, built by
build.sh) with htpasswd basic auth, listening on the node's address inside the bed's network namespace, and
the node's containerd told (its hosts directory) to reach it over plain HTTP."""

from __future__ import annotations

import secrets
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.testbed.cluster import BIN_DIR
from tests.testbed.processes import Process, TestbedError, spawn, stop, wait_for
from tests.testbed.realnode import NODE_ADDRESS, RealNode

PORT = 5000
USER = "phlo"


@dataclass
class Registry:
    """A running registry: its host:port (what image names start with), its credentials and process."""

    address: str
    username: str
    password: str
    process: Process

    def stop(self) -> None:
        stop(self.process)


def _unauthorized(url: str) -> bool:
    """True when the registry answers and asks for credentials (what it does once it serves)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return False
    except urllib.error.HTTPError as error:
        return error.code == 401


def hosts_dir(node: RealNode) -> Path:
    """containerd's registry hosts directory (config_path in the node's containerd config)."""
    return node.directory / "containerd" / "certs.d"


def start(node: RealNode) -> Registry:
    """Start the registry with a fresh password (empty storage); wait until it refuses an anonymous /v2/."""
    binary = BIN_DIR / "registry"
    if not binary.exists():
        raise TestbedError(f"{binary} is missing: run `make testbed-binaries` (tests/testbed/build.sh)")
    directory = node.directory / "registry"
    subprocess.run(["rm", "-rf", str(directory)], check=True)
    directory.mkdir(parents=True)
    password = secrets.token_urlsafe(18)
    hashed = subprocess.run(
        [str(binary), "htpasswd", USER], input=password + "\n", capture_output=True, text=True, check=False
    )
    if hashed.returncode != 0:
        raise TestbedError(f"registry htpasswd failed: {hashed.stderr.strip()}")
    (directory / "htpasswd").write_text(hashed.stdout)
    address = f"{NODE_ADDRESS}:{PORT}"
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: info}\n"
        f"storage: {{filesystem: {{rootdirectory: {directory / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{address}', secret: {secrets.token_hex(16)}}}\n"
        f"auth: {{htpasswd: {{realm: phlo-testbed, path: {directory / 'htpasswd'}}}}}\n"
    )
    hosts = hosts_dir(node) / address
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(
        f'server = "http://{address}"\n\n[host."http://{address}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    process = spawn(
        "registry",
        [*node.nsenter(), str(binary), "serve", str(config)],
        directory / "registry.log",
        executable="registry",
    )
    try:
        wait_for(
            "the registry to ask for credentials",
            lambda: _unauthorized(f"http://{address}/v2/"),
            60,
            [process],
        )
    except BaseException:
        stop(process)
        raise
    return Registry(address, USER, password, process)


def push(node: RealNode, registry: Registry, image: str, name: str) -> str:
    """Push an image of the node's containerd to the registry as `name` (a path and tag), with the registry's
    credentials; the pushed reference is then removed from the node, so a pod using it must pull it."""
    target = f"{registry.address}/{name}"
    steps = [
        ("images", "tag", "--force", image, target),
        ("images", "push", "--plain-http", f"--user={registry.username}:{registry.password}", target),
        ("images", "rm", target),
    ]
    for step in steps:
        out = node.ctr(*step)
        if out.returncode != 0:
            shown = " ".join(a if not a.startswith("--user=") else "--user=***" for a in step)
            raise TestbedError(f"ctr {shown} failed: {out.stderr.strip()[-1500:]}")
    return target
