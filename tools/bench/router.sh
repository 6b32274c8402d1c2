# tools/bench/router.sh (run via tools/bench/run router [--quick] [router_bench flags])
# routed point reads through Router::Execute vs direct libpq PQexecPrepared, same run
#
# A primary-key SELECT on bench_users (100,000 rows sharded by user_id over the 3 nodes of the
# benchmark cluster), single client thread by default, 5 interleaved rounds of 2 s per side
# (--quick: 3 of 0.5 s); ratio = router / libpq throughput (target >= 0.95). Extra flags go to
# router_bench (e.g. --threads 4 --rounds 9); see tools/bench/router_bench.cc.
bench_build router_bench
bench_cluster
nodes=()
for (( i = 1; i <= SHARDLINE_NODE_COUNT; i++ )); do
  dsn_var="SHARDLINE_NODE_${i}_DSN"
  nodes+=(--node "${!dsn_var}")
done
quick=()
(( QUICK )) && quick=(--quick)
"$BUILD_DIR/tools/bench/router_bench" --mode router "${nodes[@]}" --work-dir "$(bench_tmpdir)" \
  "${quick[@]+"${quick[@]}"}" "$@"
