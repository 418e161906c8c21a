"""`python -m tests.testbed up|down|status`: the long-lived bed behind make testbed-up/testbed-down."""

from __future__ import annotations

import argparse
import sys

from tests.testbed import cluster, postgres
from tests.testbed.processes import TestbedError


def _up() -> int:
    bed = cluster.attach(cluster.ROOT)
    if bed is None:
        cluster.stop_recorded(cluster.ROOT)  # a half-dead bed from before: stop what is left of it
        bed = cluster.start(cluster.ROOT)
    else:
        print(f"testbed: already running at {bed.server}", file=sys.stderr)
    server = postgres.attach(cluster.ROOT)
    if server is None:
        postgres.stop_recorded(cluster.ROOT)
        server = postgres.start(cluster.ROOT / "postgres", cluster.ROOT)
    print(f"testbed: postgres on {server.host}:{server.port} (user {server.user})", file=sys.stderr)
    print(f"testbed: logs in {bed.directory / 'logs'}; stop with `make testbed-down`", file=sys.stderr)
    print(f"export KUBECONFIG={bed.kubeconfig}")
    return 0


def _down() -> int:
    stopped = [
        name
        for name, fn in (("postgres", postgres.stop_recorded), ("cluster", cluster.stop_recorded))
        if fn(cluster.ROOT)
    ]
    print(f"testbed: stopped {', '.join(stopped) or 'nothing (no bed recorded)'}", file=sys.stderr)
    return 0


def _status() -> int:
    bed = cluster.attach(cluster.ROOT)
    server = postgres.attach(cluster.ROOT)
    print(f"cluster: {'running at ' + bed.server if bed else 'not running'}")
    print(f"postgres: {f'running on {server.host}:{server.port}' if server else 'not running'}")
    return 0 if bed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        return {"up": _up, "down": _down, "status": _status}[args.command]()
    except TestbedError as error:
        print(f"testbed: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
