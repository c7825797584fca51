#!/usr/bin/env bash
# Runs the whole test suite against a throwaway PostgreSQL that this script starts and always stops.
# Extra arguments go to `dotnet test` (for example: --filter ClientMode). Without arguments, a one-minute
# soak (deploy/scripts/soak.sh on its own PostgreSQL) follows the tests; STATSCACHE_SKIP_SOAK=1 skips it.
set -euo pipefail
cd "$(dirname "$0")"
source deploy/scripts/postgres.sh

pg_ensure_installed
# The token tests mint the platform's tokens with SimpleJWT and PyJWT (Debian's Python) and make keys with openssl.
ensure_packages openssl:openssl \
  /usr/lib/python3/dist-packages/jwt/__init__.py:python3-jwt \
  /usr/lib/python3/dist-packages/cryptography/__init__.py:python3-cryptography \
  /usr/lib/python3/dist-packages/rest_framework_simplejwt/__init__.py:python3-djangorestframework-simplejwt
# The page tests drive a real browser: Debian's headless Chromium through its chromedriver.
ensure_packages chromium:chromium chromedriver:chromium-driver
# The network fault tests put silos and web hosts in network namespaces of their own (ip netns, TUN devices; as root).
ensure_packages ip:iproute2
# The alerting rules and their unit tests (deploy/monitoring), before anything slower: Debian's promtool.
ensure_packages promtool:prometheus
promtool check rules deploy/monitoring/alerts.yml
promtool test rules deploy/monitoring/alerts.test.yml
data="$(mktemp -d /tmp/statscache-test-pg.XXXXXX)"
cleanup() { pg_stop "$data"; rm -rf "$data"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$(pg_free_port)"
pg_start "$data" "$port" throwaway
pg_create_db "$port" statscache_test
export ConnectionStrings__Stats="Host=127.0.0.1;Port=$port;Username=postgres;Database=statscache_test"

dotnet test StatsCache.slnx -c Release "$@"

if [ $# -eq 0 ] && [ "${STATSCACHE_SKIP_SOAK:-}" != 1 ]; then
  deploy/scripts/soak.sh --minutes 1 --users 2000 --sample-seconds 5 --outage-seconds 5 --no-build
fi
