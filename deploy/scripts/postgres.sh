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
    data="$(_pg_data_dir "$data")" || return 1
    if [ ! -f "$data/PG_VERSION" ]; then
        local out
        out="$(_pg_as_owner "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 2>&1)" \
            || out="$(_pg_as_owner "$PGBIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C 2>&1)" \
            || { echo "$out" >&2; return 1; }
    fi
    _pg_run "$data" "$port" "$mode"
}

# pg_start_replica PRIMARY_PORT DATA_DIR PORT [throwaway]: a hot standby of the server on 127.0.0.1:PRIMARY_PORT, streaming
# its WAL. Copies the primary (pg_basebackup) when DATA_DIR holds no copy of it (empty, another primary's, or a copy cut
# short), starts (or reuses) the standby as pg_start does, waits until it answers in recovery and has replayed what the
# primary had flushed when it started: its readers then see at least that. A standby that cannot catch up (the primary
# no longer has the WAL it needs: it keeps none for a stopped standby) is copied again, once.
pg_start_replica() {
    local primary_port="$1" data="$2" port="$3" mode="${4:-}"
    [ -n "${PGBIN:-}" ] || pg_ensure_installed
    data="$(_pg_data_dir "$data")" || return 1
    local primary_id attempt copied=false
    primary_id="$(_pg_query "$primary_port" 'select system_identifier from pg_control_system()')" || return 1
    for attempt in 1 2; do
        # pg_basebackup writes backup_label first and global/pg_control last: a copy cut short has no system identifier.
        if [ -f "$data/PG_VERSION" ] || [ -f "$data/backup_label" ]; then
            if [ "$attempt" -eq 2 ] || [ "$(_pg_system_id "$data")" != "$primary_id" ]; then
                echo "postgres.sh: $data holds no usable copy of the PostgreSQL on 127.0.0.1:$primary_port; copying it again" >&2
                pg_stop "$data"
                rm -rf "$data"
                data="$(_pg_data_dir "$data")" || return 1
            fi
        fi
        if [ ! -f "$data/PG_VERSION" ]; then
            # Its output only on failure: it warns of the primary's unix socket, which it leaves out.
            local out
            out="$(_pg_as_owner "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$data" -R -X stream -c fast 2>&1)" \
                || { echo "$out" >&2; return 1; }
            rm -f "$data/server.log"     # the primary's log, copied with the rest
            copied=true
        fi
        local log_start target i
        log_start=$(($(stat -c %s "$data/server.log" 2>/dev/null || echo 0) + 1))
        # Where the primary is now, rather than what pg_basebackup -R wrote: the primary's port may have changed since.
        _pg_run "$data" "$port" "$mode" "-c primary_conninfo=postgresql://postgres@127.0.0.1:$primary_port" || return 1
        target="$(_pg_query "$primary_port" 'select pg_current_wal_flush_lsn()')" || return 1
        local why="not in recovery at the primary's WAL position $target within 30 s"
        for i in $(seq 1 60); do
            [ "$(_pg_query "$port" "select pg_is_in_recovery() and pg_last_wal_replay_lsn() >= '$target'" 2>/dev/null)" = t ] && return 0
            # (grep -q on a pipe could end tail with SIGPIPE, which pipefail counts as the pipe's failure.)
            if grep -q 'requested WAL segment .* has already been removed' < <(tail -c "+$log_start" "$data/server.log"); then
                why="the primary no longer has the WAL it needs"
                break
            fi
            sleep 0.5
        done
        if "$copied"; then
            echo "postgres.sh: the standby in $data cannot catch up: $why (see $data/server.log)" >&2
            return 1
        fi
        echo "postgres.sh: the standby in $data cannot catch up: $why" >&2
    done
    return 1
}

# _pg_data_dir DATA_DIR: make the data folder (empty when new) usable by the server's OS user; print its absolute path.
# (Called in $(...), which does not inherit set -e: every step returns on failure.)
_pg_data_dir() {
    local data="$1"
    mkdir -p "$data" && data="$(cd "$data" && pwd)" || return 1
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$data" || return 1
        local dir="$data"                          # let the postgres user reach the folder
        while dir="$(dirname "$dir")" && [ "$dir" != / ]; do chmod o+x "$dir" || return 1; done
    fi
    chmod 700 "$data" && echo "$data"
}

# _pg_run DATA_DIR PORT MODE [EXTRA_OPTIONS]: start the server in DATA_DIR unless it runs, wait until it answers on PORT.
_pg_run() {
    local data="$1" port="$2" mode="$3" extra="${4:-}"
    if ! _pg_as_owner "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        # wal_level=logical: the change feed reads the WAL (a logical replication slot per cluster); room for the
        # slots and WAL senders of the tests' and benchmarks' clusters. (A standby needs max_wal_senders at least the primary's.)
        local opts="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_wal_size=4GB"
        opts="$opts -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32"
        # Throwaway: no durability. A commit then returns before its WAL is flushed, and the WAL feed sees it only once the
        # WAL writer flushes it: every 10 ms, not the default 200 ms (with synchronous_commit=on, as in production, at once).
        [ "$mode" = throwaway ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_writer_delay=10ms"
        [ -n "$extra" ] && opts="$opts $extra"
        _pg_as_owner "$PGBIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 -o "$opts" start >/dev/null
    fi
    local i
    for i in $(seq 1 60); do
        "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres && return 0
        sleep 0.5
    done
    echo "postgres.sh: PostgreSQL in $data did not answer on 127.0.0.1:$port (see $data/server.log)" >&2
    return 1
}

# _pg_query PORT SQL: print the one value SQL selects (as postgres, database postgres).
_pg_query() {
    "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$1" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$2"
}

# _pg_system_id DATA_DIR: print the database system identifier of the data folder (nothing when it has no pg_control).
_pg_system_id() {
    LC_ALL=C _pg_as_owner "$PGBIN/pg_controldata" -D "$1" 2>/dev/null | sed -n 's/^Database system identifier: *//p'
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
