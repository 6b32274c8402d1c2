# tools/bench/plan.sh (run via tools/bench/run plan [--quick] [Google Benchmark flags])
# rebalance planner, 65,536 ranges x 64 nodes, one node added: ms per plan vs building the map
#
# Wraps build/tools/bench/plan_bench (Google Benchmark, no server) and turns its summary into the
# ratio line: the time of one plan (BM_PlanAddOneNode) over the time of building the ShardMap it
# plans from (BM_ShardMapCreateBaseline), same run. --quick runs only those two.
bench_build plan_bench
args=()
if (( QUICK )); then
  args=(--benchmark_filter='BM_PlanAddOneNode$|BM_ShardMapCreateBaseline' --benchmark_min_time=0.2)
fi
out="$(bench_tmpdir)/plan.out"
"$BUILD_DIR/tools/bench/plan_bench" "${args[@]+"${args[@]}"}" "$@" | tee "$out"
# The summary plan_bench prints:
#   BM_PlanAddOneNode             23.90 ms/plan (target < 1000 ms)
#     / BM_ShardMapCreateBaseline  = 4.99  (4.79 ms)
awk '
  $1 == "BM_PlanAddOneNode" && $3 == "ms/plan" { ms = $2; inplan = 1; next }
  $1 ~ /^BM_/ { inplan = 0 }
  inplan && $2 == "BM_ShardMapCreateBaseline" { ratio = $4; base = $5 }
  END {
    if (ms == "" || ratio == "") { print "plan: no BM_PlanAddOneNode summary in the output" > "/dev/stderr"; exit 1 }
    gsub(/[()]/, "", base)
    printf "plan: ratio=%s (one plan %s ms: 65,536 ranges x 64 nodes, one node added; baseline: building the ShardMap, %s ms; target < 1000 ms per plan)\n", ratio, ms, base
  }' "$out"
