#!/usr/bin/env bash
# End to end on a real cluster: kind (needs Docker; not part of `make test`).
#   kind create cluster -> docker build + kind load both images -> helm install -> apply the quickstart
#   PhloWorkflow -> wait for Ready -> materialize an asset through the webserver's GraphQL API.
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
local_port="${LOCAL_PORT:-13000}"

log() { printf '[kind-e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in docker kind kubectl helm python3; do
	command -v "$tool" >/dev/null || die "'$tool' is not on PATH (this check needs Docker, kind, kubectl and helm 3)"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers 'docker info'"

pf_pid=""
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
	[[ -n "$pf_pid" ]] && kill "$pf_pid" 2>/dev/null || true
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

log "helm install"
helm upgrade --install phlo-dagster charts/phlo-dagster --namespace "$ns" --create-namespace \
	--set image.pullPolicy=Never --wait --timeout 5m
kubectl -n "$ns" rollout status deployment/phlo-dagster --timeout=120s
helm test phlo-dagster --namespace "$ns" --timeout 3m

log "applying the quickstart PhloWorkflow with image $runtime_image"
kubectl -n "$ns" create --dry-run=client -o json -f examples/quickstart/workflow.yaml | python3 -c '
import json, sys
doc = json.load(sys.stdin)
doc["spec"].update(image=sys.argv[1], imagePullPolicy="IfNotPresent")
json.dump(doc, sys.stdout)
' "$runtime_image" | kubectl -n "$ns" apply -f -
kubectl -n "$ns" wait --for=condition=Ready pwf/quickstart --timeout=15m
kubectl -n "$ns" get pwf quickstart

log "materializing an asset through GraphQL"
kubectl -n "$ns" port-forward svc/quickstart-webserver "$local_port:3000" >/dev/null 2>&1 &
pf_pid=$!
python3 "$here/materialize.py" "http://127.0.0.1:$local_port"
log "passed"
