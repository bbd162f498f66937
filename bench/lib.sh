# Shared by the bench scripts: find PostgreSQL, run it unprivileged, and
# start a throwaway cluster with pgbench tables. Source it; set WORK first.

BIN=${DDLGATE_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$BIN/initdb" ] || { echo "PostgreSQL server binaries not found: apt-get install -y postgresql" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# start_cluster MAX_CONNECTIONS: initdb in $WORK/data, start it on a free
# port ($PGPORT), load pgbench tables at scale ${SCALE:-10}.
start_cluster() {
  PGPORT=$(free_port)
  [ "$(id -u)" = 0 ] && chown postgres "$WORK"
  as_pg "$BIN/initdb" -D "$WORK/data" -U postgres --auth=trust -N >/dev/null
  cat >> "$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK'
max_connections = $1
shared_buffers = 256MB
fsync = off
synchronous_commit = off
CONF
  as_pg "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w start >/dev/null
  "$BIN/pgbench" -i -q -s "${SCALE:-10}" -h 127.0.0.1 -p "$PGPORT" -U postgres postgres >/dev/null 2>&1
}

stop_cluster() {
  as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
