# tools/bench/lookup.sh (run via tools/bench/run lookup [--quick] [Google Benchmark flags])
# hash + range lookup + pool checkout/return, ns per op, vs hash + range lookup alone
#
# build/tools/bench/lookup_bench (Google Benchmark, no server): every lookup benchmark with its
# same-run baseline (std::upper_bound, the hash alone), allocation counts (must be 0), and last
# the routing cost of a query before any I/O (hash + range lookup + checkout and return on the
# owner's pool, fake connections) as a ratio of hash + range lookup. --quick runs only the two
# benchmarks of that last line, briefly.
bench_build lookup_bench
args=()
if (( QUICK )); then
  args=(--benchmark_filter='BM_Locate(AndCheckout)?Bigint/65536' --benchmark_min_time=0.2)
fi
"$BUILD_DIR/tools/bench/lookup_bench" "${args[@]+"${args[@]}"}" "$@"
