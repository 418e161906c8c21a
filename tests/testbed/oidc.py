"""An OpenID Connect provider on the real node: oauth2-proxy's mockoidc (tests/testbed/oidc, built by
build.sh), listening on the node's address inside the bed's network namespace, so pods (oauth2-proxy
redeeming a code) and this host (the test, acting as the browser) reach it at the same issuer URL. Its
authorization endpoint signs in its default user (jane.doe@example.com) at once, for one client id."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from tests.testbed.cluster import BIN_DIR
from tests.testbed.processes import Process, TestbedError, http_ok, request_log, spawn, stop, wait_for
from tests.testbed.realnode import NODE_ADDRESS, RealNode

PORT = 9001
USER_EMAIL = "jane.doe@example.com"


@dataclass
class Provider:
    """A running provider: its issuer URL, the client it accepts, its process."""

    issuer: str
    client_id: str
    client_secret: str
    process: Process

    def stop(self) -> None:
        stop(self.process)

    def requests(self) -> list[str]:
        """The provider's request log, a line each: `METHOD /path STATUS`."""
        return request_log(self.process)


def start(node: RealNode) -> Provider:
    """Start the provider with a fresh client; wait until its discovery document answers."""
    binary = BIN_DIR / "oidc"
    if not binary.exists():
        raise TestbedError(f"{binary} is missing: run `make testbed-binaries` (tests/testbed/build.sh)")
    directory = node.directory / "oidc"
    directory.mkdir(parents=True, exist_ok=True)
    client_id, client_secret = "phlo-" + secrets.token_hex(6), secrets.token_urlsafe(24)
    address = f"{NODE_ADDRESS}:{PORT}"
    argv = [str(binary), f"-addr={address}", f"-client-id={client_id}", f"-client-secret={client_secret}"]
    process = spawn("oidc", [*node.nsenter(), *argv], directory / "oidc.log", executable="oidc")
    issuer = f"http://{address}/oidc"
    try:
        discovery = f"{issuer}/.well-known/openid-configuration"
        wait_for("the OpenID Connect provider to answer", lambda: http_ok(discovery), 60, [process])
    except BaseException:
        stop(process)
        raise
    return Provider(issuer, client_id, client_secret, process)
