#!/usr/bin/env bash
# Throughput and CPU cost of ddlgate against PostgreSQL directly and PgBouncer
# (session mode, when installed), all in the same run on the same cluster.
#
#   bench/run.sh [SECONDS_PER_RUN]       (default 10)
#
# For pgbench -S in simple, extended and prepared modes at 1, 8 and 32
# clients, prints TPS, ratios to direct and to PgBouncer, each proxy's CPU
# (user+sys from /proc) per transaction, and average latency; then the RSS of
# each proxy holding 500 idle client connections.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}

cargo build --release --quiet
WORK=$(mktemp -d /tmp/ddlgate-bench.XXXXXX)
. bench/lib.sh
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_cluster
  rm -rf "$WORK"
}
trap cleanup EXIT

start_cluster 1100
DGPORT=$(free_port); BPORT=$(free_port)

target/release/ddlgate --listen "127.0.0.1:$DGPORT" --max-client-connections 2000 \
  --upstream "postgres://127.0.0.1:$PGPORT/postgres?sslmode=disable" --log-level warn &
DGPID=$!; PIDS+=("$DGPID")

BPID=""
if command -v pgbouncer >/dev/null; then
  echo '"postgres" ""' > "$WORK/users.txt"
  cat > "$WORK/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PGPORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/users.txt
pool_mode = session
max_client_conn = 2000
default_pool_size = 1000
logfile = $WORK/pgbouncer.log
INI
  [ "$(id -u)" = 0 ] && chown postgres "$WORK"/users.txt "$WORK"/pgbouncer.ini
  as_pg pgbouncer "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
  sleep 1
  BPID=$(pgrep -n -f "pgbouncer $WORK/pgbouncer.ini")
  PIDS+=("$BPID")
else
  echo "pgbouncer not installed (apt-get install -y pgbouncer): comparing with direct only"
fi
sleep 1

# run PORT PID MODE CLIENTS -> "tps cpu_us_per_tx latency_ms"
run() {
  local port=$1 pid=$2 mode=$3 c=$4 j=$(( $4 < 2 ? 1 : 2 )) t0 t1 out tps n lat
  t0=$([ -n "$pid" ] && ticks "$pid" || echo 0)
  out=$("$BIN/pgbench" -n -S -M "$mode" -c "$c" -j "$j" -T "$DUR" -h 127.0.0.1 -p "$port" -U postgres postgres 2>&1)
  t1=$([ -n "$pid" ] && ticks "$pid" || echo 0)
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
  awk -v tps="$tps" -v n="$n" -v d=$((t1 - t0)) -v tck="$TCK" -v lat="$lat" \
    'BEGIN { printf "%.0f %.2f %.4f\n", tps, (n > 0 ? d * 1e6 / tck / n : 0), lat }'
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(uname -r), PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), $(pgbouncer --version 2>/dev/null | head -1 || echo 'no pgbouncer'), ${DUR}s per run"
printf '%-9s %3s | %8s | %8s %6s %6s %7s %8s | %8s %6s %7s %8s\n' mode c direct ddlgate x/dir x/pgb cpu_us +lat_us pgbounc x/dir cpu_us +lat_us
for mode in simple extended prepared; do
  for c in 1 8 32; do
    read -r dt _ dl <<<"$(run "$PGPORT" "" "$mode" "$c")"
    read -r gt gc gl <<<"$(run "$DGPORT" "$DGPID" "$mode" "$c")"
    if [ -n "$BPID" ]; then read -r bt bc bl <<<"$(run "$BPORT" "$BPID" "$mode" "$c")"; else bt=0 bc=0 bl=0; fi
    awk -v m="$mode" -v c="$c" -v dt="$dt" -v dl="$dl" -v gt="$gt" -v gc="$gc" -v gl="$gl" -v bt="$bt" -v bc="$bc" -v bl="$bl" 'BEGIN {
      printf "%-9s %3d | %8d | %8d %6.2f %6.2f %7.2f %8.1f | %8d %6.2f %7.2f %8.1f\n",
        m, c, dt, gt, gt/dt, (bt > 0 ? gt/bt : 0), gc, (gl-dl)*1000, bt, bt/dt, bc, (bl-dl)*1000 }'
  done
done

# RSS with 500 idle clients: each pgbench client connects, then sleeps.
echo '\sleep 6 s' > "$WORK/idle.sql"
idle_rss() {
  local port=$1 pid=$2 before after
  before=$(rss_kib "$pid")
  "$BIN/pgbench" -n -f "$WORK/idle.sql" -c 500 -j 2 -t 1 -h 127.0.0.1 -p "$port" -U postgres postgres >/dev/null 2>&1 &
  local bench=$!
  sleep 4
  after=$(rss_kib "$pid")
  wait "$bench"
  echo "$before $after"
}
read -r gb ga <<<"$(idle_rss "$DGPORT" "$DGPID")"
echo "ddlgate RSS: ${gb} KiB idle, ${ga} KiB with 500 idle clients: $(( (ga - gb) / 500 )) KiB per connection"
if [ -n "$BPID" ]; then
  read -r bb ba <<<"$(idle_rss "$BPORT" "$BPID")"
  echo "pgbouncer RSS: ${bb} KiB idle, ${ba} KiB with 500 idle clients: $(( (ba - bb) / 500 )) KiB per connection"
fi
