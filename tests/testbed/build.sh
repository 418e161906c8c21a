#!/usr/bin/env bash
# Builds the test bed's binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# kwok, helm, then the real node's) from their Go modules into a cache outside the repository, keyed by version,
# then links them into .testbed/bin/. A component is rebuilt only when its version key changes.
set -euo pipefail

K8S_VERSION=v1.36.3   # k8s.io/kubernetes; staging modules pinned to v0.36.3 in gomod/go.mod
ETCD_VERSION=v3.6.8   # go.etcd.io/etcd/server/v3, the version Kubernetes v1.36.3 pins
KWOK_VERSION=v0.8.0   # sigs.k8s.io/kwok
HELM_VERSION=v3.21.4  # helm.sh/helm/v3 (helm 4 changes install to server-side apply: pin the major)
CONTAINERD_VERSION=v2.4.2  # github.com/containerd/containerd/v2, the real node's runtime (gomod-containerd/)
COREDNS_VERSION=v1.15.0    # github.com/coredns/coredns, the real node's DNS, trimmed plugin list (coredns/)
KUBE_ROUTER_VERSION=v2.1.0 # github.com/cloudnativelabs/kube-router/v2: the node's NetworkPolicy enforcement
REGISTRY_VERSION=v3.1.2    # github.com/distribution/distribution/v3: the pull-secret tests' registry (registry/)
S3_VERSION=v1.2.0          # github.com/johannesboyne/gofakes3: the compute-log tests' S3 server (s3/)
OAUTH2_PROXY_VERSION=v7.15.6  # github.com/oauth2-proxy/oauth2-proxy/v7: spec.auth's proxy (the default image's)
SKIPPER_VERSION=v0.21.0    # github.com/zalando/skipper: the real node's Ingress controller (gomod-skipper/)
OIDC_VERSION=v0.0.0-20261103160011-e06ed0b7cb7f  # github.com/oauth2-proxy/mockoidc: the sign-in tests' provider

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache_root="${PHLO_TESTBED_CACHE:-$HOME/.cache/phlo-dagster/testbed}"
out_bin="$repo/.testbed/bin"

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath"
export GOTOOLCHAIN=local

log() { printf '[testbed-build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

command -v go >/dev/null || { log "error: 'go' is not on PATH (Go >= 1.26 is needed to build the test bed)"; exit 1; }
go_version="$(go env GOVERSION)"
go_minor="$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")"
if [[ ! "$go_minor" =~ ^[0-9]+$ ]] || ((go_minor < 26)); then
	log "error: $go_version is too old: Kubernetes ${K8S_VERSION} and kwok ${KWOK_VERSION} need Go >= 1.26"
	exit 1
fi

hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# The k8s key covers the wrapper module (versions of every dependency), the Go toolchain and this script's
# ldflags; kwok and helm are keyed by their own version and the toolchain.
k8s_key="k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-${go_version}-$(
	{ cat "$here/gomod/go.mod" "$here/gomod/go.sum"; echo "$K8S_VERSION $ETCD_VERSION"; } | sha256sum | cut -c1-12)"
kwok_key="kwok-${KWOK_VERSION}-${go_version}"
containerd_key="containerd-${CONTAINERD_VERSION}-${go_version}-$(hash_of "$here/gomod-containerd/go.mod" "$here/gomod-containerd/go.sum")"
kube_router_key="kube-router-${KUBE_ROUTER_VERSION}-${go_version}-$(hash_of "$here/gomod-kube-router/go.mod" "$here/gomod-kube-router/go.sum")"
coredns_key="coredns-${COREDNS_VERSION}-${go_version}-$(hash_of "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go")"
registry_key="registry-${REGISTRY_VERSION}-${go_version}-$(hash_of "$here/registry/go.mod" "$here/registry/go.sum" "$here/registry/main.go")"
s3_key="s3-${S3_VERSION}-${go_version}-$(hash_of "$here/s3/go.mod" "$here/s3/go.sum" "$here/s3/main.go")"
oidc_key="oidc-${go_version}-$(hash_of "$here/oidc/go.mod" "$here/oidc/go.sum" "$here/oidc/main.go")"
oauth2_proxy_key="oauth2-proxy-${OAUTH2_PROXY_VERSION}-${go_version}"
skipper_key="skipper-${SKIPPER_VERSION}-${go_version}-$(hash_of "$here/gomod-skipper/go.mod" "$here/gomod-skipper/go.sum")"
helm_key="helm-${HELM_VERSION}-${go_version}"

# ensure KEY FUNCTION: unless the cache has KEY, runs FUNCTION into a temporary dir, then moves it into
# place atomically so an interrupted build never leaves a half-filled cache entry.
ensure() {
	local key="$1" fn="$2"
	local dest="$cache_root/$key"
	if [[ -f "$dest/.complete" ]]; then
		log "cached: $key"
		return
	fi
	mkdir -p "$cache_root"
	local tmp
	tmp="$(mktemp -d "$cache_root/.build-$key.XXXXXX")"
	mkdir -p "$tmp/bin"
	log "building $key"
	local start=$SECONDS
	if ! "$fn" "$tmp/bin"; then
		rm -rf "$tmp"
		log "error: building $key failed"
		exit 1
	fi
	date -u +%FT%TZ >"$tmp/.complete"
	rm -rf "$dest"
	mv "$tmp" "$dest"
	log "built $key in $((SECONDS - start))s: $(ls "$dest/bin" | tr '\n' ' ')"
}

build_k8s() {
	local bin="$1" build_date
	# Stamp the module's publication time, not now: identical inputs give identical binaries.
	build_date="$(cd "$here/gomod" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
	local minor="${K8S_VERSION#v1.}"
	minor="${minor%%.*}"
	local ldflags="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
	done
	(
		cd "$here/gomod"
		log "go build kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy ($K8S_VERSION)"
		go build -ldflags "$ldflags" -o "$bin/" \
			k8s.io/kubernetes/cmd/kube-apiserver \
			k8s.io/kubernetes/cmd/kube-controller-manager \
			k8s.io/kubernetes/cmd/kube-scheduler \
			k8s.io/kubernetes/cmd/kubectl \
			k8s.io/kubernetes/cmd/kubelet \
			k8s.io/kubernetes/cmd/kube-proxy
		log "go build etcd ($ETCD_VERSION)"
		go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
	)
}

build_kwok() {
	local bin="$1"
	GOBIN="$bin" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_helm() {
	local bin="$1"
	GOBIN="$bin" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X helm.sh/helm/v3/internal/version.gitTreeState=clean" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_containerd() {
	local bin="$1"
	(
		cd "$here/gomod-containerd"
		local pkg=github.com/containerd/containerd/v2
		local ldflags="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=$pkg"
		log "go build containerd containerd-shim-runc-v2 ctr ($CONTAINERD_VERSION)"
		# no_btrfs: no btrfs headers needed (CGO is off anyway); the node uses the overlayfs snapshotter.
		go build -tags no_btrfs,no_devmapper,no_zfs -ldflags "$ldflags" -o "$bin/" \
			$pkg/cmd/containerd $pkg/cmd/containerd-shim-runc-v2 $pkg/cmd/ctr
	)
}

build_coredns() {
	local bin="$1"
	(cd "$here/coredns" && log "go build coredns ($COREDNS_VERSION)" && go build -ldflags "-s -w" -o "$bin/coredns" .)
}

build_kube_router() {
	local bin="$1"
	(
		cd "$here/gomod-kube-router"
		log "go build kube-router ($KUBE_ROUTER_VERSION)"
		go build -ldflags "-s -w" -o "$bin/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
	)
}

build_registry() {
	local bin="$1"
	(cd "$here/registry" && log "go build registry ($REGISTRY_VERSION)" && go build -ldflags "-s -w" -o "$bin/registry" .)
}

build_s3() {
	local bin="$1"
	(cd "$here/s3" && log "go build s3 (gofakes3 $S3_VERSION)" && go build -ldflags "-s -w" -o "$bin/s3" .)
}

# oauth2-proxy and skipper run in pods on the real node: tests/images/build.py static_image makes their images.
build_oauth2_proxy() {
	local bin="$1"
	log "go install oauth2-proxy ($OAUTH2_PROXY_VERSION)"
	GOBIN="$bin" go install -ldflags "-s -w \
-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$OAUTH2_PROXY_VERSION" \
		"github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION"
}

build_skipper() {
	local bin="$1"
	(
		cd "$here/gomod-skipper"
		grep -q "github.com/zalando/skipper $SKIPPER_VERSION " go.mod ||
			{ log "error: gomod-skipper/go.mod does not require skipper $SKIPPER_VERSION"; return 1; }
		log "go build skipper ($SKIPPER_VERSION)"
		go build -ldflags "-s -w -X main.version=$SKIPPER_VERSION" -o "$bin/skipper" github.com/zalando/skipper/cmd/skipper
	)
}

build_oidc() {
	local bin="$1"
	(cd "$here/oidc" && log "go build oidc (mockoidc $OIDC_VERSION)" && go build -ldflags "-s -w" -o "$bin/oidc" .)
}

total_start=$SECONDS
log "cache: $cache_root (go $go_version)"
# One build at a time per cache: `make test` waits here for the one .ci/run started early, then finds it cached.
mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
if ! flock -n 9; then
	log "another build holds $cache_root/.build.lock; waiting for it"
	flock 9
fi
# Linked into .testbed/bin as each is ready, in two stages: the control plane (what the kwok integration tests
# need) first, then the real node's runtime, DNS and NetworkPolicy enforcement. `make test` starts the kwok tests
# when the stage marker appears, while the node's binaries still build.
control_plane_marker="$out_bin/.control-plane-ready"
mkdir -p "$out_bin"
# linked KEY: every binary of the cached KEY is already linked into .testbed/bin.
linked() {
	local f
	[[ -f "$cache_root/$1/.complete" ]] || return 1
	for f in "$cache_root/$1/bin/"*; do
		[[ "$(readlink "$out_bin/$(basename "$f")")" == "$f" ]] || return 1
	done
}
# A link that already points at its binary is left alone: tests using the bed may be running (pass 2).
link() {
	local f
	for f in "$cache_root/$1/bin/"*; do
		[[ "$(readlink "$out_bin/$(basename "$f")")" == "$f" ]] || ln -sfn "$f" "$out_bin/$(basename "$f")"
	done
}
# The marker stays only while it is true: a control plane to build or relink takes it away until done.
linked "$k8s_key" && linked "$kwok_key" && linked "$helm_key" || rm -f "$control_plane_marker"
for step in "$k8s_key build_k8s" "$kwok_key build_kwok" "$helm_key build_helm"; do
	# shellcheck disable=SC2086
	ensure $step
	link "${step%% *}"
done
touch "$control_plane_marker"
log "control plane ready after $((SECONDS - total_start))s"
for step in "$containerd_key build_containerd" "$coredns_key build_coredns" "$kube_router_key build_kube_router" \
	"$registry_key build_registry" "$s3_key build_s3" "$oidc_key build_oidc" \
	"$oauth2_proxy_key build_oauth2_proxy" "$skipper_key build_skipper"; do
	# shellcheck disable=SC2086
	ensure $step
	link "${step%% *}"
done
log "binaries ready in .testbed/bin after $((SECONDS - total_start))s: $(ls "$out_bin" | tr '\n' ' ')"
