# tools/bench/hang.sh (run via tools/bench/run hang [--quick] [hang_bench flags])
# healthy nodes' throughput while one node is black-holed, ratio to before the hang, same run
#
# Open-loop single-key SELECTs at 400 calls/s over the 3 nodes of the benchmark cluster; node 3
# is reached through a loopback TCP proxy that black-holes it for the second window (5 s each;
# --quick: 2 s). ratio = healthy nodes' ok calls per second during the hang / before (target
# >= 0.95). See tools/bench/hang_bench.cc. Needs the tests' harness (SHARDLINE_BUILD_TESTS).
bench_build hang_bench
bench_cluster
nodes=()
for (( i = 1; i <= SHARDLINE_NODE_COUNT; i++ )); do
  dsn_var="SHARDLINE_NODE_${i}_DSN"
  nodes+=(--node "${!dsn_var}")
done
quick=()
(( QUICK )) && quick=(--quick)
"$BUILD_DIR/tools/bench/hang_bench" "${nodes[@]}" --work-dir "$(bench_tmpdir)" \
  "${quick[@]+"${quick[@]}"}" "$@"
