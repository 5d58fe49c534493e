#!/usr/bin/env bash
# Build the control-plane binaries for the k8s checks from the Go module proxy and cache them by version.
#
#   hack/k8s/build-binaries.sh [etcd|kube-apiserver|kubectl|kube-controller-manager|kube-scheduler|kwok|all]
#
# Binaries land in $LOOKALIKE_K8S_CACHE/<component>-<version>/ (default $HOME/.cache/lookalike-k8s),
# and the envtest asset folder $LOOKALIKE_K8S_CACHE/assets-<k8s version>/ links etcd, kube-apiserver and kubectl.
# A binary already in the cache is not rebuilt, so warm runs take well under a second.
# One binary is built at a time (kube-apiserver needs ~2.5 GB RSS); see ../shared/k8s/README.md.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
CACHE="${LOOKALIKE_K8S_CACHE:-$HOME/.cache/lookalike-k8s}"
GO="${GO:-go}"
export GOWORK=off GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0

# staging modules are published as k8s.io/X v0.<minor>.<patch>
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

log() { printf '[k8s-build %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

dir_k8s="$CACHE/$K8S_VERSION"
dir_etcd="$CACHE/etcd-$ETCD_VERSION"
dir_kwok="$CACHE/kwok-$KWOK_VERSION"

# prepare_k8s_src copies the k8s.io/kubernetes module into a writable tree whose go.mod requires the
# published staging modules instead of replacing them with ./staging folders (absent from the module zip).
prepare_k8s_src() {
  local src="$CACHE/src/kubernetes-$K8S_VERSION"
  if [[ -f "$src/.prepared" ]]; then echo "$src"; return; fi
  log "downloading k8s.io/kubernetes@$K8S_VERSION"
  local tmpmod; tmpmod="$(mktemp -d)"
  local moddir
  moddir="$(cd "$tmpmod" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
  rm -rf "$tmpmod"
  [[ -d "$moddir" ]] || { log "module download failed"; exit 1; }
  rm -rf "$src"; mkdir -p "$(dirname "$src")"
  cp -r "$moddir" "$src"
  chmod -R u+w "$src"
  rm -rf "$src/go.work" "$src/go.work.sum" "$src/vendor"
  local args=()
  while read -r mod; do
    args+=("-dropreplace=$mod" "-require=$mod@$STAGING_VERSION")
  done < <(cd "$src" && "$GO" mod edit -json | awk '/"Replace"/{r=1} r && /"Path": "k8s.io\//{gsub(/[",]/,"",$2); print $2}' | sort -u)
  (cd "$src" && "$GO" mod edit "${args[@]}")
  # keep only the replaces that did not point at ./staging (none expected, but be exact)
  touch "$src/.prepared"
  echo "$src"
}

build_k8s_cmd() {
  local name="$1"
  local out="$dir_k8s/$name"
  if [[ -x "$out" ]]; then log "$name $K8S_VERSION cached"; return; fi
  local src; src="$(prepare_k8s_src)"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  log "building $name $K8S_VERSION (this is the slow part)"
  local t0=$SECONDS
  mkdir -p "$dir_k8s"
  (cd "$src" && "$GO" build -mod=mod -trimpath -o "$out.tmp" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
    "./cmd/$name")
  mv "$out.tmp" "$out"
  log "built $name in $((SECONDS - t0)) s"
}

build_etcd() {
  local out="$dir_etcd/etcd"
  if [[ -x "$out" ]]; then log "etcd $ETCD_VERSION cached"; return; fi
  log "building etcd $ETCD_VERSION"
  local t0=$SECONDS
  local tmp; tmp="$(mktemp -d)"
  mkdir -p "$dir_etcd"
  (cd "$tmp" && "$GO" mod init lookalike.local/etcd-build >/dev/null 2>&1 \
    && "$GO" mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    && "$GO" mod tidy >/dev/null 2>&1 || true)
  (cd "$tmp" && "$GO" build -mod=mod -trimpath -ldflags "-s -w" -o "$out.tmp" go.etcd.io/etcd/server/v3)
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
  log "built etcd in $((SECONDS - t0)) s"
}

build_kwok() {
  local out="$dir_kwok/kwok"
  if [[ -x "$out" ]]; then
    log "kwok $KWOK_VERSION cached"
  else
    log "building kwok $KWOK_VERSION"
    local t0=$SECONDS
    mkdir -p "$dir_kwok"
    GOBIN="$dir_kwok/bin.tmp" "$GO" install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    mv "$dir_kwok/bin.tmp/kwok" "$out"; rmdir "$dir_kwok/bin.tmp"
    log "built kwok in $((SECONDS - t0)) s"
  fi
  kwok_stages
}

# kwok_stages copies the Stage objects kwok needs from the module zip (not the kustomization.yaml
# beside them); pod/fast makes pods Ready at once.
kwok_stages() {
  [[ -d "$dir_kwok/stage/pod/fast" ]] && return
  local moddir
  moddir="$(cd "$(mktemp -d)" && "$GO" mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
  [[ -d "$moddir" ]] || { log "kwok module download failed"; exit 1; }
  rm -rf "$dir_kwok/stage.tmp"
  for s in node/fast node/heartbeat pod/fast pod/general; do
    mkdir -p "$dir_kwok/stage.tmp/$s"
    for f in "$moddir/kustomize/stage/$s/"*.yaml; do
      [[ "$(basename "$f")" == kustomization.yaml ]] && continue
      cp "$f" "$dir_kwok/stage.tmp/$s/"
    done
  done
  chmod -R u+w "$dir_kwok/stage.tmp"
  rm -rf "$dir_kwok/stage"; mv "$dir_kwok/stage.tmp" "$dir_kwok/stage"
}

assets() {
  local a="$CACHE/assets-$K8S_VERSION"
  mkdir -p "$a"
  ln -sf "$dir_etcd/etcd" "$a/etcd"
  ln -sf "$dir_k8s/kube-apiserver" "$a/kube-apiserver"
  ln -sf "$dir_k8s/kubectl" "$a/kubectl"
}

what="${1:-all}"
case "$what" in
  etcd) build_etcd ;;
  kwok) build_kwok ;;
  kube-apiserver|kubectl|kube-controller-manager|kube-scheduler) build_k8s_cmd "$what" ;;
  envtest) build_etcd; build_k8s_cmd kube-apiserver; build_k8s_cmd kubectl; assets ;;
  all)
    t0=$SECONDS
    build_etcd
    build_k8s_cmd kube-apiserver
    build_k8s_cmd kubectl
    build_k8s_cmd kube-controller-manager
    build_k8s_cmd kube-scheduler
    build_kwok
    assets
    log "all binaries ready in $((SECONDS - t0)) s under $CACHE"
    ;;
  *) echo "usage: $0 [etcd|kube-apiserver|kubectl|kube-controller-manager|kube-scheduler|kwok|envtest|all]" >&2; exit 2 ;;
esac
