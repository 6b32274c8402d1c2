# tools/bench/verify.sh (run via tools/bench/run verify [--quick])
# verify checksum pass rows/s per side vs SELECT count(*), sum(hashtextextended(t::text, 0)), same run
#
# Two nodes of the benchmark cluster get the same 2,000,000 rows (~130 bytes, primary key
# (user_id, id); --quick: 200,000). Baseline:
#   SELECT count(*), sum(hashtextextended(t::text, 0)) FROM bench_verify t
# on node 1 (psql \timing). Verify: `shardline verify --sequential --json` of the whole hash space
# from node 1 to node 2; a side's rate = source rows / that side's checksum-pass time. Both are
# interleaved over 5 rounds (--quick: 3).
# ratio = median over the rounds of (verify rows/s of the slower side / the round's baseline rows/s)
# (target >= 0.70). Also printed: the
# default mode (both sides at once, which on this 2-core machine share the CPUs) and one quarter
# of the hash space (a typical single move: the scan still reads the whole table).
bench_build shardline_cli
bench_cluster
(( SHARDLINE_NODE_COUNT >= 2 )) || bench_die "the benchmark cluster needs 2 nodes"
rows=2000000
(( QUICK )) && rows=200000
tmp="$(bench_tmpdir)"
cli="$BUILD_DIR/migrate/shardline"
n1="$SHARDLINE_NODE_1_DSN"
n2="$SHARDLINE_NODE_2_DSN"

fill="DROP TABLE IF EXISTS bench_verify;
CREATE TABLE bench_verify (user_id bigint NOT NULL, id bigint NOT NULL, created_at timestamptz,
  kind text, payload text, amount numeric, PRIMARY KEY (user_id, id));
INSERT INTO bench_verify SELECT g % 100000, g,
  timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second', 'workout',
  md5(g::text) || md5((g + 1)::text), g * 1.5 FROM generate_series(1, $rows) g;"
echo "verify: loading $rows rows on node 1 and node 2" >&2
psql "$n1" -X -q -v ON_ERROR_STOP=1 -c "$fill" -c "VACUUM ANALYZE bench_verify" >/dev/null &
p1=$!
psql "$n2" -X -q -v ON_ERROR_STOP=1 -c "$fill" -c "VACUUM ANALYZE bench_verify" >/dev/null &
p2=$!
wait "$p1" || bench_die "loading node 1 failed"
wait "$p2" || bench_die "loading node 2 failed"

"$cli" map init --node a="$n1" --node b="$n2" --ranges 4 --table bench_verify:user_id \
  -o "$tmp/map.toml" --force >/dev/null || bench_die "map init failed"

# The machine is shared and noisy: baseline and verify runs are interleaved (5 rounds; --quick 3)
# and the best of each is kept.
rounds=5
(( QUICK )) && rounds=3
full="-9223372036854775808:9223372036854775807"
# verify_rate RANGE FLAGS...: rows/s of the slower side of one verify run, from its JSON.
verify_rate() {
  local range="$1"
  shift
  "$cli" verify --map "$tmp/map.toml" --from a --to b --range "$range" --json "$@" \
    >"$tmp/v.json" || bench_die "verify failed or found differences: $(head -c 2000 "$tmp/v.json")"
  jq -er '.pairs[0].tables[0] | .source_rows / ([.source_seconds, .target_seconds] | max) | floor' \
    "$tmp/v.json" || bench_die "no pairs[0].tables[0] rates in verify's --json output"
}
base_sql="SELECT count(*), sum(hashtextextended(t::text, 0)) FROM bench_verify t"
base_rate=0; seq_rate=0; par_rate=0; quarter_rate=0
ratios=()
max() { if (( $2 > $1 )); then echo "$2"; else echo "$1"; fi; }
for (( round = 1; round <= rounds; round++ )); do
  ms="$(psql "$n1" -X -At -c '\timing on' -c "$base_sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')"
  [[ -n "$ms" ]] || bench_die "baseline query failed"
  b="$(awk -v r="$rows" -v ms="$ms" 'BEGIN{printf "%.0f", r / (ms / 1000)}')"
  v="$(verify_rate "$full" --sequential)"
  ratios+=("$(awk -v a="$v" -v b="$b" 'BEGIN{printf "%.3f", a / b}')")
  base_rate="$(max "$base_rate" "$b")"
  seq_rate="$(max "$seq_rate" "$v")"
  par_rate="$(max "$par_rate" "$(verify_rate "$full")")"
  quarter_rate="$(max "$quarter_rate" "$(verify_rate "0:4611686018427387903" --sequential)")"
  echo "verify: round $round: count+sum $b rows/s, verify $v rows/s per side, ratio ${ratios[-1]}" >&2
done
echo "verify: sequential sides ${seq_rate} rows/s per side; both at once ${par_rate} rows/s per side;" \
  "one quarter range ${quarter_rate} rows in range/s" >&2
psql "$n1" -X -q -c "DROP TABLE bench_verify" >/dev/null
psql "$n2" -X -q -c "DROP TABLE bench_verify" >/dev/null
# The ratio: the median of the rounds' paired ratios (each round's verify against the baseline
# run just before it, so load drifting between rounds cancels out).
ratio="$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)]}')"
echo "verify: ratio=$ratio (median of $rounds paired rounds; best: verify ${seq_rate} rows/s per side" \
  "vs count+sum ${base_rate} rows/s, $rows rows; both sides at once on 2 shared cores:" \
  "${par_rate} rows/s per side; quarter range: ${quarter_rate} rows/s)"
