# tools/bench/fence.sh (run via tools/bench/run fence [--quick])
# a write's cost with the fence trigger vs without it, same run (per-table trigger; the old generic one for comparison)
#
# One node of the benchmark cluster, a table bench_fence (user_id bigint PRIMARY KEY, v bigint).
# Each mode inserts the same N rows in one INSERT ... SELECT (so every row fires the trigger;
# N = 200,000, --quick 50,000), timed by psql, rounds interleaved (5, --quick 3), best of each:
#   none      no trigger (the baseline)
#   idle      the fence triggers (per row, and per statement: map version, old snapshots,
#             TRUNCATE), no mark on the table (a node no migration has touched)
#   marked    the fence trigger with a 'fence' mark on another range of the table (every node a
#             move has left: marks outlive moves now), so each row is checked against the marks
#   rowonly   marked without the statement trigger (map version, old snapshots, TRUNCATE: once
#             per statement), to show that trigger's own cost
#   generic   the trigger of the first version (one function for every table, the key read
#             through to_jsonb(NEW)), with the same mark, defined here for comparison
# Then a write as an application sends it: single-row upserts of random keys over a local
# socket (pgbench, 1 client, 3 s per mode, --quick 1 s; 3 interleaved rounds, best of each),
# where the round trip dilutes the trigger's cost (and the machine's noise shows more).
# ratio = rows/s of the bulk insert with the per-table trigger and a mark / without a trigger
# (1.0 = free): the trigger's cost per row against the cheapest write there is.
bench_cluster
rows=200000
(( QUICK )) && rows=50000
rounds=5
(( QUICK )) && rounds=3
n1="$SHARDLINE_NODE_1_DSN"
tmp="$(bench_tmpdir)"
psql1() { PGOPTIONS='-c client_min_messages=warning' psql "$n1" -X -q -v ON_ERROR_STOP=1 "$@"; }

# A run that failed half-way may have left marks: the node refuses to drop a marked table.
psql1 -c "DO \$\$ BEGIN IF to_regclass('shardline.fenced_ranges') IS NOT NULL THEN
            DELETE FROM shardline.fenced_ranges WHERE table_name = 'bench_fence'; END IF; END \$\$" \
  -c "DROP TABLE IF EXISTS bench_fence; CREATE TABLE bench_fence (user_id bigint PRIMARY KEY, v bigint)" \
  >/dev/null || bench_die "creating bench_fence failed"
psql1 -c "SET client_min_messages = warning" -f "$REPO/schemas/node.sql" >/dev/null ||
  bench_die "installing schemas/node.sql failed"
# The first version's generic trigger function, under another name, for the comparison.
psql1 >/dev/null <<'SQL' || bench_die "defining the generic trigger failed"
CREATE OR REPLACE FUNCTION shardline.bench_generic_fence() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
  key_col text := TG_ARGV[0];
  qualified text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
  k text;
  h bigint;
  f record;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM shardline.fenced_ranges WHERE table_name IN (qualified, TG_TABLE_NAME)) THEN
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
  END IF;
  k := to_jsonb(NEW) ->> key_col;
  h := hashint8extended(k::bigint, 0);
  SELECT fr.lo, fr.hi, fr.mode INTO f FROM shardline.fenced_ranges fr
    WHERE fr.table_name IN (qualified, TG_TABLE_NAME) AND h BETWEEN fr.lo AND fr.hi LIMIT 1;
  IF FOUND AND f.mode = 'fence' THEN
    RAISE EXCEPTION USING ERRCODE = 'SLF01', MESSAGE = 'fenced';
  END IF;
  RETURN NEW;
END
$fn$;
SQL

# A mark on a range no benchmark row hashes into: the lowest 1/2^32 of the hash space.
mark="INSERT INTO shardline.fenced_ranges (table_name, lo, hi, mode, lock_key, reason)
  SELECT 'bench_fence', -9223372036854775808, -9223372032559808513, 'fence', 1, 'bench'
  WHERE NOT EXISTS (SELECT 1 FROM generate_series(1, $rows) g
                    WHERE hashint8extended(g, 0) <= -9223372032559808513)"
unmark="DELETE FROM shardline.fenced_ranges WHERE table_name = 'bench_fence'"
drop_trigger="DROP TRIGGER IF EXISTS shardline_fence ON bench_fence; DROP TRIGGER IF EXISTS shardline_fence_stmt ON bench_fence"

# setup MODE: the trigger and marks of MODE.
setup() {
  psql1 -c "$unmark" -c "$drop_trigger" >/dev/null
  case "$1" in
    none) ;;
    idle) psql1 -c "SELECT shardline.install_fence('bench_fence', 'user_id', 'bigint')" >/dev/null ;;
    marked) psql1 -c "SELECT shardline.install_fence('bench_fence', 'user_id', 'bigint')" -c "$mark" >/dev/null ;;
    rowonly) psql1 -c "SELECT shardline.install_fence('bench_fence', 'user_id', 'bigint')" \
               -c "DROP TRIGGER shardline_fence_stmt ON bench_fence" -c "$mark" >/dev/null ;;
    generic) psql1 -c "CREATE TRIGGER shardline_fence BEFORE INSERT OR UPDATE OR DELETE ON bench_fence FOR EACH ROW EXECUTE FUNCTION shardline.bench_generic_fence('user_id')" -c "$mark" >/dev/null ;;
  esac || bench_die "setting up mode $1 failed"
}
# insert_ms: the time of one INSERT of all rows into an empty table.
insert_ms() {
  # Triggers off for the reset: the statement trigger refuses TRUNCATE of a marked table.
  psql1 -c "SET session_replication_role = replica" -c "TRUNCATE bench_fence" >/dev/null
  psql "$n1" -X -At -c '\timing on' \
    -c "INSERT INTO bench_fence SELECT g, g FROM generate_series(1, $rows) g" |
    sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
declare -A best=()
modes=(none idle marked rowonly generic)
for ((r = 1; r <= rounds; ++r)); do
  for m in "${modes[@]}"; do
    setup "$m"
    ms="$(insert_ms)"
    [[ -n "$ms" ]] || bench_die "mode $m: no timing"
    if [[ -z "${best[$m]:-}" ]] || awk -v a="$ms" -v b="${best[$m]}" 'BEGIN { exit !(a < b) }'; then
      best[$m]="$ms"
    fi
  done
done
pgbench=/usr/lib/postgresql/15/bin/pgbench
[[ -x "$pgbench" ]] || bench_die "$pgbench not found (Debian package postgresql-15)"
secs=3
(( QUICK )) && secs=1
cat >"$tmp/upsert.sql" <<'SQL'
\set k random(1, 1000000000)
INSERT INTO bench_fence (user_id, v) VALUES (:k, 1) ON CONFLICT (user_id) DO UPDATE SET v = EXCLUDED.v;
SQL
declare -A tps=()
for ((r = 1; r <= 3; ++r)); do
  for m in "${modes[@]}"; do
    setup "$m"
    t="$("$pgbench" -n -c 1 -j 1 -T "$secs" -f "$tmp/upsert.sql" "$n1" 2>/dev/null |
         sed -n 's/^tps = \([0-9.]*\).*/\1/p')"
    [[ -n "$t" ]] || bench_die "mode $m: pgbench gave no tps"
    if [[ -z "${tps[$m]:-}" ]] || awk -v a="$t" -v b="${tps[$m]}" 'BEGIN { exit !(a > b) }'; then
      tps[$m]="$t"
    fi
  done
done
psql1 -c "$unmark" -c "$drop_trigger" -c "DROP TABLE bench_fence" \
  -c "DROP FUNCTION shardline.bench_generic_fence()" >/dev/null
for m in "${modes[@]}"; do
  awk -v m="$m" -v ms="${best[$m]}" -v n="$rows" -v base="${best[none]}" \
    'BEGIN { printf "fence: %-8s %8.1f ms for %d rows, %6.2f us/row, %.3fx the rows/s without a trigger\n", m, ms, n, 1000 * ms / n, base / ms }'
done
for m in "${modes[@]}"; do
  awk -v m="$m" -v t="${tps[$m]}" -v base="${tps[none]}" \
    'BEGIN { printf "fence: %-8s %8.0f single-row upserts/s, %.3fx the rate without a trigger\n", m, t, t / base }'
done
awk -v base="${tps[none]}" -v m="${tps[marked]}" -v g="${tps[generic]}" -v ro="${tps[rowonly]}" \
    -v bb="${best[none]}" -v bm="${best[marked]}" -v bg="${best[generic]}" -v bi="${best[idle]}" \
  'BEGIN { printf "fence: ratio=%.3f (rows/s of a bulk insert with the per-table trigger and a mark / without a trigger; idle %.3f; the generic to_jsonb trigger %.3f; single-row upserts/s: %.3f per-table, %.3f without the statement trigger, %.3f generic)\n", bb / bm, bb / bi, bb / bg, m / base, ro / base, g / base }'
