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
# A step below that fails ends the script: the load must not outlive it (stopped by its PID).
trap 'kill "$load_pid" 2>/dev/null || true' EXIT
sleep 3  # let the load reach its rate before the first wave (cosmetic: nothing depends on it)

start=$(date +%s.%N)
run shardline rollout start --plan "$WORK/plan.toml" --waves 1%,10%,50%,100% --auto
rollout_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
run shardline rollout status
say "waiting for the load to finish (pid $load_pid)..."
load_rc=0
wait "$load_pid" || load_rc=$?
trap - EXIT

# Reverse replication may be delivering the last writes to the old owners: verify until clean.
for _ in $(seq 1 50); do
  shardline verify --plan "$WORK/plan.toml" >/dev/null 2>&1 && break
  sleep 0.2
done
run shardline verify --plan "$WORK/plan.toml"
run shardline rollout cleanup --migration 1
run shardline verify --orphans
ledger_rc=0
run shardline-loadgen check-ledger --ledger "$WORK/run.ledger" --strict || ledger_rc=$?
shardline-loadgen check-ledger --ledger "$WORK/run.ledger" --strict --json >"$WORK/ledger.json" \
  2>/dev/null || true

# The summary, from the tools' own --json output (jq), and what must hold for the demo to pass.
say "summary:"
problems=()
shardline rollout status --json >"$WORK/status.json"
# Fields joined by '|' (not tabs: read would merge empty tab-separated fields).
jq -r '.[0] | [.id, .state, ([.waves[].ranges | length] | add), ([.waves[].rows_verified] | add),
    (.waves | length)] | map(tostring) | join("|")' "$WORK/status.json" |
  { IFS='|' read -r id state ranges rows waves &&
    printf '    migration %s: %s; %s ranges, %s rows moved in %s waves\n' "$id" "$state" "$ranges" "$rows" "$waves"; } ||
  problems+=("could not read the migration from $WORK/status.json")
jq -r '.[0].waves[] | [.wave, .share_percent, (.ranges | length), .rows_verified,
    .started_at[11:23], .writes_at[11:23], .gate_pause_ms, .write_window_ms] | map(tostring) | join("|")' \
  "$WORK/status.json" |
  while IFS='|' read -r wave share nranges rows started writes pause window; do
    printf '    wave %s: %.1f%% of bytes, %s ranges, %s rows; started %s, writes switched %s; gate pause %.1f ms, write window %.1f ms\n' \
      "$wave" "$share" "$nranges" "$rows" "$started" "$writes" "$pause" "$window"
  done || problems+=("could not read the waves from $WORK/status.json")
state="$(jq -r '.[0].state' "$WORK/status.json")"
[[ "$state" == cleaned ]] || problems+=("migration state is '$state', not 'cleaned'")
unmeasured="$(jq '[.[0].waves[] | select(.write_window_ms < 0 or .rows_verified < 0)] | length' "$WORK/status.json")"
[[ "$unmeasured" == 0 ]] || problems+=("$unmeasured wave(s) without a measured write window or verify")

if (( load_rc != 0 )) || ! jq -e '.all.count' "$WORK/load.json" >/dev/null 2>&1; then
  problems+=("shardline-loadgen run failed (exit $load_rc): $(tail -n 5 "$WORK/load.err" 2>/dev/null)")
else
  jq -r --arg s "$rollout_s" '"    rollout took \($s) s; load: \(.all.count) calls, \(.all.errors) errors, " +
      "\(.router.fence_retries) fenced writes retried, map version \(.router.map_version_start) -> \(.router.map_version_end)"' \
    "$WORK/load.json"
  errors="$(jq '.all.errors' "$WORK/load.json")"
  [[ "$errors" == 0 ]] || problems+=("the load saw $errors error(s) (details: $WORK/load.json)")
fi

lost="$(jq -r '.missing + .wrong_content + .elsewhere' "$WORK/ledger.json" 2>/dev/null || echo '?')"
say "lost writes: $lost (check-ledger --strict: missing + wrong content + elsewhere)"
(( ledger_rc == 0 )) && [[ "$lost" == 0 ]] || problems+=("check-ledger: lost writes $lost (exit $ledger_rc)")

if (( ${#problems[@]} > 0 )); then
  for p in "${problems[@]}"; do echo "rollout demo: FAILED: $p" >&2; done
  exit 1
fi
say "all checks passed"
