"""An S3 server on the real node: gofakes3's S3 protocol over its in-memory backend (tests/testbed/s3, built
by build.sh), listening on the node's address inside the bed's network namespace, so pods reach it at
http://NODE_ADDRESS:PORT. It serves one bucket and accepts only requests signed with its access key id."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from tests.testbed.cluster import BIN_DIR
from tests.testbed.processes import Process, TestbedError, http_ok, request_log, spawn, stop, wait_for
from tests.testbed.realnode import NODE_ADDRESS, RealNode

PORT = 9000
BUCKET = "dagster-compute-logs"


@dataclass
class S3:
    """A running S3 server: its endpoint (as pods and this host reach it), bucket, credentials, process."""

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    process: Process

    def stop(self) -> None:
        stop(self.process)

    def requests(self) -> list[str]:
        """The server's request log, a line each: `METHOD /bucket/key STATUS`."""
        return request_log(self.process)


def start(node: RealNode) -> S3:
    """Start the server with fresh credentials and an empty bucket; wait until it answers /healthz."""
    binary = BIN_DIR / "s3"
    if not binary.exists():
        raise TestbedError(f"{binary} is missing: run `make testbed-binaries` (tests/testbed/build.sh)")
    directory = node.directory / "s3"
    directory.mkdir(parents=True, exist_ok=True)
    key = "PHLO" + secrets.token_hex(8).upper()
    address = f"{NODE_ADDRESS}:{PORT}"
    argv = [str(binary), f"-addr={address}", f"-bucket={BUCKET}", f"-access-key-id={key}"]
    process = spawn("s3", [*node.nsenter(), *argv], directory / "s3.log", executable="s3")
    try:
        wait_for("the S3 server to answer", lambda: http_ok(f"http://{address}/healthz"), 60, [process])
    except BaseException:
        stop(process)
        raise
    return S3(f"http://{address}", BUCKET, key, secrets.token_urlsafe(24), process)
