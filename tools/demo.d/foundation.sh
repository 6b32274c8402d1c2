#!/usr/bin/env bash
# the shard map: catalog, a map over the nodes, published; users located and found on their nodes
#
# Runs from tools/demo with the devcluster's environment (SHARDLINE_CATALOG, SHARDLINE_NODE_i_DSN)
# and the `shardline` CLI on PATH. Idempotent: a rerun publishes the same map only when the
# catalog does not hold one yet, and reloads the same demo users.
set -euo pipefail

readonly REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly WORK="$REPO/.devcluster/demo"
mkdir -p "$WORK"
say() { printf '  %s\n' "$*"; }
run() { printf '  $'; printf ' %q' "$@"; printf '\n'; "$@" 2>&1 | sed 's/^/    /'; }

run shardline catalog init --catalog "$SHARDLINE_CATALOG"

# A map over every node: 64 equal hash ranges in contiguous blocks per node.
node_args=()
for ((i = 1; i <= SHARDLINE_NODE_COUNT; i++)); do
  v="SHARDLINE_NODE_${i}_DSN"
  node_args+=(--node "node$i=${!v}")
done
run shardline map init "${node_args[@]}" --ranges 64 --key-type bigint \
  --table users:user_id --force -o "$WORK/map.toml"
run shardline map validate "$WORK/map.toml"

if shardline map show --catalog "$SHARDLINE_CATALOG" >/dev/null 2>&1; then
  say "(the catalog already holds a map; not publishing again)"
else
  run shardline map publish --catalog "$SHARDLINE_CATALOG" "$WORK/map.toml" \
    --comment "demo: first map"
fi
run shardline map history --catalog "$SHARDLINE_CATALOG"

# A users table on every node; each user is inserted on the node the map names for its key.
for ((i = 1; i <= SHARDLINE_NODE_COUNT; i++)); do
  v="SHARDLINE_NODE_${i}_DSN"
  psql -q -X -v ON_ERROR_STOP=1 "${!v}" -c \
    "CREATE TABLE IF NOT EXISTS users (user_id bigint PRIMARY KEY, name text NOT NULL)"
done

users=(1 2 3 42 1000 4294967296 -7 123456789)
say "locating ${#users[@]} users:"
run shardline map locate --catalog "$SHARDLINE_CATALOG" -- "${users[@]}"

shardline map locate --catalog "$SHARDLINE_CATALOG" --json -- "${users[@]}" |
  jq -r '.[] | "\(.key) \(.node)"' |
  while read -r key node; do
    v="SHARDLINE_NODE_${node#node}_DSN"
    # The key travels as a psql variable quoted as a literal (:'k'), never spliced by us.
    psql -q -X -v ON_ERROR_STOP=1 -v k="$key" -v n="user $key" "${!v}" <<'SQL'
INSERT INTO users (user_id, name) VALUES (:'k', :'n')
  ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name;
SQL
  done

say "which node holds which users (SELECT on every node):"
for ((i = 1; i <= SHARDLINE_NODE_COUNT; i++)); do
  v="SHARDLINE_NODE_${i}_DSN"
  held="$(psql -q -X -At "${!v}" -c "SELECT string_agg(user_id::text, ' ' ORDER BY user_id) FROM users")"
  say "node$i: ${held:-(none)}"
done
