#!/usr/bin/env bash
# The runner's backfill with no application running: the current build
# against an earlier revision, on one cluster, alternating the two.
#
#   bench/backfill.sh BASE_REV [ROUNDS]     (default 3)
#
# pgbench_accounts at scale 20 (2,000,000 rows). Each run sends
# `ALTER TABLE pgbench_accounts ADD COLUMN ... DEFAULT clock_timestamp()`
# through a fresh ddlgate (sync: psql returns when the migration is done),
# then drops the column and VACUUMs. Prints each run's seconds and rows/s,
# the medians, and current/base.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bench/backfill.sh BASE_REV [ROUNDS]}
ROUNDS=${2:-3}

cargo build --release --quiet
WORK=$(mktemp -d /tmp/ddlgate-backfill.XXXXXX)
SCALE=20
. bench/lib.sh
git worktree add --detach -q "$WORK/base" "$BASE"
(cd "$WORK/base" && CARGO_TARGET_DIR="$WORK/target" cargo build --release --quiet)
DGPID=""
cleanup() {
  [ -n "$DGPID" ] && kill "$DGPID" 2>/dev/null || true
  stop_cluster
  git worktree remove --force "$WORK/base" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
start_cluster 50
psql_at() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }
psql_at "$PGPORT" "VACUUM ANALYZE pgbench_accounts" >/dev/null

# run BINARY LABEL N: one backfill through BINARY; prints "LABEL seconds".
run() {
  local port; port=$(free_port)
  cat > "$WORK/ddlgate.toml" <<TOML
listen = "127.0.0.1:$port"
upstream = "postgres://127.0.0.1:$PGPORT/postgres?sslmode=disable"
[log]
level = "warn"
[runner]
user = "postgres"
TOML
  "$1" --config "$WORK/ddlgate.toml" 2>> "$WORK/ddlgate.log" &
  DGPID=$!
  sleep 1
  local t0 t1
  t0=$(date +%s%6N)
  psql_at "$port" "ALTER TABLE pgbench_accounts ADD COLUMN c$3 timestamptz DEFAULT clock_timestamp()" >/dev/null 2>&1
  t1=$(date +%s%6N)
  kill "$DGPID"; wait "$DGPID" 2>/dev/null || true; DGPID=""
  psql_at "$PGPORT" "ALTER TABLE pgbench_accounts DROP COLUMN c$3" >/dev/null
  psql_at "$PGPORT" "VACUUM pgbench_accounts" >/dev/null
  awk -v l="$2" -v u="$(( t1 - t0 ))" 'BEGIN { printf "%s %.2f\n", l, u / 1e6 }'
}

: > "$WORK/runs"
n=0
for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then order="current base"; else order="base current"; fi
  for which in $order; do
    n=$((n + 1))
    bin=target/release/ddlgate
    [ "$which" = base ] && bin="$WORK/target/release/ddlgate"
    run "$bin" "$which" "$n" | tee -a "$WORK/runs"
  done
done
python3 - "$WORK/runs" "$BASE" <<'PY'
import statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
med = {w: statistics.median(float(s) for x, s in runs if x == w) for w in ("base", "current")}
for w in ("base", "current"):
    print(f"{w:<8} median {med[w]:.2f} s ({2e6 / med[w]:.0f} rows/s)")
print(f"current/base duration: {med['current'] / med['base']:.2f}  (base {sys.argv[2]})")
PY
