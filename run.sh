#!/usr/bin/env bash
# Runs StatsCache on this machine: a local PostgreSQL (unless ConnectionStrings__Stats names one),
# the demo schema and data, and the Release web host with its in-process silo.
#   ./run.sh               one process: the web host with an in-process silo
#   ./run.sh --cluster N   N silo processes (membership and snapshots in PostgreSQL) and the web host as their client
#   ./run.sh --replica     also a streaming read replica of the local PostgreSQL, which the loads read from
#                          (StatsCache__Source__Replicas__0); .local/replica, port STATSCACHE_REPLICA_PORT or 54330;
#                          with --cluster N too, in either order; not with ConnectionStrings__Stats
# Honours ConnectionStrings__Stats, Auth__SigningKey, Auth__Issuer, Auth__Audience and ASPNETCORE_URLS.
# Demo size on first run: DEMO_SITES, DEMO_USERS (per site), DEMO_ORDERS. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")"
source deploy/scripts/postgres.sh

usage="usage: ./run.sh [--cluster N] [--replica]  (N from 1 to 99)"
silos=0
replica=false
while [ $# -gt 0 ]; do
  case "$1" in
    --cluster) silos="${2:-}"; [[ "$silos" =~ ^[1-9][0-9]?$ ]] || { echo "$usage" >&2; exit 2; }; shift 2 ;;
    --replica) replica=true; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
if "$replica" && [ -n "${ConnectionStrings__Stats:-}" ]; then
  echo "--replica starts a replica of run.sh's own PostgreSQL, and ConnectionStrings__Stats names another database:" >&2
  echo "set StatsCache__Source__Replicas__0 to a replica of that database yourself, and leave out --replica." >&2
  exit 2
fi

state=".local"
mkdir -p "$state"
pg_data=""
replica_data=""
webhost_pid=""
silo_pids=()
stop() {
  local pid
  for pid in $webhost_pid "${silo_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $webhost_pid "${silo_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "$replica_data" ] && pg_stop "$replica_data"
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
if [ "$silos" -gt 0 ]; then
  echo "Building the silo (Release)"
  dotnet build src/Silo -c Release -v quiet -nologo
fi
# Run from the build folder so the host finds its appsettings.json (its content root).
webhost() { (cd src/WebHost/bin/Release/net10.0 && exec dotnet StatsCache.WebHost.dll "$@"); }

webhost setup --sites "${DEMO_SITES:-5}" --users "${DEMO_USERS:-2000}" --orders "${DEMO_ORDERS:-100000}"
admin_token="$(webhost token --site 1 --role admin)"
client_token="$(webhost token --site 1 --role client)"
writer_token="$(webhost token --site 1 --role writer)"

if "$replica"; then
  # After the demo data (a copy of it, rather than its WAL, on first run), before any silo: the loads read from it.
  replica_data="$state/replica"
  replica_port="${STATSCACHE_REPLICA_PORT:-54330}"
  pg_start_replica "$pg_port" "$replica_data" "$replica_port"
  echo "Read replica on 127.0.0.1:$replica_port (data in $replica_data), streaming from 127.0.0.1:$pg_port"
  export StatsCache__Source__Replicas__0="Host=127.0.0.1;Port=$replica_port;Username=postgres;Database=statscache"
fi

if [ "$silos" -gt 0 ]; then
  # A cluster of this run's own: dead silos of earlier runs stay in the membership table under other ids.
  export Orleans__Mode=Client Orleans__Membership=AdoNet Orleans__Storage=AdoNet \
    Orleans__ClusterId="local-$(date +%s)" Orleans__AdvertisedAddress=127.0.0.1
  for i in $(seq 1 "$silos"); do
    (cd src/Silo/bin/Release/net10.0 && Orleans__SiloPort=$((11110 + i)) Orleans__GatewayPort=$((29999 + i)) \
      exec dotnet StatsCache.Silo.dll) > "$state/silo-$i.log" 2>&1 &
    silo_pids+=($!)
    echo "Silo $i: silo port $((11110 + i)), gateway $((29999 + i)), log $state/silo-$i.log"
  done
  for i in $(seq 1 "$silos"); do
    for _ in $(seq 1 120); do
      (echo > "/dev/tcp/127.0.0.1/$((29999 + i))") 2>/dev/null && break
      kill -0 "${silo_pids[$((i - 1))]}" 2>/dev/null || { echo "Silo $i exited; see $state/silo-$i.log" >&2; exit 1; }
      sleep 0.5
    done
  done
fi

# exec, so that $! is the web host itself and Ctrl-C's SIGTERM reaches it.
(cd src/WebHost/bin/Release/net10.0 && exec dotnet StatsCache.WebHost.dll) &
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
Live dashboards in a browser (the token stays in the fragment, never sent in a URL):
  client: $url/#token=$client_token
  admin:  $url/#token=$admin_token
Try:
  curl -s -H "Authorization: Bearer $client_token" $url/api/dashboards/client-stats
  curl -s -H "Authorization: Bearer $admin_token" "$url/api/dashboards/batch?view=admin-overview&view=admin-analytics&days=7"
  curl -sN -H "Authorization: Bearer $client_token" "$url/api/dashboards/live?view=client-stats&view=client-loyalty"
Other views: $url/api/dashboards (the caller's list), admin-overview, writer-earnings?weeks=8

MSG
wait "$webhost_pid"
