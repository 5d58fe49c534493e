#!/usr/bin/env bash
# Starts the four services in the foreground with readable, prefixed logs,
# indexes the demo catalog, prints the URL, and stops everything on Ctrl-C.
# Called by `make run`; every setting can be overridden from the environment.
set -euo pipefail
BIN=${BIN:?} DATA_DIR=${DATA_DIR:?}
CATALOG=${CATALOG-}
GATEWAY_ADDR=${GATEWAY_ADDR:-127.0.0.1:8080}
export PREPROCESS_ADDR=${PREPROCESS_ADDR:-127.0.0.1:8081}
export EMBED_ADDR=${EMBED_ADDR:-127.0.0.1:8082}
export SEARCH_ADDR=${SEARCH_ADDR:-127.0.0.1:8083}
export SEARCH_DATA_DIR=${SEARCH_DATA_DIR:-$DATA_DIR/search}
export PREPROCESS_URLS=${PREPROCESS_URLS:-http://$PREPROCESS_ADDR}
export EMBED_URLS=${EMBED_URLS:-http://$EMBED_ADDR}
export SEARCH_URLS=${SEARCH_URLS:-http://$SEARCH_ADDR}
export GATEWAY_ADDR
if [[ -n "$CATALOG" ]]; then export CATALOG_DIR=${CATALOG_DIR:-$(dirname "$CATALOG")}; fi
if [[ -z "${LOOKALIKE_ADMIN_KEY:-}" ]]; then
  LOOKALIKE_ADMIN_KEY=$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 32)
  generated_key=1
fi
export LOOKALIKE_ADMIN_KEY
mkdir -p "$DATA_DIR"

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping services..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped"
}
trap stop INT TERM EXIT

# pretty prints the services' JSON logs as "svc  level  msg key=value ...".
pretty() {
  local name=$1
  if command -v jq >/dev/null; then
    jq -R --unbuffered -r --arg n "$name" 'fromjson? // {msg: .} | "\($n|.[0:10])  \(.level // "" | .[0:5])  \(.msg) \(del(.time,.level,.msg,.service) | to_entries | map("\(.key)=\(.value|tostring)") | join(" "))"'
  else
    sed -u "s/^/$name  /"
  fi
}

start() {
  local name=$1; shift
  ("$BIN/$name" "$@" 2>&1 | pretty "$name") &
  pids+=($!)
}

wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then echo "$name ready at $url"; return 0; fi
    sleep 0.2
  done
  echo "$name did not become ready at $url" >&2; return 1
}

# Each service gets the CPU budget its manifest's limit gives it in Kubernetes,
# where Go sizes GOMAXPROCS from the container's CPU limit: 1 for the gateway
# and search (I/O-bound; fewer runtime threads waking on shared cores measured
# a few percent faster end to end), all cores for preprocess and embed.
# preprocess with one glibc malloc arena, as its image sets (MALLOC_ARENA_MAX=1:
# libjpeg's freed memory is reused, not faulted in again on every image).
# Every service with the Go runtime setting its image sets (shared/sysmon: system
# calls stop waking sysmon out of deep sleep ~1,000 times a second).
case ",${GODEBUG:-}," in
  *,schedtrace=*) ;;
  *) export GODEBUG="${GODEBUG:+$GODEBUG,}schedtrace=2147483647" ;;
esac
# preprocess with the memory limit its manifest gives it (1Gi): the Go heap's soft
# limit follows from it, less the decode memory (PREPROCESS_MEMORY_LIMIT; GOMEMLIMIT wins).
PREPROCESS_MEMORY_LIMIT=${PREPROCESS_MEMORY_LIMIT:-1073741824} MALLOC_ARENA_MAX=1 start preprocess
start embed
GOMAXPROCS=${SEARCH_GOMAXPROCS:-1} start search
GOMAXPROCS=${GATEWAY_GOMAXPROCS:-1} start gateway
wait_ready preprocess "http://$PREPROCESS_ADDR"
wait_ready embed "http://$EMBED_ADDR"
wait_ready search "http://$SEARCH_ADDR"
wait_ready gateway "http://$GATEWAY_ADDR"

if [[ -n "$CATALOG" ]]; then
  echo "indexing $CATALOG ..."
  "$BIN/indexer" run --catalog "$CATALOG" --state-dir "$DATA_DIR/jobs" \
    --preprocess-url "$PREPROCESS_URLS" --embed-url "$EMBED_URLS" --search-url "$SEARCH_URLS" 2>&1 | pretty indexer || echo "indexing failed (see above); the suite keeps running"
fi

echo
echo "Lookalike is up: http://$GATEWAY_ADDR/"
if [[ -n "${generated_key:-}" ]]; then echo "admin key (generated for this run): $LOOKALIKE_ADMIN_KEY"; fi
echo "try: curl -s -F image=@$(dirname "${CATALOG:-../shared/catalog/x}")/images/cv-apple-021.jpg 'http://$GATEWAY_ADDR/v1/search?top_k=3'"
echo "Ctrl-C stops everything."
wait
