#!/usr/bin/env bash
# a phased rollout under load: 2 nodes gain a third, pilot wave first, no write lost
#
# Runs from tools/demo with the devcluster's environment (SHARDLINE_CATALOG, SHARDLINE_NODE_i_DSN)
# and `shardline` / `shardline-loadgen` on PATH. Self-contained: it works in databases of its own
# (shardline_rollout_demo on every instance, recreated on each run), so it does not disturb the
# other demo steps: a catalog and a map over node1 and node2, the fitness-app data loaded,
# shardline-loadgen writing and reading through the router with a ledger, a plan adding node3,
# `shardline rollout` in waves (1%, 10%, 50%, 100% of the moved bytes), verify, cleanup, the
# ledger checked, and a summary (ranges and rows moved, duration and write window per wave,
# errors, lost writes).
set -euo pipefail

readonly REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly WORK="$REPO/.devcluster/demo-rollout"
readonly DB=shardline_rollout_demo
mkdir -p "$WORK"
say() { printf '  %s\n' "$*"; }
run() { printf '  $'; printf ' %q' "$@"; printf '\n'; "$@" 2>&1 | sed 's/^/    /'; }
with_db() { printf '%s' "$1" | sed -E "s/dbname=[^ ]+/dbname=$2/"; }

(( SHARDLINE_NODE_COUNT >= 3 )) || { echo "rollout demo: needs 3 nodes" >&2; exit 1; }
N1="$(with_db "$SHARDLINE_NODE_1_DSN" "$DB")"
N2="$(with_db "$SHARDLINE_NODE_2_DSN" "$DB")"
N3="$(with_db "$SHARDLINE_NODE_3_DSN" "$DB")"
CATALOG="$(with_db "$SHARDLINE_CATALOG" "$DB")"
export SHARDLINE_CATALOG="$CATALOG"

# Fresh databases. A previous run's subscriptions hold slots on other instances: drop them first.
for admin in "$SHARDLINE_NODE_1_DSN" "$SHARDLINE_NODE_2_DSN" "$SHARDLINE_NODE_3_DSN"; do
  d="$(with_db "$admin" "$DB")"
  if psql -q -X -At "$d" -c 'SELECT 1' >/dev/null 2>&1; then
    psql -q -X -At "$d" -c "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())" |
      while read -r sub; do
        psql -q -X "$d" -c "ALTER SUBSCRIPTION \"$sub\" DISABLE" \
          -c "ALTER SUBSCRIPTION \"$sub\" SET (slot_name = NONE)" -c "DROP SUBSCRIPTION \"$sub\""
      done
  fi
done
for admin in "$SHARDLINE_NODE_1_DSN" "$SHARDLINE_NODE_2_DSN" "$SHARDLINE_NODE_3_DSN" \
             "$(with_db "$SHARDLINE_CATALOG" control)"; do
  psql -q -X "$admin" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$DB' AND NOT active" >/dev/null
  psql -q -X "$admin" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
done

run shardline catalog init
run shardline map init --node "node1=$N1" --node "node2=$N2" --ranges 64 \
  --table users:user_id --table workouts:user_id --table workout_logs:user_id \
  --table posts:user_id --force -o "$WORK/map.toml"
run shardline map publish "$WORK/map.toml" --comment "demo: two nodes"
run shardline-loadgen load --users 20000
run shardline rebalance plan --add-node "node3=$N3" --by size -o "$WORK/plan.toml"

say "load running in the background: shardline-loadgen run --rate 400 --duration 40s --ledger ..."
rm -f "$WORK/run.ledger"
shardline-loadgen run --users 20000 --rate 400 --workers 8 --duration 40s --warmup 2s \
  --checkout-timeout 10 --ledger "$WORK/run.ledger" --json >"$WORK/load.json" 2>"$WORK/load.err" &
load_pid=$!
sleep 3  # let the load reach its rate before the first wave (cosmetic: nothing depends on it)

start=$(date +%s.%N)
run shardline rollout start --plan "$WORK/plan.toml" --waves 1%,10%,50%,100% --auto
rollout_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
run shardline rollout status
say "waiting for the load to finish (pid $load_pid)..."
wait "$load_pid" || true

# Reverse replication may be delivering the last writes to the old owners: verify until clean.
for _ in $(seq 1 50); do
  shardline verify --plan "$WORK/plan.toml" >/dev/null 2>&1 && break
  sleep 0.2
done
run shardline verify --plan "$WORK/plan.toml"
run shardline rollout cleanup --migration 1
run shardline verify --orphans
run shardline-loadgen check-ledger --ledger "$WORK/run.ledger" --strict

say "summary:"
shardline rollout status --json >"$WORK/status.json"
python3 - "$WORK/status.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))[0]
ranges = sum(len(w["ranges"]) for w in m["waves"])
rows = sum(w["rows_verified"] for w in m["waves"])
print(f"    migration {m['id']}: {m['state']}; {ranges} ranges, {rows} rows moved in {len(m['waves'])} waves")
for w in m["waves"]:
    print(f"    wave {w['wave']}: {w['share_percent']:.1f}% of bytes, {len(w['ranges'])} ranges, "
          f"{w['rows_verified']} rows; started {w['started_at'][11:23]}, writes switched "
          f"{w['writes_at'][11:23]}; gate pause {w['gate_pause_ms']:.1f} ms, "
          f"write window {w['write_window_ms']:.1f} ms")
PY
python3 - "$WORK/load.json" "$rollout_s" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
a = r["all"]
print(f"    rollout took {sys.argv[2]} s; load: {a['count']} calls, {a['errors']} errors, "
      f"{r['router']['fence_retries']} fenced writes retried, map version {r['router']['map_version_start']} -> {r['router']['map_version_end']}")
PY
say "lost writes: see check-ledger above (missing 0 = none lost)"
