#!/usr/bin/env bash
# Benchmarks of issue 5, side by side in one run: StatsCache (co-hosted, and a 2-silo cluster behind
# client-mode web hosts) against no cache, FusionCache and, in hit, minimal ASP.NET Core endpoints in processes of
# their own (slim, and with the web host's metrics: issue 26's physical limit of a cached read); issue 7's
# fresh: write-to-visible latency and source loads under a steady write load, change feed on and off; issue 11's
# abuse: one caller refreshing or cycling a parameter next to 1,000 well-behaved callers; issue 15's live: 10,000 open
# live streams while orders are written; writecost: the platform's own write throughput (pgbench) with StatsCache
# attached (Notify triggers; Replication slot) as a ratio of detached, the configurations taking turns.
#   ./bench.sh [hit|stampede|refresh|source|abuse|fresh|live|writecost]... [--json FILE]     (all eight when none is named)
# Builds Release, starts a throwaway PostgreSQL with pg_stat_statements, generates 1,000,000 orders over
# 20 sites (BENCH_ORDERS, BENCH_SITES, BENCH_USERS change that), runs tests/Benchmarks' driver, prints the
# table (goal / measured / met) and stops everything it started. Speed is reported, never asserted.
# Knobs: BENCH_HIT_SECONDS (10), BENCH_HIT_ROUNDS (5), BENCH_REFRESH_ENTRIES (100000), BENCH_REFRESH_TTL_SECONDS (10),
# BENCH_FRESH_SECONDS (30), BENCH_FRESH_WRITES_PER_SECOND (200), BENCH_FRESH_CLIENTS (1000),
# BENCH_FRESH_READERS (all the clients), BENCH_FRESH_PROBES_PER_SECOND (5), BENCH_ABUSE_SECONDS (10),
# BENCH_LIVE_STREAMS (10000; live writes with fresh's rate, seconds and clients), BENCH_WRITECOST_SECONDS (5, per pgbench
# run; 18 runs a round), BENCH_WRITECOST_ROUNDS (3), BENCH_WRITECOST_RECVLOGICAL (0; 1 adds a configuration whose slot
# pg_recvlogical streams to /dev/null: the WAL sender's cost without StatsCache's process).
# fresh also runs StatsCache with its loads on a streaming replica of that PostgreSQL (issue 24), started when fresh is
# run and stopped after it.
set -euo pipefail
cd "$(dirname "$0")"
source deploy/scripts/postgres.sh

usage() { echo "usage: ./bench.sh [hit|stampede|refresh|source|abuse|fresh|live|writecost]... [--json FILE]" >&2; }
scenarios=()
json=()
while [ $# -gt 0 ]; do
  case "$1" in
    hit|stampede|refresh|source|abuse|fresh|live|writecost) scenarios+=("$1") ;;
    --json) [ $# -ge 2 ] || { usage; exit 2; }; json=(--json "$(realpath -m "$2")"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; exit 2 ;;
  esac
  shift
done

started=$SECONDS
ensure_packages wrk:wrk
pg_ensure_installed
# writecost's load generator: PostgreSQL's own pgbench, of the server's version (Debian ships it in postgresql-NN).
ensure_packages "$PGBIN/pgbench:postgresql-$(basename "$(dirname "$PGBIN")")"

work="$(mktemp -d /tmp/statscache-bench.XXXXXX)"
pg_data="$work/postgres"
replica_data="$work/replica"
cleanup() { pg_stop "$replica_data"; rm -rf "$replica_data"; pg_stop "$pg_data"; rm -rf "$pg_data"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "Building (Release)"
dotnet build tests/Benchmarks -c Release -v quiet -nologo >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }

port="$(pg_free_port)"
echo "Starting a throwaway PostgreSQL on 127.0.0.1:$port"
pg_start "$pg_data" "$port"
# pg_stat_statements counts the loads the database really ran (stampede); it must be preloaded, hence
# the restart (pg_ctl restart keeps the options of pg_start). Room for the no-cache contender's pools
# on three hosts (Npgsql's default pool is 100 connections). Buffers for the whole platform (orders alone
# is about 500 MB with its indexes; with the default 128 MB, writecost's writes to random orders wait on
# buffer evictions). No durability, as pg_start's throwaway mode, but in postgresql.auto.conf rather than
# on the command line, where no reload could change it: writecost turns it on for its turns. Without synchronous
# commits the WAL feed sees a commit when the WAL writer flushes it: every 10 ms, as pg_start's throwaway mode.
"$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
  -c "alter system set shared_preload_libraries = 'pg_stat_statements'" -c "alter system set max_connections = 600" \
  -c "alter system set shared_buffers = '1GB'" \
  -c "alter system set fsync = off" -c "alter system set synchronous_commit = off" -c "alter system set full_page_writes = off" \
  -c "alter system set wal_writer_delay = '10ms'"
_pg_as_owner "$PGBIN/pg_ctl" -D "$pg_data" -m fast -w -t 60 -l "$pg_data/server.log" restart >/dev/null
pg_create_db "$port" statscache_bench
"$PGBIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d statscache_bench -c "create extension if not exists pg_stat_statements"
export ConnectionStrings__Stats="Host=127.0.0.1;Port=$port;Username=postgres;Database=statscache_bench"
Auth__SigningKey="$(head -c 48 /dev/urandom | base64 -w0)"
export Auth__SigningKey

echo "Generating demo data"
(cd src/WebHost/bin/Release/net10.0 && exec dotnet StatsCache.WebHost.dll setup \
  --sites "${BENCH_SITES:-20}" --users "${BENCH_USERS:-1000}" --orders "${BENCH_ORDERS:-1000000}")

# fresh has rounds with loads on a read replica (issue 24): a streaming replica of this PostgreSQL, copied
# (pg_basebackup) once the data exists, so its copy is quick to catch up. Only when fresh runs: the copy takes
# a while and a replaying standby shares the cores. It inherits the settings above with postgresql.auto.conf,
# pg_stat_statements included (the fresh rounds count the loads each server ran), and the extension with the database.
if [ ${#scenarios[@]} -eq 0 ] || [[ " ${scenarios[*]} " == *" fresh "* ]]; then
  replica_port="$(pg_free_port)"
  echo "Starting a streaming replica on 127.0.0.1:$replica_port"
  pg_start_replica "$port" "$replica_data" "$replica_port" throwaway
  [[ "$(_pg_query "$replica_port" 'show shared_preload_libraries')" == *pg_stat_statements* ]] \
    || { echo "bench.sh: the replica has no pg_stat_statements (see $replica_data/postgresql.auto.conf)" >&2; exit 1; }
  export BENCH_REPLICA="Host=127.0.0.1;Port=$replica_port;Username=postgres;Database=statscache_bench"
  export BENCH_REPLICA_DATA="$replica_data"
fi

BENCH_WORK="$work" dotnet tests/Benchmarks/bin/Release/net10.0/StatsCache.Benchmarks.dll drive "${scenarios[@]}" "${json[@]}"
echo "bench.sh took $((SECONDS - started)) s; hosts' logs in $work"
