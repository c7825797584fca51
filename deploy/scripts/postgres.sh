# shellcheck shell=bash
# Local PostgreSQL helpers for ./run.sh and ./test.sh. Source this file; it defines functions
# only and is safe under `set -euo pipefail`. Every server listens on 127.0.0.1 only, keeps its
# unix socket in its data folder and trusts local connections as the superuser `postgres`.
# As root the server runs as the `postgres` OS user (PostgreSQL refuses root), so the data
# folder's parent directories must be traversable by that user; pg_start makes them so
# (chmod o+x, the same access /tmp gives) — or choose a data folder under /tmp.

source "$(dirname "${BASH_SOURCE[0]}")/packages.sh"

# pg_ensure_installed: install PostgreSQL (apt) when no initdb is found; set PGBIN to the newest bin dir.
pg_ensure_installed() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || ensure_packages /usr/lib/postgresql/15/bin/initdb:postgresql
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    export PGBIN
}

# _pg_as_owner: run a command as the data folder's owner (runuser -u postgres when root).
_pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start DATA_DIR PORT [throwaway]: initdb when needed, start (or reuse) the server, wait until it answers.
pg_start() {
    local data="$1" port="$2" mode="${3:-}"
    [ -n "${PGBIN:-}" ] || pg_ensure_installed
    mkdir -p "$data"
    data="$(cd "$data" && pwd)"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$data"
        local dir="$data"                          # let the postgres user reach the folder
        while dir="$(dirname "$dir")" && [ "$dir" != / ]; do chmod o+x "$dir"; done
    fi
    chmod 700 "$data"
    if [ ! -f "$data/PG_VERSION" ]; then
        local out
        out="$(_pg_as_owner "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 2>&1)" \
            || out="$(_pg_as_owner "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C 2>&1)" \
            || { echo "$out" >&2; return 1; }
    fi
    if ! _pg_as_owner "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        # wal_level=logical: the change feed reads the WAL (a logical replication slot per cluster); room for the
        # slots and WAL senders of the tests' and benchmarks' clusters.
        local opts="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_wal_size=4GB"
        opts="$opts -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32"
        # Throwaway: no durability. A commit then returns before its WAL is flushed, and the WAL feed sees it only once the
        # WAL writer flushes it: every 10 ms, not the default 200 ms (with synchronous_commit=on, as in production, at once).
        [ "$mode" = throwaway ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_writer_delay=10ms"
        _pg_as_owner "$PGBIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 -o "$opts" start >/dev/null
    fi
    local i
    for i in $(seq 1 60); do
        "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" && return 0
        sleep 0.5
    done
    echo "postgres.sh: PostgreSQL in $data did not answer on 127.0.0.1:$port (see $data/server.log)" >&2
    return 1
}

# pg_stop DATA_DIR: fast shutdown; does nothing when no server runs there.
pg_stop() {
    local data="$1"
    [ -n "${PGBIN:-}" ] || pg_ensure_installed
    [ -f "$data/postmaster.pid" ] || return 0
    _pg_as_owner "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

# pg_free_port: print a TCP port on 127.0.0.1 that nothing listens on now.
pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# pg_create_db PORT NAME: create database NAME unless it exists.
pg_create_db() {
    local port="$1" name="$2"
    [ -n "${PGBIN:-}" ] || pg_ensure_installed
    "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -v name="$name" <<'SQL'
select format('create database %I', :'name') where not exists (select 1 from pg_database where datname = :'name') \gexec
SQL
}
