#!/bin/sh
# Snapshot every collection on every Qdrant peer (in cluster mode each peer snapshots its own shards),
# then keep only the newest QDRANT_SNAPSHOT_KEEP snapshots per collection on each peer: Qdrant never
# prunes them, and each one is a full copy of the peer's shards. When S3_BUCKET is set (the
# components/qdrant-snapshot-s3 component), each new snapshot is also copied to that S3-compatible
# bucket under $S3_PREFIX/<peer>/<collection>/<snapshot> before anything is pruned.
#
# QDRANT_PEERS (space-separated base URLs) overrides the peers derived from QDRANT_REPLICAS and
# QDRANT_HEADLESS (tests use it).
set -eu
keep="${QDRANT_SNAPSHOT_KEEP:-7}"
case "$keep" in
  '' | *[!0-9]* | 0)
    echo "QDRANT_SNAPSHOT_KEEP=$keep: want a whole number of at least 1" >&2
    exit 2
    ;;
esac
if [ -z "${QDRANT_PEERS:-}" ]; then
  : "${QDRANT_REPLICAS:?}" "${QDRANT_HEADLESS:?}"
  QDRANT_PEERS=""
  i=0
  while [ "$i" -lt "$QDRANT_REPLICAS" ]; do
    QDRANT_PEERS="$QDRANT_PEERS http://qdrant-$i.$QDRANT_HEADLESS:6333"
    i=$((i + 1))
  done
fi
if [ -n "${S3_BUCKET:-}" ]; then
  : "${S3_ENDPOINT:?}" "${S3_ACCESS_KEY_ID:?}" "${S3_SECRET_ACCESS_KEY:?}"
fi
key_header="api-key: ${QDRANT_API_KEY:-}"
tmp="${SNAPSHOT_TMP:-/tmp}"
failed=0

names() { grep -o '"name":"[^"]*"' | cut -d'"' -f4; }

# copy_to_s3 PEER_URL PEER_NAME COLLECTION SNAPSHOT: Qdrant serves the file; S3 needs its length, so it
# goes through a scratch file (emptyDir) rather than a chunked upload.
copy_to_s3() {
  file="$tmp/$4"
  if ! curl -fsS -H "$key_header" -o "$file" "$1/collections/$3/snapshots/$4"; then
    rm -f "$file"
    return 1
  fi
  rc=0
  curl -fsS --aws-sigv4 "aws:amz:${S3_REGION:-us-east-1}:s3" --user "$S3_ACCESS_KEY_ID:$S3_SECRET_ACCESS_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$file" \
    "${S3_ENDPOINT%/}/$S3_BUCKET/${S3_PREFIX:-qdrant}/$2/$3/$4" >/dev/null || rc=1
  rm -f "$file"
  return $rc
}

# prune PEER_URL PEER_NAME COLLECTION: snapshot names end in their creation time, so within one
# collection of one peer they sort oldest first.
prune() {
  body=$(curl -fsS -H "$key_header" "$1/collections/$3/snapshots") || return 1
  list=$(printf '%s' "$body" | names | sort)
  total=$(printf '%s\n' "$list" | grep -c . || true)
  extra=$((total - keep))
  [ "$extra" -gt 0 ] || return 0
  for old in $(printf '%s\n' "$list" | head -n "$extra"); do
    curl -fsS -X DELETE -H "$key_header" "$1/collections/$3/snapshots/$old?wait=true" >/dev/null || return 1
    echo "snapshot pruned peer=$2 collection=$3 name=$old"
  done
}

n=0
for peer in $QDRANT_PEERS; do
  peer_name="qdrant-$n"
  n=$((n + 1))
  if ! body=$(curl -fsS -H "$key_header" "$peer/collections"); then
    echo "listing collections FAILED peer=$peer_name" >&2
    failed=$((failed + 1))
    continue
  fi
  collections=$(printf '%s' "$body" | names)
  for c in $collections; do
    snap=""
    if body=$(curl -fsS -X POST -H "$key_header" "$peer/collections/$c/snapshots?wait=true"); then
      snap=$(printf '%s' "$body" | names)
    fi
    if [ -z "$snap" ]; then
      echo "snapshot FAILED peer=$peer_name collection=$c" >&2
      failed=$((failed + 1))
      continue
    fi
    echo "snapshot ok peer=$peer_name collection=$c name=$snap"
    if [ -n "${S3_BUCKET:-}" ]; then
      if ! copy_to_s3 "$peer" "$peer_name" "$c" "$snap"; then
        # keep every local snapshot when the off-site copy failed
        echo "copy to s3 FAILED peer=$peer_name collection=$c name=$snap" >&2
        failed=$((failed + 1))
        continue
      fi
      echo "copied to s3 peer=$peer_name collection=$c name=$snap"
    fi
    if ! prune "$peer" "$peer_name" "$c"; then
      echo "pruning FAILED peer=$peer_name collection=$c" >&2
      failed=$((failed + 1))
    fi
  done
done
[ "$failed" -eq 0 ]
