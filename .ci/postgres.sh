#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the tests (run as root).
#   bash .ci/postgres.sh start   # installs the server if missing, starts it, prints the URL
#   bash .ci/postgres.sh stop    # stops it and deletes its files
set -euo pipefail
PORT=${TOWER_IDENTITY_PG_PORT:-54329}
DIR=${TOWER_IDENTITY_PG_DIR:-/tmp/tower-identity-pg}

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

case "${1:-start}" in
start)
  if [ -z "$(bin_dir)" ] || [ ! -x "$(bin_dir)/initdb" ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
  BIN=$(bin_dir)
  if [ -f "$DIR/data/postmaster.pid" ]; then
    runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  chown postgres:postgres "$DIR"
  runuser -u postgres -- "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=200" start >&2
  runuser -u postgres -- psql -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE tower_identity" >&2
  echo "postgres://postgres@127.0.0.1:$PORT/tower_identity"
  ;;
stop)
  BIN=$(bin_dir)
  if [ -n "$BIN" ] && [ -f "$DIR/data/postmaster.pid" ]; then
    runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
  fi
  rm -rf "$DIR"
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
