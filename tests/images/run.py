"""Runs a shell script next to an image's root filesystem, as a container would see it, without a runtime.

The script runs in new mount, network (loopback only) and PID namespaces, so nothing it mounts or starts
outlives it. `$root` is the image's filesystem mounted read-only, with tmpfs at the writable paths asked
for, /proc and /dev; `in_image ARGV...` runs a command there as the image's user (or the one asked for)
with the image's Env.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
from pathlib import Path

from tests.images import build


def image_config(name: str) -> dict[str, object]:
    out = build.buildah("inspect", "--type", "image", name, capture=True)
    return json.loads(out)["OCIv1"]["config"]


def run(
    image: build.Built,
    body: str,
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
    writable: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`writable`: path in the image -> owner "uid:gid" of a tmpfs mounted there (the pod's emptyDirs)."""
    log = io.StringIO()
    build.ensure_in_storage(image, log)
    config = image_config(image.name)
    user = user or str(config.get("User") or "0:0")
    if ":" not in user:
        user += f":{user}"
    image_env = dict(e.split("=", 1) for e in config.get("Env") or [])  # type: ignore[union-attr]
    image_env.update(env or {})
    buildah = shlex.join(["buildah", *build.storage_args()])
    # Each path resolved inside the image (/var/run/postgresql is /run/postgresql there), as runc does.
    mounts = "\n".join(
        f'at="$(chroot "$root" readlink -m {shlex.quote(path)} 2>/dev/null || echo {shlex.quote(path)})"\n'
        f"mount -t tmpfs -o mode=0700,uid={owner.split(':')[0]},gid={owner.split(':')[1]} tmpfs "
        '"$root$at"'
        for path, owner in (writable or {}).items()
    )
    env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in image_env.items())
    script = f"""
set -eu
cid="$({buildah} from --pull=never --quiet {shlex.quote(image.name)})"
cleanup() {{ {buildah} rm "$cid" >/dev/null 2>&1 || true; }}
trap cleanup EXIT
mnt="$({buildah} mount "$cid")"
root="$(mktemp -d)"
mount --bind "$mnt" "$root"
mount -o remount,bind,ro "$root"
if [ -d "$root/proc" ]; then mount -t proc proc "$root/proc"; fi
if [ -d "$root/dev" ]; then mount --rbind /dev "$root/dev"; fi
{mounts}
ip link set lo up
in_image() {{ chroot --userspec={shlex.quote(user)} "$root" /usr/bin/env -i {env_args} "$@"; }}
set +e
(
set -e
{body}
)
status=$?
umount -R "$root" 2>/dev/null || umount -l "$root"
exit $status
"""
    # --mount-proc: the script's own /proc shows its PID namespace only (pgrep finds no host process).
    command = ["unshare", "--mount", "--propagation", "private", "--net", "--pid", "--fork", "--mount-proc"]
    command += ["--kill-child"]
    return subprocess.run(
        [*command, "sh", "-c", script], capture_output=True, text=True, timeout=timeout, cwd=Path("/")
    )
