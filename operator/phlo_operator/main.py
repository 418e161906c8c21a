"""`phlo-dagster-operator`: parse flags, start metrics and health endpoints, run kopf."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time

from phlo_operator import controller as ctl
from phlo_operator import metrics
from phlo_operator.apply import ApiError, Kube
from phlo_operator.store import tap_watches

RESYNC_ENV = "PHLO_OPERATOR_RESYNC_SECONDS"  # read by phlo_operator.handlers at import

log = logging.getLogger("phlo_operator")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (time, level, logger, message) for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


# Default of --no-code-location-check's setting (the flag wins); "false" turns the check off.
CODE_LOCATION_CHECK_ENV = "PHLO_OPERATOR_CODE_LOCATION_CHECK"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="phlo-dagster-operator", description="Reconcile PhloWorkflow resources into Dagster deployments."
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--namespace", "-n", action="append", metavar="NS", help="watch NS (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--metrics-port", type=int, default=8080, help="Prometheus /metrics port (default 8080)"
    )
    parser.add_argument("--health-port", type=int, default=8081, help="liveness /healthz port (default 8081)")
    parser.add_argument(
        "--bind-address", default="0.0.0.0", help="address of both endpoints (default 0.0.0.0)"
    )
    parser.add_argument(
        "--priority", type=int, help="kopf peering priority (default: random, so replicas differ)"
    )
    parser.add_argument(
        "--standalone", action="store_true", help="no peering: act even if other replicas run"
    )
    parser.add_argument(
        "--peering-object",
        choices=["create", "wait"],
        default="create",
        help="create the kopf peering object(s) (default), or wait for them to appear because another tool "
        "(the Helm chart) creates them: creating them too would race its install",
    )
    parser.add_argument(
        "--resync-seconds", type=float, default=300.0, help="periodic full reconcile interval (default 300)"
    )
    parser.add_argument(
        "--no-code-location-check",
        dest="code_location_check",
        action="store_false",
        default=os.environ.get(CODE_LOCATION_CHECK_ENV, "true").lower() not in ("0", "false", "no", "off"),
        help="Ready once the pods are available, without asking each webserver whether it loaded the code "
        "location (for an operator that cannot reach the webservers)",
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="log line format")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    for port in (args.metrics_port, args.health_port):
        if not 0 < port < 65536:
            parser.error(f"port {port} is out of range 1-65535")
    if args.resync_seconds < 1:
        parser.error("--resync-seconds must be at least 1")
    if args.metrics_port == args.health_port:
        parser.error("--metrics-port and --health-port must differ")
    return args


PEERING_WAIT_SECONDS = 120.0


def ensure_peering(kube: Kube, namespaces: list[str], clusterwide: bool, create: bool = True) -> bool:
    """Create (or with create=False wait for) the kopf peering object(s) when the peering CRDs exist;
    without them kopf runs standalone."""
    plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
    if not kube.has_api("kopf.dev/v1", plural):
        log.warning("kopf.dev peering CRDs not installed: running without peering (do not run 2 replicas)")
        return False
    if not create:
        return _wait_for_peering(kube, namespaces, clusterwide)
    body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": ctl.PEERING_NAME}}
    urls = (
        ["/apis/kopf.dev/v1/clusterkopfpeerings"]
        if clusterwide
        else [f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings" for ns in namespaces]
    )
    for url in urls:
        kind = "ClusterKopfPeering" if clusterwide else "KopfPeering"
        try:
            kube.request("POST", url, {**body, "kind": kind})
        except ApiError as exc:
            if exc.code != 409:
                raise
    return True


def _wait_for_peering(kube: Kube, namespaces: list[str], clusterwide: bool) -> bool:
    urls = (
        [f"/apis/kopf.dev/v1/clusterkopfpeerings/{ctl.PEERING_NAME}"]
        if clusterwide
        else [f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{ctl.PEERING_NAME}" for ns in namespaces]
    )
    deadline = time.monotonic() + PEERING_WAIT_SECONDS
    while True:
        missing = []
        for url in urls:
            try:
                kube.request("GET", url)
            except ApiError as exc:
                if exc.code != 404:
                    raise
                missing.append(url)
        if not missing:
            return True
        if time.monotonic() > deadline:
            log.warning("peering object(s) %s did not appear: running without peering", missing)
            return False
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    os.environ[RESYNC_ENV] = str(args.resync_seconds)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # per-handler success lines are noise
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per liveness probe
    import kopf

    from phlo_operator import handlers  # noqa: F401 - registers the kopf handlers

    namespaces: list[str] = list(args.namespace or [])
    try:
        options = ctl.Options(
            clusterwide=args.all_namespaces,
            priority=args.priority or random.randint(1, 10**6),
            code_location_check=args.code_location_check,
        )
        kube = ctl.connect()
        controller = ctl.build(kube, options)
        if not args.standalone:
            create = args.peering_object == "create"
            options.peering = ensure_peering(kube, namespaces, args.all_namespaces, create)
        else:
            options.peering = False
    except Exception as exc:  # no kubeconfig, API server unreachable: a clear one-line error
        log.error("cannot reach the Kubernetes API: %s", exc)
        return 2
    ctl.install(controller)
    if controller.store is not None:
        tap_watches(controller.store)  # before kopf starts any watch
    metrics.serve(args.metrics_port, args.bind_address)
    kopf.run(
        clusterwide=args.all_namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{args.bind_address}:{args.health_port}/healthz",
        standalone=not options.peering,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
