# tools/bench/backfill.sh (run via tools/bench/run backfill [--quick] [--no-rss])
# backfill rows/s vs a raw psql COPY TO STDOUT | COPY FROM STDIN binary pipe, same nodes, same run
#
# Node 1 of the benchmark cluster gets 2,000,000 rows (~130 bytes, primary key (user_id, id);
# --quick: 200,000). For one quarter of the hash space and for all of it, best of 2 runs each,
# into a freshly created (empty, indexed) table on node 2:
#   raw:      psql n1 -c "COPY (SELECT * FROM t WHERE hashint8extended(user_id, 0) BETWEEN ..)
#             TO STDOUT (FORMAT binary)" | psql n2 -c "COPY t FROM STDIN (FORMAT binary)"
#   backfill: shardline backfill --map M --from a --to b --range LO:HI --json (default batch,
#             checkpoints on the target)
# ratio = backfill rows/s / raw rows/s for the quarter (a typical move; target >= 0.70); the
# whole-range ratio is printed too. Then (unless --quick or --no-rss) the peak RSS of backfill
# (getrusage, from its --json summary) copying 100,000, 1,000,000 and 5,000,000 rows: flat.
bench_build shardline_cli
bench_cluster
(( SHARDLINE_NODE_COUNT >= 2 )) || bench_die "the benchmark cluster needs 2 nodes"
rows=2000000
(( QUICK )) && rows=200000
rss=1
(( QUICK )) && rss=0
for a in "$@"; do [[ "$a" == --no-rss ]] && rss=0; done
tmp="$(bench_tmpdir)"
cli="$BUILD_DIR/migrate/shardline"
n1="$SHARDLINE_NODE_1_DSN"
n2="$SHARDLINE_NODE_2_DSN"
export PGOPTIONS="-c client_min_messages=warning"
readonly QUARTER_LO=-9223372036854775808 QUARTER_HI=-4611686018427387905
readonly ALL_LO=-9223372036854775808 ALL_HI=9223372036854775807

ddl() {  # ddl TABLE: the benchmark table's definition
  echo "CREATE TABLE $1 (user_id bigint NOT NULL, id bigint NOT NULL, created_at timestamptz,
    kind text, payload text, amount numeric, PRIMARY KEY (user_id, id));"
}
fill() {  # fill TABLE ROWS: (re)creates and fills it on node 1
  psql "$n1" -X -q -v ON_ERROR_STOP=1 -c "DROP TABLE IF EXISTS $1" -c "$(ddl "$1")" -c "
    INSERT INTO $1 SELECT g % 100000, g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 s',
      'workout', md5(g::text) || md5((g + 1)::text), g * 1.5 FROM generate_series(1, $2) g" \
    -c "VACUUM ANALYZE $1" >/dev/null || bench_die "loading $1 on node 1 failed"
}
fresh_target() {  # fresh_target TABLE: an empty table (and no checkpoints) on node 2
  psql "$n2" -X -q -v ON_ERROR_STOP=1 -c "DROP TABLE IF EXISTS $1" -c "$(ddl "$1")" \
    -c "DROP TABLE IF EXISTS shardline.backfill_state" >/dev/null ||
    bench_die "recreating $1 on node 2 failed"
  psql "$n2" -X -q -c "CHECKPOINT" >/dev/null
}
now() { date +%s.%N; }

echo "backfill: loading $rows rows on node 1" >&2
fill bench_backfill "$rows"
"$cli" map init --node a="$n1" --node b="$n2" --ranges 4 --table bench_backfill:user_id \
  --table bench_backfill_rss:user_id -o "$tmp/map.toml" --force >/dev/null ||
  bench_die "map init failed"

# raw_rate LO HI: rows/s of the raw pipe (best of 2).
raw_rate() {
  local best=0 t0 t1 n r
  for _ in 1 2; do
    fresh_target bench_backfill
    t0="$(now)"
    psql "$n1" -X -q -v ON_ERROR_STOP=1 -c "COPY (SELECT * FROM bench_backfill WHERE
        hashint8extended(user_id, 0) BETWEEN $1 AND $2) TO STDOUT (FORMAT binary)" |
      psql "$n2" -X -q -v ON_ERROR_STOP=1 -c "COPY bench_backfill FROM STDIN (FORMAT binary)" \
        >/dev/null || bench_die "raw pipe failed"
    t1="$(now)"
    n="$(psql "$n2" -X -At -c "SELECT count(*) FROM bench_backfill")"
    r="$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n / (b - a)}')"
    (( r > best )) && best=$r
  done
  echo "$best $n"
}
# backfill_rate LO HI: rows/s of shardline backfill (best of 2), wall clock of the process.
backfill_rate() {
  local best=0 t0 t1 n r
  for _ in 1 2; do
    fresh_target bench_backfill
    t0="$(now)"
    "$cli" backfill --map "$tmp/map.toml" --from a --to b --range "$1:$2" \
      --table bench_backfill --json >"$tmp/b.json" || bench_die "backfill failed"
    t1="$(now)"
    n="$(jq -er '.rows_copied' "$tmp/b.json")" || bench_die "no rows_copied in backfill's --json output"
    r="$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n / (b - a)}')"
    (( r > best )) && best=$r
  done
  echo "$best $n"
}

read -r raw_q nq < <(raw_rate "$QUARTER_LO" "$QUARTER_HI")
read -r bf_q nbq < <(backfill_rate "$QUARTER_LO" "$QUARTER_HI")
[[ "$nq" == "$nbq" ]] || bench_die "quarter: raw pipe copied $nq rows, backfill $nbq"
echo "backfill: quarter ($nq rows): raw pipe $raw_q rows/s, backfill $bf_q rows/s" >&2
read -r raw_a na < <(raw_rate "$ALL_LO" "$ALL_HI")
read -r bf_a nba < <(backfill_rate "$ALL_LO" "$ALL_HI")
[[ "$na" == "$nba" ]] || bench_die "all: raw pipe copied $na rows, backfill $nba"
echo "backfill: all ($na rows): raw pipe $raw_a rows/s, backfill $bf_a rows/s" >&2
ratio_q="$(awk -v a="$bf_q" -v b="$raw_q" 'BEGIN{printf "%.2f", a / b}')"
ratio_a="$(awk -v a="$bf_a" -v b="$raw_a" 'BEGIN{printf "%.2f", a / b}')"

rss_note=""
if (( rss )); then
  for n in 100000 1000000 5000000; do
    echo "backfill: peak RSS at $n rows (loading)" >&2
    fill bench_backfill_rss "$n"
    fresh_target bench_backfill_rss
    "$cli" backfill --map "$tmp/map.toml" --from a --to b --range "$ALL_LO:$ALL_HI" \
      --table bench_backfill_rss --json >"$tmp/r.json" || bench_die "backfill of $n rows failed"
    kb="$(jq -er '.peak_rss_kb' "$tmp/r.json")" || bench_die "no peak_rss_kb in backfill's --json output"
    echo "backfill: $n rows: peak RSS $kb kB" >&2
    rss_note+=", peak RSS ${n} rows ${kb} kB"
  done
  psql "$n1" -X -q -c "DROP TABLE IF EXISTS bench_backfill_rss" >/dev/null
  psql "$n2" -X -q -c "DROP TABLE IF EXISTS bench_backfill_rss" >/dev/null
fi

echo "backfill: ratio=$ratio_q (quarter $nq rows: backfill $bf_q rows/s vs raw pipe $raw_q rows/s; all $na rows: $bf_a vs $raw_a rows/s = $ratio_a$rss_note)"
