#!/usr/bin/env bash
# Non-DDL throughput of the current ddlgate against an earlier revision, on
# one cluster in one run, alternating the two so drift and noise hit both.
#
#   bench/regress.sh BASE_REV [SECONDS_PER_RUN] [ROUNDS]     (default 5, 5)
#
# For pgbench -S (simple, extended, prepared) at 1 and 8 clients, prints the
# median TPS and proxy CPU per transaction (user+sys from /proc) of each
# binary over ROUNDS runs (alternating which goes first), and current/base.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench/regress.sh BASE_REV [SECONDS] [ROUNDS]}
DUR=${2:-5}
ROUNDS=${3:-5}

cargo build --release --quiet
WORK=$(mktemp -d /tmp/ddlgate-regress.XXXXXX)
. bench/lib.sh
git worktree add --detach -q "$WORK/base" "$BASE"
(cd "$WORK/base" && CARGO_TARGET_DIR="$WORK/target" cargo build --release --quiet)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_cluster
  git worktree remove --force "$WORK/base" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_cluster 200
CUR=$(free_port); OLD=$(free_port)
UP="postgres://127.0.0.1:$PGPORT/postgres?sslmode=disable"
target/release/ddlgate --listen "127.0.0.1:$CUR" --upstream "$UP" --log-level warn & CURPID=$!; PIDS+=($CURPID)
"$WORK/target/release/ddlgate" --listen "127.0.0.1:$OLD" --upstream "$UP" --log-level warn & OLDPID=$!; PIDS+=($OLDPID)
sleep 1

# tps PORT PID MODE CLIENTS -> "tps cpu_us_per_tx"
tps() {
  local t0 t1 out
  t0=$(ticks "$2")
  out=$("$BIN/pgbench" -n -S -M "$3" -c "$4" -j $(( $4 < 2 ? 1 : 2 )) -T "$DUR" -h 127.0.0.1 -p "$1" -U postgres postgres 2>&1)
  t1=$(ticks "$2")
  awk -v d=$((t1 - t0)) -v tck="$TCK" \
    -v tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")" \
    -v n="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")" \
    'BEGIN { printf "%.0f %.3f\n", tps, (n > 0 ? d * 1e6 / tck / n : 0) }'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores; current $(git rev-parse --short HEAD) vs base $(git rev-parse --short "$BASE"); ${DUR}s x $ROUNDS rounds, medians"
printf '%-9s %3s | %8s %8s %8s | %11s %11s %8s\n' mode c base_tps cur_tps cur/base base_cpu_us cur_cpu_us cur/base
for mode in simple extended prepared; do
  for c in 1 8; do
    bt=(); bc=(); nt=(); nc=()
    for r in $(seq "$ROUNDS"); do
      # Alternate which goes first, so neither always runs on a warmer cache.
      if (( r % 2 )); then
        read -r t u <<<"$(tps "$OLD" "$OLDPID" "$mode" "$c")"; bt+=("$t"); bc+=("$u")
        read -r t u <<<"$(tps "$CUR" "$CURPID" "$mode" "$c")"; nt+=("$t"); nc+=("$u")
      else
        read -r t u <<<"$(tps "$CUR" "$CURPID" "$mode" "$c")"; nt+=("$t"); nc+=("$u")
        read -r t u <<<"$(tps "$OLD" "$OLDPID" "$mode" "$c")"; bt+=("$t"); bc+=("$u")
      fi
    done
    awk -v m="$mode" -v c="$c" \
      -v bt="$(printf '%s\n' "${bt[@]}" | median)" -v nt="$(printf '%s\n' "${nt[@]}" | median)" \
      -v bc="$(printf '%s\n' "${bc[@]}" | median)" -v nc="$(printf '%s\n' "${nc[@]}" | median)" \
      'BEGIN { printf "%-9s %3d | %8.0f %8.0f %8.3f | %11.2f %11.2f %8.3f\n", m, c, bt, nt, nt/bt, bc, nc, nc/bc }'
  done
done
