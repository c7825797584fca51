#!/usr/bin/env bash
# Runs StatsCache on this machine: a local PostgreSQL (unless ConnectionStrings__Stats names one),
# the demo schema and data, and the Release web host with its in-process silo.
# Honours ConnectionStrings__Stats, Auth__SigningKey, Auth__Issuer, Auth__Audience and ASPNETCORE_URLS.
# Demo size on first run: DEMO_SITES, DEMO_USERS (per site), DEMO_ORDERS. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")"
source deploy/scripts/postgres.sh

state=".local"
mkdir -p "$state"
pg_data=""
webhost_pid=""
stop() {
  [ -n "$webhost_pid" ] && kill -TERM "$webhost_pid" 2>/dev/null && wait "$webhost_pid" 2>/dev/null || true
  [ -n "$pg_data" ] && pg_stop "$pg_data"
}
trap stop EXIT
trap 'exit 130' INT TERM

if [ -z "${ConnectionStrings__Stats:-}" ]; then
  pg_ensure_installed
  pg_data="$state/postgres"
  pg_port="${STATSCACHE_PG_PORT:-54329}"
  echo "Starting PostgreSQL on 127.0.0.1:$pg_port (data in $pg_data)"
  pg_start "$pg_data" "$pg_port"
  pg_create_db "$pg_port" statscache
  export ConnectionStrings__Stats="Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=statscache"
fi

# A signing key of this checkout's own, made once, unless the environment brings one.
if [ -z "${Auth__SigningKey:-}" ]; then
  [ -s "$state/signing-key" ] || (umask 077 && head -c 48 /dev/urandom | base64 -w0 > "$state/signing-key")
  Auth__SigningKey="$(cat "$state/signing-key")"
  export Auth__SigningKey
fi

export ASPNETCORE_URLS="${ASPNETCORE_URLS:-http://127.0.0.1:5080}"
url="${ASPNETCORE_URLS%%;*}"

echo "Building the web host (Release)"
dotnet build src/WebHost -c Release -v quiet -nologo
# Run from the build folder so the host finds its appsettings.json (its content root).
webhost() { (cd src/WebHost/bin/Release/net10.0 && exec dotnet StatsCache.WebHost.dll "$@"); }

webhost setup --sites "${DEMO_SITES:-5}" --users "${DEMO_USERS:-2000}" --orders "${DEMO_ORDERS:-100000}"
admin_token="$(webhost token --site 1 --role admin)"
client_token="$(webhost token --site 1 --role client)"
writer_token="$(webhost token --site 1 --role writer)"

webhost &
webhost_pid=$!
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && break
  kill -0 "$webhost_pid" 2>/dev/null || { echo "The web host exited." >&2; exit 1; }
  sleep 0.5
done

cat <<MSG

StatsCache is listening on $url (Ctrl-C stops it).
Demo tokens for site 1, valid 12 hours:
  admin:  $admin_token
  client: $client_token
  writer: $writer_token
Try:
  curl -s -H "Authorization: Bearer $client_token" $url/api/dashboards/client-stats
Other views: $url/api/dashboards (the caller's list), admin-overview, writer-earnings?weeks=8

MSG
wait "$webhost_pid"
