#!/usr/bin/env bash
# Install (with apt-get, when missing) and start what the test suite needs, on loopback:
# Chromium for the browser test, PostgreSQL and Redis for the scale-out pass.
# Idempotent: a service that already answers is left alone. Needs root on Debian.
set -euo pipefail

PG_USER=tc PG_PASSWORD=tc PG_DB=tc
REDIS_PORT=${TEST_REDIS_PORT:-6379}

missing=()
command -v chromium >/dev/null || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
if ((${#missing[@]})); then
  echo "test services: installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL: Debian's first cluster, listening on localhost only (its default).
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  read -r version cluster _ < <(pg_lsclusters -h | head -n1)
  pg_ctlcluster "$version" "$cluster" start
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
psql_admin() { su postgres -c "psql -qtAX -c \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
  psql_admin "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD' CREATEDB"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
  su postgres -c "createdb -O $PG_USER $PG_DB"
fi

# Redis: a throwaway server on loopback, no persistence.
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
echo "test services: chromium, PostgreSQL (postgres://$PG_USER@127.0.0.1:5432/$PG_DB) and Redis (127.0.0.1:$REDIS_PORT) ready"
