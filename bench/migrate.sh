#!/usr/bin/env bash
# What an unsafe schema change costs the application, sent directly and
# through ddlgate's runner, with the application itself always going through
# ddlgate.
#
#   bench/migrate.sh [REPEAT] [RATE] [CLIENTS]   (defaults 3 rounds, 400 tx/s, 4 clients)
#
# pgbench_accounts at scale 20 (2,000,000 rows). The application is a
# pgbench script (BEGIN; UPDATE one account; SELECT it; END) at a fixed
# rate, every transaction's latency logged (-l; with --rate the latency
# counts from the scheduled start, so a stall shows in full). For each change
# (CREATE INDEX, ALTER COLUMN ... SET NOT NULL, ADD COLUMN ... NOT NULL
# DEFAULT clock_timestamp(), ALTER COLUMN abalance TYPE bigint, and the
# primary key aid to bigint while acc_refs references it; and a migration
# tool's transaction, each statement its own Query inside BEGIN ... COMMIT:
# Django's four-step NOT NULL on filler plus a CREATE INDEX, which ddlgate
# defers past COMMIT) and each path (direct, then ddlgate), it
# reports: the change's total time; the application's p99
# before the change; its p99 and maximum over the change (transactions that
# ended from its start to 1 s after its end); its errors (failed
# transactions and aborted clients); and the p99 before and during of the
# transactions' own time (own_p99_*: pgbench's latency minus its schedule
# lag, the time a transaction waited to start, which includes pgbench's own
# threads waiting for a CPU). Each round runs the changes in turn; the
# last table gives each column's median over the rounds, and the ratio of
# p99 during to p99 before. Then, with no workload, the backfill's rate
# through ddlgate against one UPDATE of the whole table.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${1:-3}
RATE=${2:-400}
CLIENTS=${3:-4}
BEFORE=5   # seconds of workload before the change (the baseline)
AFTER=3    # seconds after it
SPAN=45    # seconds each workload runs: the change must end AFTER before
BACKFILL_SPAN=200  # the same for the backfills (ADD COLUMN, TYPE)

cargo build --release --quiet
WORK=$(mktemp -d /tmp/ddlgate-migrate.XXXXXX)
SCALE=20
. bench/lib.sh
DGPID=""
cleanup() {
  [ -n "$DGPID" ] && kill "$DGPID" 2>/dev/null || true
  stop_cluster
  rm -rf "$WORK"
}
trap cleanup EXIT

start_cluster 100
DGPORT=$(free_port)
cat > "$WORK/ddlgate.toml" <<TOML
listen = "127.0.0.1:$DGPORT"
upstream = "postgres://127.0.0.1:$PGPORT/postgres?sslmode=disable"
[log]
level = "info"
[runner]
user = "postgres"
TOML
target/release/ddlgate --config "$WORK/ddlgate.toml" 2> "$WORK/ddlgate.log" &
DGPID=$!
sleep 1

cat > "$WORK/app.sql" <<'SQL'
\set aid random(1, 2000000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
END;
SQL

psql_at() {
  if [[ "$2" == BEGIN\;* ]]; then
    # A migration tool's transaction: one Query per line.
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -f - <<<"$2"
  else
    "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
  fi
}
now_us() { date +%s%6N; }

# measure LABEL PORT CHANGE UNDO [SPAN]: one run; prints one result line.
# ONLY (a grep -E pattern over labels) runs a subset.
measure() {
  if [ -n "${ONLY:-}" ] && ! grep -qE "$ONLY" <<<"$1"; then return; fi
  local label=$1 port=$2 change=$3 undo=$4 span=${5:-$SPAN} logs="$WORK/log.$RANDOM" t0 t1 pgb
  mkdir -p "$logs"
  psql_at "$PGPORT" "$undo" >/dev/null 2>&1 || true
  psql_at "$PGPORT" "VACUUM ANALYZE pgbench_accounts" >/dev/null
  psql_at "$PGPORT" "CHECKPOINT" >/dev/null
  (cd "$logs" && "$BIN/pgbench" -n -f "$WORK/app.sql" -c "$CLIENTS" -j 2 -R "$RATE" -T "$span" -l \
     -h 127.0.0.1 -p "$DGPORT" -U postgres postgres > "$logs/pgbench.out" 2>&1) &
  pgb=$!
  sleep "$BEFORE"
  t0=$(now_us)
  psql_at "$port" "$change" > "$logs/change.out" 2>&1 || echo "change failed: $(cat "$logs/change.out")" >&2
  t1=$(now_us)
  [ $(( (t1 - t0) / 1000000 + BEFORE + AFTER )) -lt "$span" ] || echo "$label: the change outlasted the workload; raise SPAN" >&2
  wait "$pgb" || true
  python3 - "$label" "$logs" "$t0" "$t1" <<'PY'
import glob, re, sys
label, logs, t0, t1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
before, during, xbefore, xduring = [], [], [], []
for f in glob.glob(logs + "/pgbench_log.*"):
    for line in open(f):
        p = line.split()
        # client tx latency_us script epoch_s epoch_us [lag_us]
        if not p[2].isdigit():
            continue  # "failed" or "skipped": counted from the summary
        end = int(p[4]) * 1_000_000 + int(p[5])
        lat = int(p[2]) / 1000.0
        # Without the schedule lag: the transaction's own time, not the
        # time pgbench's threads waited for a CPU to start it.
        own = lat - (int(p[6]) / 1000.0 if len(p) > 6 else 0.0)
        if end < t0:
            before.append(lat)
            xbefore.append(own)
        elif end <= t1 + 1_000_000:
            during.append(lat)
            xduring.append(own)
out = open(logs + "/pgbench.out").read()
m = re.search(r"number of failed transactions: (\d+)", out)
failed = int(m.group(1)) if m else 0
aborted = len(re.findall(r"aborted", out))
def p99(xs):
    xs = sorted(xs)
    return xs[int(0.99 * (len(xs) - 1))] if xs else float("nan")
print(f"{label.replace(' ', '_'):<22} {(t1 - t0) / 1e6:8.2f} {p99(before):10.1f} {p99(during):10.1f} "
      f"{max(during, default=float('nan')):9.1f} {failed + aborted:6d} {len(during):7d} "
      f"{p99(xbefore):9.1f} {p99(xduring):9.1f}")
PY
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(uname -r), PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), 2,000,000 rows, app ${RATE} tx/s x ${CLIENTS} clients via ddlgate"
HEAD=$(printf '%-22s %8s %10s %10s %9s %6s %7s %9s %9s' run change_s p99_before p99_during max_ms errors tx own_p99_b own_p99_d)
echo "$HEAD"
INDEX="CREATE INDEX acc_bid_bal ON pgbench_accounts (bid, abalance)"
NOTNULL="ALTER TABLE pgbench_accounts ALTER COLUMN filler SET NOT NULL"
ADDCOL="ALTER TABLE pgbench_accounts ADD COLUMN added_at timestamptz NOT NULL DEFAULT clock_timestamp()"
DROPCOL="ALTER TABLE pgbench_accounts DROP COLUMN IF EXISTS added_at"
RETYPE="ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint"
UNRETYPE="ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE int"
REKEY="ALTER TABLE pgbench_accounts ALTER COLUMN aid TYPE bigint"
UNREKEY="ALTER TABLE pgbench_accounts ALTER COLUMN aid TYPE int"
TOOLTX="BEGIN;
ALTER TABLE pgbench_accounts ALTER COLUMN filler SET DEFAULT '';
UPDATE pgbench_accounts SET filler = '' WHERE filler IS NULL;
ALTER TABLE pgbench_accounts ALTER COLUMN filler SET NOT NULL;
ALTER TABLE pgbench_accounts ALTER COLUMN filler DROP DEFAULT;
CREATE INDEX acc_bid_bal ON pgbench_accounts (bid, abalance);
COMMIT;"
UNTOOLTX="ALTER TABLE pgbench_accounts ALTER COLUMN filler DROP NOT NULL; DROP INDEX IF EXISTS acc_bid_bal"
# A table that references the primary key, for the key's type change.
psql_at "$PGPORT" "CREATE TABLE acc_refs (id int PRIMARY KEY, aid int NOT NULL REFERENCES pgbench_accounts);
  INSERT INTO acc_refs SELECT g, g * 19 FROM generate_series(1, 100000) g" >/dev/null
for round in $(seq "$REPEAT"); do
  measure "CREATE INDEX direct" "$PGPORT" "$INDEX" "DROP INDEX IF EXISTS acc_bid_bal"
  measure "CREATE INDEX ddlgate" "$DGPORT" "$INDEX" "DROP INDEX IF EXISTS acc_bid_bal"
  measure "SET NOT NULL direct" "$PGPORT" "$NOTNULL" "ALTER TABLE pgbench_accounts ALTER COLUMN filler DROP NOT NULL"
  measure "SET NOT NULL ddlgate" "$DGPORT" "$NOTNULL" "ALTER TABLE pgbench_accounts ALTER COLUMN filler DROP NOT NULL"
  measure "ADD COLUMN direct" "$PGPORT" "$ADDCOL" "$DROPCOL" "$BACKFILL_SPAN"
  measure "ADD COLUMN ddlgate" "$DGPORT" "$ADDCOL" "$DROPCOL" "$BACKFILL_SPAN"
  measure "TYPE bigint direct" "$PGPORT" "$RETYPE" "$UNRETYPE" "$BACKFILL_SPAN"
  measure "TYPE bigint ddlgate" "$DGPORT" "$RETYPE" "$UNRETYPE" "$BACKFILL_SPAN"
  measure "PK bigint direct" "$PGPORT" "$REKEY" "$UNREKEY" "$BACKFILL_SPAN"
  measure "PK bigint ddlgate" "$DGPORT" "$REKEY" "$UNREKEY" "$BACKFILL_SPAN"
  measure "tool tx direct" "$PGPORT" "$TOOLTX" "$UNTOOLTX" "$BACKFILL_SPAN"
  measure "tool tx ddlgate" "$DGPORT" "$TOOLTX" "$UNTOOLTX" "$BACKFILL_SPAN"
done | tee "$WORK/rounds.txt"
echo "medians over $REPEAT rounds:"
printf '%s %7s %7s\n' "$HEAD" p99x own_p99x
python3 - "$WORK/rounds.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    p = line.split()
    runs.setdefault(p[0], []).append([float(x) for x in p[1:]])
for label, rows in runs.items():
    m = [statistics.median(col) for col in zip(*rows)]
    ratios = statistics.median(r[2] / r[1] for r in rows)
    own = statistics.median(r[7] / r[6] for r in rows)
    print(f"{label:<22} {m[0]:8.2f} {m[1]:10.1f} {m[2]:10.1f} {m[3]:9.1f} {m[4]:6.0f} {m[5]:7.0f} "
          f"{m[6]:9.1f} {m[7]:9.1f} {ratios:7.2f} {own:7.2f}")
PY
echo "runner step retries on lock_timeout: $(grep -c 'migration.step_retried' "$WORK/ddlgate.log" || true)"

# The backfill's rate with nothing else running, against one UPDATE.
psql_at "$PGPORT" "$DROPCOL" >/dev/null
psql_at "$PGPORT" "VACUUM pgbench_accounts" >/dev/null
psql_at "$PGPORT" "ALTER TABLE pgbench_accounts ADD COLUMN once timestamptz" >/dev/null
t0=$(now_us); psql_at "$PGPORT" "UPDATE pgbench_accounts SET once = clock_timestamp()" >/dev/null; t1=$(now_us)
psql_at "$PGPORT" "ALTER TABLE pgbench_accounts DROP COLUMN once" >/dev/null
psql_at "$PGPORT" "VACUUM pgbench_accounts" >/dev/null
psql_at "$DGPORT" "ALTER TABLE pgbench_accounts ADD COLUMN idle_at timestamptz DEFAULT clock_timestamp()" >/dev/null
backfill_s=$(grep 'migration.backfill_finished' "$WORK/ddlgate.log" | tail -1 | sed -n 's/.*duration_secs=\([0-9.]*\).*/\1/p')
awk -v u="$(( t1 - t0 ))" -v b="$backfill_s" 'BEGIN {
  printf "idle: one UPDATE of 2000000 rows %.2f s (%.0f rows/s); ddlgate backfill %.2f s (%.0f rows/s): %.2fx\n",
    u / 1e6, 2e6 / (u / 1e6), b, 2e6 / b, (u / 1e6) / b }'
