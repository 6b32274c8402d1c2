# tools/bench/lib.sh: helpers for the benchmarks that tools/bench/run runs (tools/bench/NAME.sh).
# Sourced by run; see the contract at the top of run. Needs REPO, BUILD_DIR, BENCH_PORT,
# BENCH_CLUSTER_DIR and BENCH_STATE (exported by run).

# bench_die MESSAGE: prints "NAME: error: MESSAGE" to stderr and fails the benchmark.
bench_die() {
  echo "bench: error: $*" >&2
  exit 1
}

# bench_build TARGET...: configures BUILD_DIR if needed (Ninja, RelWithDebInfo, benchmarks on)
# and builds the targets with -j2; quiet unless it fails (then the first error and what follows).
bench_build() {
  local log="$BENCH_STATE/build.log"
  # A build dir that tools/setup --demo configured has the benchmarks off: turn them on.
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]] ||
     grep -q '^SHARDLINE_BUILD_BENCHMARKS:BOOL=OFF$' "$BUILD_DIR/CMakeCache.txt"; then
    cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSHARDLINE_BUILD_BENCHMARKS=ON >"$log" 2>&1 ||
      { tail -n 60 "$log" >&2
        bench_die "cmake configure of $BUILD_DIR failed (tools/setup installs the packages the benchmarks need)"; }
  fi
  if ! cmake --build "$BUILD_DIR" -j2 --target "$@" >"$log" 2>&1; then
    if grep -q '^FAILED: ' "$log"; then sed -n '/^FAILED: /,$p' "$log" | head -n 80 >&2; else tail -n 60 "$log" >&2; fi
    bench_die "build of $* in $BUILD_DIR failed"
  fi
}

# bench_cluster: makes sure the benchmark devcluster (3 nodes, BENCH_CLUSTER_DIR, base port
# BENCH_PORT) runs, starting it if needed (run stops it at the end only in that case), and
# exports its connection strings (SHARDLINE_NODE_COUNT, SHARDLINE_NODE_i_DSN, ...).
bench_cluster() {
  local dc="$REPO/tools/devcluster"
  if ! "$dc" status --dir "$BENCH_CLUSTER_DIR" >/dev/null 2>&1; then
    touch "$BENCH_STATE/started-cluster"
    "$dc" start --nodes 3 --dir "$BENCH_CLUSTER_DIR" --base-port "$BENCH_PORT" >/dev/null ||
      bench_die "tools/devcluster start --dir $BENCH_CLUSTER_DIR failed"
  fi
  eval "$("$dc" env --dir "$BENCH_CLUSTER_DIR")" || bench_die "no cluster env in $BENCH_CLUSTER_DIR"
}

# bench_tmpdir: prints a fresh directory, removed when run exits.
bench_tmpdir() {
  mktemp -d "$BENCH_STATE/tmp.XXXXXX"
}
