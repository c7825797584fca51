#!/usr/bin/env bash
# Runs the whole test suite against a throwaway PostgreSQL that this script starts and always stops.
# Extra arguments go to `dotnet test` (for example: --filter ClientMode).
set -euo pipefail
cd "$(dirname "$0")"
source deploy/scripts/postgres.sh

pg_ensure_installed
data="$(mktemp -d /tmp/statscache-test-pg.XXXXXX)"
cleanup() { pg_stop "$data"; rm -rf "$data"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$(pg_free_port)"
pg_start "$data" "$port" throwaway
pg_create_db "$port" statscache_test
export ConnectionStrings__Stats="Host=127.0.0.1;Port=$port;Username=postgres;Database=statscache_test"

dotnet test StatsCache.slnx -c Release "$@"
