# tools/bench/proxy.sh (run via tools/bench/run proxy [--quick] [router_bench flags])
# the router benchmark's point reads through pgbouncer (transaction pooling) vs the library
#
# Starts a private pgbouncer (Debian package; config, log and pid file in a temp dir; listening on
# 127.0.0.1:BENCH_PORT+9; one database per node, pool_mode = transaction), runs router_bench
# --mode proxy (the same reads, the same keys, interleaved with the library's), and stops
# pgbouncer by its PID. ratio = pgbouncer / library throughput (lower = the hop costs more).
# Side by side in the same last line: the router itself through the same pgbouncer with the
# map's pooler = "transaction", relative to bare PQexecParams through pgbouncer.
bench_build router_bench
bench_cluster
command -v pgbouncer >/dev/null || bench_die "pgbouncer not found (Debian package pgbouncer; tools/setup installs it)"

dir="$(bench_tmpdir)"
chmod 755 "$BENCH_STATE" "$dir"  # readable by pgbouncer's user (below)
port=$(( BENCH_PORT + 9 ))
threads=1
args=("$@")
for (( i = 0; i < ${#args[@]}; i++ )); do
  [[ "${args[$i]}" == --threads ]] && threads="${args[$((i + 1))]:-1}"
done
{
  echo "[databases]"
  for (( i = 1; i <= SHARDLINE_NODE_COUNT; i++ )); do
    dsn_var="SHARDLINE_NODE_${i}_DSN"
    echo "n$i = ${!dsn_var}"
  done
  cat <<CONF
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = $threads
max_client_conn = 100
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
CONF
} >"$dir/pgbouncer.ini"
echo '"app" ""' >"$dir/users.txt"

# pgbouncer refuses to run as root: as root, run it as the devcluster's server user.
runas=()
if (( EUID == 0 )); then
  chown -R shardline "$dir"
  runas=(runuser -u shardline --)
fi
"${runas[@]+"${runas[@]}"}" pgbouncer -d -q "$dir/pgbouncer.ini" ||
  { cat "$dir/pgbouncer.log" >&2 2>/dev/null || true; bench_die "pgbouncer did not start"; }
for _ in $(seq 100); do [[ -s "$dir/pgbouncer.pid" ]] && break; sleep 0.05; done
pid="$(cat "$dir/pgbouncer.pid" 2>/dev/null)" || bench_die "pgbouncer wrote no pid file ($dir)"
stop_pgbouncer() {
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  echo "bench: pgbouncer (pid $pid) did not stop within 5 s" >&2
}
trap stop_pgbouncer EXIT

nodes=()
for (( i = 1; i <= SHARDLINE_NODE_COUNT; i++ )); do
  dsn_var="SHARDLINE_NODE_${i}_DSN"
  nodes+=(--node "${!dsn_var}")
done
quick=()
(( QUICK )) && quick=(--quick)
"$BUILD_DIR/tools/bench/router_bench" --mode proxy "${nodes[@]}" --work-dir "$dir" \
  --proxy "host=127.0.0.1 port=$port user=app dbname={node}" "${quick[@]+"${quick[@]}"}" "$@"
