#!/usr/bin/env bash
# End to end on a real cluster: kind (needs Docker; not part of `make test`).
#   kind create cluster -> docker build + kind load both images -> the flow the real-node suite runs
#   (tests/e2e/flow.py: helm install, quickstart Ready, helm test, GraphQL, a run as a Job, a screenshot).
# Environment: KIND_CLUSTER (default phlo-dagster), NAMESPACE (phlo), KIND_NODE_IMAGE (kind's default),
# KEEP_CLUSTER=1 keeps the cluster afterwards, ARTIFACTS=<dir> receives logs on failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

cluster="${KIND_CLUSTER:-phlo-dagster}"
ns="${NAMESPACE:-phlo}"
artifacts="${ARTIFACTS:-${TMPDIR:-/tmp}/phlo-kind-e2e}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
operator_image="phlo-dagster-operator:${version}"
runtime_image="phlo-dagster:${version}"

log() { printf '[kind-e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in docker kind kubectl helm python3; do
	command -v "$tool" >/dev/null || die "'$tool' is not on PATH (this check needs Docker, kind, kubectl and helm 3)"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info'"

collect() {
	mkdir -p "$artifacts"
	kubectl get all,pwf,jobs,events -A -o wide >"$artifacts/objects.txt" 2>&1 || true
	kubectl -n "$ns" get pwf -o yaml >"$artifacts/phloworkflows.yaml" 2>&1 || true
	for pod in $(kubectl -n "$ns" get pods -o name 2>/dev/null); do
		kubectl -n "$ns" logs "$pod" --all-containers >"$artifacts/$(basename "$pod").log" 2>&1 || true
	done
	log "logs in $artifacts"
}
cleanup() {
	local status=$?
	[[ $status -ne 0 ]] && collect
	if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
		kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
	fi
	exit $status
}
trap cleanup EXIT

if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
	log "creating kind cluster $cluster"
	kind create cluster --name "$cluster" --config kind-config.yaml ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

log "building $operator_image and $runtime_image"
docker build -f operator/Dockerfile -t "$operator_image" .
docker build -f Dockerfile -t "$runtime_image" .
kind load docker-image --name "$cluster" "$operator_image" "$runtime_image"

# From here on the flow is the real-node suite's (tests/e2e/flow.py): install, quickstart Ready, probes,
# helm test, UI/GraphQL through port-forward, a run as a Kubernetes Job, a screenshot of the asset graph.
log "running the shared end-to-end flow"
kubeconfig="$artifacts/kubeconfig"
mkdir -p "$artifacts"
kind get kubeconfig --name "$cluster" >"$kubeconfig"
python3 -m tests.e2e.flow --kubeconfig "$kubeconfig" --namespace "$ns" --image "$runtime_image" --artifacts "$artifacts"
