#!/usr/bin/env bash
# Soak: the Release web host (in-process silo) on a PostgreSQL of its own with the demo platform
# (5 sites x 2,000 users = 10,000 users, 100,000 orders), under mixed load from wrk for --minutes
# (default 10): reads across --users of them (default all 10,000, spread over the sites) and every
# view of their role, 2% forced refreshes, and a PostgreSQL restart in the middle. Every --sample-seconds (default 10) it records requests,
# p50/p99/max, answers by class and the web host's RSS, then prints the table and the verdict.
#   deploy/scripts/soak.sh [--minutes N] [--users N] [--sample-seconds S] [--outage-seconds S] [--no-build]
# Fails when a request fails outside the PostgreSQL outage and its recovery (any 5xx other than 503,
# any socket error, any 503 in a sample that starts more than RetryMaxDuration + 2 s after PostgreSQL
# is back; the soak sets StatsCache:Cache:RetryMaxDuration to 5 s unless the environment does), or
# when the RSS the run ends with exceeds the first half's peak by more than 15% (+32 MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/scripts/postgres.sh

minutes=10 users=10000 sample=10 outage=10 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    --sample-seconds) sample="$2"; shift 2 ;;
    --outage-seconds) outage="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: deploy/scripts/soak.sh [--minutes N] [--users N] [--sample-seconds S] [--outage-seconds S] [--no-build]" >&2; exit 2 ;;
  esac
done
[[ "$minutes" =~ ^[1-9][0-9]*$ && "$users" =~ ^[1-9][0-9]*$ && "$sample" =~ ^[1-9][0-9]*$ && "$outage" =~ ^[1-9][0-9]*$ ]] || { echo "soak: numbers must be positive integers" >&2; exit 2; }
samples=$(( minutes * 60 / sample ))
[ "$samples" -ge 4 ] || { echo "soak: --minutes must allow at least 4 samples of --sample-seconds" >&2; exit 2; }

pg_ensure_installed
ensure_packages wrk:wrk

work="$(mktemp -d /tmp/statscache-soak.XXXXXX)"
pg_data="$work/pg"
webhost_pid=""
cleanup() {
  [ -n "$webhost_pid" ] && { kill -TERM "$webhost_pid" 2>/dev/null || true; wait "$webhost_pid" 2>/dev/null || true; }
  pg_stop "$pg_data"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_port="$(pg_free_port)"
http_port="$(pg_free_port)"
pg_start "$pg_data" "$pg_port" throwaway
pg_create_db "$pg_port" statscache_soak
export ConnectionStrings__Stats="Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=statscache_soak"
Auth__SigningKey="$(head -c 48 /dev/urandom | base64 -w0)"
export Auth__SigningKey
export ASPNETCORE_URLS="http://127.0.0.1:$http_port" DOTNET_ENVIRONMENT=Production ASPNETCORE_ENVIRONMENT=Production
export Orleans__SiloPort="$(pg_free_port)" Orleans__GatewayPort="$(pg_free_port)" Orleans__ClusterId="soak-$$"
export StatsCache__Cache__RetryMaxDuration="${StatsCache__Cache__RetryMaxDuration:-00:00:05}"
retry_max_s="$(python3 -c 'import sys; h, m, s = sys.argv[1].split(":"); print(int(h) * 3600 + int(m) * 60 + float(s))' "$StatsCache__Cache__RetryMaxDuration")"
export Logging__LogLevel__Default=Error # a restart of PostgreSQL logs a warning per failed load
url="http://127.0.0.1:$http_port"

[ "$build" = 1 ] && dotnet build src/WebHost -c Release -v quiet -nologo >/dev/null
bin="src/WebHost/bin/Release/net10.0"
(cd "$bin" && exec dotnet StatsCache.WebHost.dll setup --sites 5 --users 2000 --orders 100000)

# One token per user, signed with this run's key (HS256, the claims TokenIssuer writes).
"$PGBIN/psql" -X -q -A -t -F ' ' -h 127.0.0.1 -p "$pg_port" -U postgres -d statscache_soak \
  -c "select id, website_id, role from users order by id" > "$work/users.txt"
python3 - "$work/users.txt" "$work/tokens.txt" "$users" <<'PY'
import base64, hashlib, hmac, json, os, sys, time
key = os.environ["Auth__SigningKey"].encode()
b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
now = int(time.time())
with open(sys.argv[1]) as users:
    rows = [line.split() for line in users if line.strip()]
wanted = min(int(sys.argv[3]), len(rows))
with open(sys.argv[2], "w") as out:
    for k in range(wanted):  # spread evenly over all users, so every site and role is read
        user, site, role = rows[k * len(rows) // wanted]
        claims = {"sub": user, "site": site, "role": role, "iss": "statscache", "aud": "statscache",
                  "iat": now, "nbf": now, "exp": now + 86400}
        unsigned = header + "." + b64(json.dumps(claims).encode())
        signature = b64(hmac.new(key, unsigned.encode(), hashlib.sha256).digest())
        out.write(f"{role} {unsigned}.{signature}\n")
PY
export SOAK_TOKENS="$work/tokens.txt"
echo "soak: $(wc -l < "$work/tokens.txt") users, $minutes min, a sample every $sample s, PostgreSQL restarted in sample $(( samples / 2 + 1 )) for $outage s"

(cd "$bin" && exec dotnet StatsCache.WebHost.dll) > "$work/webhost.log" 2>&1 &
webhost_pid=$!
for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && break
  kill -0 "$webhost_pid" 2>/dev/null || { cat "$work/webhost.log" >&2; echo "soak: the web host exited" >&2; exit 1; }
  sleep 0.5
done
rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$webhost_pid/status"; }
start_rss="$(rss_mb)"

restart_sample=$(( samples / 2 + 1 ))
failures=0
printf '%-6s %-9s %8s %8s %7s %6s %6s %8s %8s %8s %7s  %s\n' sample phase requests ok stale 503 other sockerr p50_ms p99_ms rss_mb note > "$work/table.txt"
rss_values=()
p99_values=()
for i in $(seq 1 "$samples"); do
  phase=load
  started="$(date +%s.%N)"
  if [ "$i" -eq "$restart_sample" ]; then
    phase=outage
    ( sleep 1; pg_stop "$pg_data"; sleep "$outage"; pg_start "$pg_data" "$pg_port" throwaway >/dev/null; date +%s.%N > "$work/back" ) &
    restarter=$!
  elif [ -s "$work/back" ] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) - float(sys.argv[2]) < float(sys.argv[3]) + 2 else 1)' \
      "$started" "$(cat "$work/back")" "$retry_max_s"; then
    phase=recovery
  fi
  line="$(wrk -t2 -c16 -d"${sample}s" --timeout 10s -s deploy/scripts/soak.lua "$url" | grep '^SOAK ')"
  [ "$phase" = outage ] && wait "$restarter"
  declare -A m=()
  for kv in ${line#SOAK }; do m[${kv%%=*}]="${kv#*=}"; done
  rss="$(rss_mb)"
  rss_values+=("$rss")
  note=""
  if [ "${m[other]}" -gt 0 ] || [ "${m[socket_errors]}" -gt 0 ] || { [ "$phase" = load ] && [ "${m[s503]}" -gt 0 ]; }; then
    note="FAILED REQUESTS"; failures=$(( failures + 1 ))
  fi
  [ "$phase" = load ] && p99_values+=("${m[p99_ms]}")
  printf '%-6s %-9s %8s %8s %7s %6s %6s %8s %8s %8s %7s  %s\n' "$i" "$phase" "${m[requests]}" "${m[ok]}" "${m[stale]}" "${m[s503]}" "${m[other]}" \
    "${m[socket_errors]}" "${m[p50_ms]}" "${m[p99_ms]}" "$rss" "$note" >> "$work/table.txt"
  tail -n 1 "$work/table.txt"
  unset m
done
kill -0 "$webhost_pid" 2>/dev/null || { echo "soak: the web host died" >&2; exit 1; }

# Memory levels off: the RSS the run ends with, under steady load well after the outage (whose
# failing loads and retries make a passing bulge, and GC keeps some of it for a while), stays within
# 15% (+32 MB) of the first half's peak. A leak ends higher; a bulge does not.
half=$(( samples / 2 ))
first_peak=0
for j in "${!rss_values[@]}"; do
  v="${rss_values[$j]}"
  if [ "$j" -lt "$half" ] && [ "$v" -gt "$first_peak" ]; then first_peak="$v"; fi
done
limit=$(( first_peak * 115 / 100 + 32 ))
worst_p99="$(printf '%s\n' "${p99_values[@]}" | sort -g | tail -n 1)"
end_rss="${rss_values[-1]}"

echo
cat "$work/table.txt"
echo
echo "soak: web host RSS ${start_rss} MB at start (idle), ${end_rss} MB at the end; peak ${first_peak} MB in the first half (limit for the end ${limit} MB)"
echo "soak: worst p99 of a load sample ${worst_p99} ms; samples with failed requests: ${failures}"
status=0
[ "$failures" -eq 0 ] || { echo "soak: FAILED: requests failed outside the PostgreSQL outage and its recovery" >&2; status=1; }
[ "$end_rss" -le "$limit" ] || { echo "soak: FAILED: memory kept growing" >&2; status=1; }
[ "$status" -eq 0 ] && echo "soak: passed"
exit "$status"
