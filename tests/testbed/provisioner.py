"""The real node's default StorageClass: a dynamic provisioner of local directories (what kind ships too).

kube-controller-manager's own host-path provisioner makes each volume root-owned with mode 0750, which no
non-root pod (PostgreSQL runs as uid 70) can write, and fsGroup does not apply to hostPath volumes. This one
follows the external-provisioner protocol instead: for every pending claim of its StorageClass it makes a
world-writable directory under the bed, creates a PersistentVolume bound to that claim and pinned to the
node, and deletes directory and volume once a Delete-policy volume is released.
`python -m tests.testbed.provisioner --kubeconfig K --root DIR` runs it until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

PROVISIONER = "testbed.phlo.dev/local-path"
log = logging.getLogger("provisioner")


def volume_for(claim: Any, storage_class: Any, root: Path, node: str) -> dict[str, Any]:
    """The PersistentVolume that satisfies claim: a directory under root, on node, pre-bound to the claim."""
    name = f"pvc-{claim.metadata.uid}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": claim.spec.resources.requests["storage"]},
            "accessModes": claim.spec.access_modes or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": storage_class.reclaim_policy or "Delete",
            "storageClassName": storage_class.metadata.name,
            "volumeMode": claim.spec.volume_mode or "Filesystem",
            "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": claim.metadata.namespace,
                "name": claim.metadata.name,
                "uid": claim.metadata.uid,
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            },
        },
    }


def _ours(core: client.CoreV1Api, storage: client.StorageV1Api) -> dict[str, Any]:
    return {
        sc.metadata.name: sc for sc in storage.list_storage_class().items if sc.provisioner == PROVISIONER
    }


def sync(core: client.CoreV1Api, storage: client.StorageV1Api, root: Path, node: str) -> None:
    """One pass: provision pending claims of our classes, reclaim released Delete-policy volumes."""
    classes = _ours(core, storage)
    if not classes:
        return
    for claim in core.list_persistent_volume_claim_for_all_namespaces().items:
        sc = classes.get(claim.spec.storage_class_name or "")
        if sc is None or claim.status.phase != "Pending" or claim.spec.volume_name:
            continue
        doc = volume_for(claim, sc, root, node)
        directory = Path(doc["spec"]["hostPath"]["path"])
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(
            0o777
        )  # any pod user may write; the pod's own securityContext decides the files' owner
        try:
            core.create_persistent_volume(doc)
            log.info(
                "provisioned %s for %s/%s",
                doc["metadata"]["name"],
                claim.metadata.namespace,
                claim.metadata.name,
            )
        except ApiException as error:
            if error.status != 409:
                raise
    for volume in core.list_persistent_volume().items:
        annotations = volume.metadata.annotations or {}
        if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            continue
        if volume.status.phase == "Released" and volume.spec.persistent_volume_reclaim_policy == "Delete":
            shutil.rmtree(volume.spec.host_path.path, ignore_errors=True)
            try:
                core.delete_persistent_volume(volume.metadata.name)
                log.info("deleted %s", volume.metadata.name)
            except ApiException as error:
                if error.status != 404:
                    raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.testbed.provisioner", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--node", required=True)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    core, storage = client.CoreV1Api(), client.StorageV1Api()
    args.root.mkdir(parents=True, exist_ok=True)
    running = True

    def _stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("provisioning %s under %s for node %s", PROVISIONER, args.root, args.node)
    while running:
        try:
            sync(core, storage, args.root, args.node)
        except Exception as error:  # the API server restarting, a conflict: log and retry next pass
            log.warning("sync failed: %s", error)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
