#!/bin/sh
# Snapshot every collection on every Qdrant peer (in cluster mode each peer snapshots its own shards).
# Snapshots land on each peer's qdrant-snapshots volume; ship them off-cluster from there (or set
# QDRANT__STORAGE__SNAPSHOTS_CONFIG__SNAPSHOTS_STORAGE=s3 in qdrant-config).
set -eu
: "${QDRANT_REPLICAS:?}" "${QDRANT_HEADLESS:?}"
key_header="api-key: ${QDRANT_API_KEY:-}"
i=0
failed=0
while [ "$i" -lt "$QDRANT_REPLICAS" ]; do
  peer="http://qdrant-$i.$QDRANT_HEADLESS:6333"
  collections=$(curl -fsS -H "$key_header" "$peer/collections" | grep -o '"name":"[^"]*"' | cut -d'"' -f4)
  for c in $collections; do
    if curl -fsS -X POST -H "$key_header" "$peer/collections/$c/snapshots?wait=true" >/dev/null; then
      echo "snapshot ok peer=qdrant-$i collection=$c"
    else
      echo "snapshot FAILED peer=qdrant-$i collection=$c" >&2
      failed=$((failed + 1))
    fi
  done
  i=$((i + 1))
done
[ "$failed" -eq 0 ]
